"""Overlapping local communities of users (and optionally items) for L³Rec (paper §4.1, Fig. 3).

1. k nearest neighbours of every user in the global CF embedding space (FAISS);
2. ``q`` anchors by LOCA's greedy coverage over that kNN graph (test bandwidth);
3. the affinity of every user to every anchor, ``w_u^(j) = K_h(dist(a_j, u))``
   (eq. 2), with a train bandwidth (who trains local model j) and a test
   bandwidth (whose predictions local model j serves; ``C(u)``);
4. optionally the item community ``V_j``: items within ``item_bandwidth`` of the
   anchor user in the same CF space (user-and-item assignment, top-N only).

The summary logged is the paper's Table 2: users per community and coverage.
"""
import time
import warnings
from dataclasses import dataclass, field
from logging import getLogger
from typing import Optional

import numpy as np

from recbole_llm.community.anchors import coverage_graph, greedy_coverage_anchors
from recbole_llm.community.kernels import kernel_weights
from recbole_llm.knn import anchor_distances, knn_search, l2_normalize, scaled_arccos_distance


@dataclass
class Communities:
    """``q`` overlapping communities over ``n`` users (and ``m`` items).

    ``train_weights`` / ``test_weights`` are ``(q, n)`` kernel affinities (0 =
    not a member); ``item_members`` is ``(q, m)`` boolean or None (all items).
    """

    anchors: np.ndarray
    train_weights: np.ndarray
    test_weights: np.ndarray
    item_members: Optional[np.ndarray] = None
    anchor_coverage: Optional[list] = None
    seconds: dict = field(default_factory=dict)  # wall time of each discovery stage

    @property
    def num_communities(self):
        return len(self.anchors)

    def train_users(self, j):
        return np.flatnonzero(self.train_weights[j] > 0)

    def test_users(self, j):
        return np.flatnonzero(self.test_weights[j] > 0)

    def stats(self, user_mask=None):
        """Table 2 figures: users per community (train and test) and test coverage."""
        mask = np.ones(self.test_weights.shape[1], bool) if user_mask is None else user_mask
        train_sizes = (self.train_weights[:, mask] > 0).sum(1)
        test_sizes = (self.test_weights[:, mask] > 0).sum(1)
        stats = {
            "num_users": int(mask.sum()),
            "users_per_community_train": [int(s) for s in train_sizes],
            "users_per_community_test": [int(s) for s in test_sizes],
            "avg_users_per_community": float(train_sizes.mean()),
            "coverage": float((self.test_weights[:, mask] > 0).any(0).mean()),
        }
        if self.item_members is not None:
            stats["items_per_community"] = [int(s) for s in self.item_members.sum(1)]
        return stats


def discover_communities(user_embeddings, q, train_bandwidth=1.0, test_bandwidth=None,
                         kernel="epanechnikov", knn_neighbors=100, faiss_device="auto",
                         user_mask=None, item_embeddings=None, item_bandwidth=None,
                         knn_index="auto", knn_graph=None, **knn_options):
    """Anchors, kernel weights and optional item sets: a :class:`Communities`.

    ``user_mask`` marks the real users (e.g. not RecBole's padding id 0); the
    others are never anchors and get weight 0.  Warns when the test bandwidth
    leaves every community with at most its anchor (everyone falls back to the
    global model).  ``knn_index`` (auto | flat | ivf | hnsw) and ``knn_options`` (``nlist``,
    ``nprobe``, ``hnsw_m``, ``ef_search``, ``gpu_id``) go to
    :func:`~recbole_llm.knn.knn_search`.  ``knn_graph``: a precomputed
    ``(distances, indices)`` kNN graph of the real users (rows in ``user_mask``
    order) to reuse instead of searching again.
    """
    test_bandwidth = train_bandwidth if test_bandwidth is None else test_bandwidth
    user_embeddings = np.asarray(user_embeddings, dtype=np.float32)
    n = len(user_embeddings)
    mask = np.ones(n, bool) if user_mask is None else np.asarray(user_mask, bool)
    real = np.flatnonzero(mask)
    if q > len(real):
        raise ValueError(f"num_local_models q={q} exceeds the number of users ({len(real)})")
    emb = user_embeddings[real]
    seconds, start = {}, time.perf_counter()
    if knn_graph is None:
        knn_graph = knn_search(emb, knn_neighbors, faiss_device=faiss_device, index=knn_index,
                               **knn_options)
    dist, idx = knn_graph
    knn_graph = None  # the caller's references only
    seconds["knn_graph"], start = time.perf_counter() - start, time.perf_counter()
    local_anchors, anchor_coverage = greedy_coverage_anchors(
        coverage_graph(dist, idx, test_bandwidth), q)
    del dist, idx
    seconds["anchors"], start = time.perf_counter() - start, time.perf_counter()
    anchor_dist = anchor_distances(emb, local_anchors)  # (q, n_real)
    train_w = np.zeros((q, n), np.float32)
    test_w = np.zeros((q, n), np.float32)
    train_w[:, real] = kernel_weights(anchor_dist, train_bandwidth, kernel)
    test_w[:, real] = kernel_weights(anchor_dist, test_bandwidth, kernel)
    anchors = real[local_anchors]
    item_members = None
    if item_embeddings is not None:
        item_bw = item_bandwidth if item_bandwidth is not None else train_bandwidth
        cos = l2_normalize(user_embeddings[anchors]) @ l2_normalize(item_embeddings).T
        item_members = scaled_arccos_distance(cos) < item_bw
    seconds["kernels"] = time.perf_counter() - start
    communities = Communities(anchors, train_w, test_w, item_members, anchor_coverage, seconds)
    stats = communities.stats(mask)
    if max(stats["users_per_community_test"]) <= 1:
        warnings.warn(
            f"L3Rec: bandwidth h={test_bandwidth} is so small that no community holds a user "
            "besides its anchor; such communities are too small to train and their users fall "
            "back to the global model (raise bandwidth)", RuntimeWarning)
    log_community_table(stats, {k: round(v, 2) for k, v in seconds.items()})
    return communities


def log_community_table(stats, seconds=None):
    """Log users per community and coverage, as the paper's Table 2."""
    logger = getLogger()
    logger.info(
        f"L3Rec communities: {len(stats['users_per_community_train'])} local models, "
        f"avg users per community {stats['avg_users_per_community']:.1f} of {stats['num_users']}, "
        f"coverage {100 * stats['coverage']:.1f}%"
        + (f"; seconds {seconds}" if seconds else ""))
    for j, (tr, te) in enumerate(zip(stats["users_per_community_train"],
                                     stats["users_per_community_test"])):
        items = stats.get("items_per_community")
        extra = f", items {items[j]}" if items else ""
        logger.info(f"  community {j}: train users {tr}, test users {te}{extra}")
