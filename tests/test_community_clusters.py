"""Planted user clusters are recovered as L3Rec communities (paper §4.1)."""
import numpy as np
import pytest

from recbole_llm.community.communities import discover_communities


def planted_users(n_per_cluster=40, dim=8, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3]  # three orthogonal tastes: scaled arccos distance 1 apart
    emb = np.concatenate([c + noise * rng.normal(size=(n_per_cluster, dim)) for c in centres])
    labels = np.repeat(np.arange(3), n_per_cluster)
    return emb.astype(np.float32), labels


def test_planted_clusters_are_recovered():
    emb, labels = planted_users()
    com = discover_communities(emb, q=3, train_bandwidth=0.6, test_bandwidth=0.5,
                               knn_neighbors=60, faiss_device="cpu")
    found = sorted(tuple(com.test_users(j)) for j in range(3))
    truth = sorted(tuple(np.flatnonzero(labels == c)) for c in range(3))
    assert found == truth
    assert sorted(labels[com.anchors]) == [0, 1, 2]
    stats = com.stats()
    assert stats["coverage"] == 1.0 and stats["avg_users_per_community"] == 40
    # train bandwidth >= test bandwidth: every test member also trains the model
    for j in range(3):
        assert set(com.test_users(j)) <= set(com.train_users(j))
    # affinity is highest at the anchor (Epanechnikov, distance 0)
    assert np.allclose(com.test_weights[np.arange(3), com.anchors], 0.75, atol=1e-3)


def test_user_mask_and_item_communities():
    emb, labels = planted_users()
    mask = np.ones(len(emb), bool)
    mask[:5] = False
    items = np.eye(8, dtype=np.float32)[[0, 0, 1, 2, 5]]  # two items of taste 0, none of taste 5
    com = discover_communities(emb, q=3, train_bandwidth=0.5, knn_neighbors=60, faiss_device="cpu",
                               user_mask=mask, item_embeddings=items, item_bandwidth=0.5)
    assert not com.train_weights[:, :5].any() and not np.isin(com.anchors, np.arange(5)).any()
    taste = labels[com.anchors]
    for j in range(3):
        expected = {0: [1, 1, 0, 0, 0], 1: [0, 0, 1, 0, 0], 2: [0, 0, 0, 1, 0]}[taste[j]]
        assert com.item_members[j].astype(int).tolist() == expected


def test_tiny_bandwidth_warns_that_nobody_else_is_covered():
    emb, _ = planted_users()
    with pytest.warns(RuntimeWarning, match="besides its anchor"):
        com = discover_communities(emb, q=2, train_bandwidth=1e-3, faiss_device="cpu")
    assert max(com.stats()["users_per_community_train"]) <= 1
