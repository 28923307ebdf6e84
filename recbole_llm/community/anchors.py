"""Anchor users by LOCA's greedy coverage (L³Rec paper §4.1; Choi et al., WSDM 2021).

The kNN graph of the users is thresholded by the (test) bandwidth: anchor
candidate ``a`` covers user ``v`` when ``v`` is among ``a``'s k nearest
neighbours and ``dist(a, v) < h``.  Greedy coverage then repeatedly picks the
user that covers the most still-uncovered users.  When every user is covered
before ``q`` anchors are chosen, a new round starts over the users covered the
fewest times, so later anchors still spread over the data.
"""
import numpy as np
import scipy.sparse as sp


def coverage_graph(neighbour_dist, neighbour_idx, bandwidth, num_users=None):
    """Sparse boolean ``(n, n)`` matrix: row ``a`` marks the users ``a`` covers.

    ``neighbour_dist`` / ``neighbour_idx`` are the ``(n, k)`` outputs of
    :func:`recbole_llm.knn.knn_search` (row ``a`` = neighbours of ``a``);
    a neighbour counts when its distance is below ``bandwidth``.
    """
    neighbour_idx = np.asarray(neighbour_idx)
    n = num_users if num_users is not None else neighbour_idx.shape[0]
    keep = (np.asarray(neighbour_dist) < bandwidth) & (neighbour_idx >= 0)
    rows = np.repeat(np.arange(neighbour_idx.shape[0]), neighbour_idx.shape[1])[keep.ravel()]
    cols = neighbour_idx.ravel()[keep.ravel()]
    graph = sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)),
                          shape=(neighbour_idx.shape[0], n))
    graph.data[:] = 1  # duplicates (none expected) would have summed
    return graph


def greedy_coverage_anchors(coverage, q):
    """``q`` anchor users picked greedily to cover the most uncovered users.

    ``coverage`` is the boolean graph of :func:`coverage_graph` (scipy sparse
    or dense).  Returns ``(anchors, covered_fraction)``: the anchor indices in
    the order chosen, and the fraction of users covered after each pick.  Ties
    go to the lowest user index.  No user is chosen twice.
    """
    coverage = sp.csr_matrix(coverage, dtype=np.int32)
    n_candidates, n_users = coverage.shape
    if q < 1:
        raise ValueError(f"need at least one anchor, got q={q}")
    if q > n_candidates:
        raise ValueError(f"cannot choose q={q} anchors among {n_candidates} users")
    times_covered = np.zeros(n_users, dtype=np.int64)
    chosen = np.zeros(n_candidates, dtype=bool)
    anchors, covered_fraction = [], []
    for _ in range(q):
        target = times_covered == times_covered.min()  # uncovered, or least covered
        gains = coverage @ target.astype(np.int32)
        gains = np.where(chosen, -1, gains)
        anchor = int(np.argmax(gains))
        chosen[anchor] = True
        anchors.append(anchor)
        times_covered[coverage.indices[coverage.indptr[anchor]:coverage.indptr[anchor + 1]]] += 1
        covered_fraction.append(float(np.mean(times_covered > 0)))
    return np.asarray(anchors, dtype=np.int64), covered_fraction
