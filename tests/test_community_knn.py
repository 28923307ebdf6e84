"""Neighbour search, anchors and kernels of L3Rec's community discovery (paper §4.1)."""
import sys
import types

import numpy as np
import pytest

from recbole_llm.community.anchors import coverage_graph, greedy_coverage_anchors
from recbole_llm.community.kernels import kernel_weights
from recbole_llm import knn as knn_module
from recbole_llm.knn import (default_nlist, default_nprobe, import_faiss, knn_search,
                                       resolve_faiss_device, resolve_index, scaled_arccos_distance)


def brute_force_knn(x, k):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    idx = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return np.arccos(np.clip(np.take_along_axis(cos, idx, 1), -1, 1)) * 2 / np.pi, idx


def test_faiss_neighbours_equal_brute_force_numpy():
    x = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    dist, idx = knn_search(x, 12, faiss_device="cpu")
    ref_dist, ref_idx = brute_force_knn(x.astype(np.float64), 12)
    assert idx.shape == (400, 12)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-3)
    assert np.all(idx[:, 0] == np.arange(400))  # each user is its own nearest neighbour
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # nearest first


def test_ivf_index_finds_most_exact_neighbours():
    x = np.random.default_rng(1).normal(size=(2000, 8)).astype(np.float32)
    _, exact = knn_search(x, 10, faiss_device="cpu")
    _, approx = knn_search(x, 10, faiss_device="cpu", index="ivf", nlist=16, nprobe=16)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.99  # probing every list is exact up to ties


def test_hnsw_index_finds_most_exact_neighbours():
    x = np.random.default_rng(2).normal(size=(2000, 8)).astype(np.float32)
    _, exact = knn_search(x, 10, faiss_device="cpu", index="flat")
    _, approx = knn_search(x, 10, faiss_device="cpu", index="hnsw", hnsw_m=16, ef_search=64)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.95


def test_auto_index_is_exact_for_small_and_ivf_for_large_user_sets(monkeypatch):
    assert resolve_index("auto", knn_module.EXACT_MAX_USERS) == "flat"
    assert resolve_index("auto", knn_module.EXACT_MAX_USERS + 1) == "ivf"
    assert resolve_index("hnsw", 10) == "hnsw"
    with pytest.raises(ValueError, match="knn index must be one of"):
        resolve_index("annoy", 10)
    assert default_nlist(1_000_000) == 8192 and default_nlist(100_000) == 2048  # ~8 sqrt(n) ...
    assert default_nlist(3000) == 64  # ... but >= 40 k-means points per list
    assert default_nprobe(8192) == 64 and default_nprobe(64) == 16 and default_nprobe(8) == 8
    x = np.random.default_rng(3).normal(size=(3000, 8)).astype(np.float32)
    monkeypatch.setattr(knn_module, "EXACT_MAX_USERS", 1000)  # 3000 users count as "large" now
    built = knn_module.build_index(knn_module.l2_normalize(x), "cpu", "auto")
    assert built.nlist == default_nlist(3000) and built.nprobe == default_nprobe(built.nlist)
    _, exact = knn_search(x, 10, faiss_device="cpu", index="flat")
    _, approx = knn_search(x, 10, faiss_device="cpu")
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.95


def test_scaled_arccos_distance_values():
    np.testing.assert_allclose(scaled_arccos_distance(np.array([1.0, 0.0, -1.0, np.sqrt(0.5)])),
                               [0.0, 1.0, 2.0, 0.5], atol=1e-6)


def _fake_faiss(gpus):
    fake = types.SimpleNamespace(get_num_gpus=lambda: gpus)
    if gpus is not None:
        fake.StandardGpuResources = object
    return fake


def test_faiss_device_selection():
    assert resolve_faiss_device("cpu", _fake_faiss(1)) == "cpu"
    assert resolve_faiss_device("auto", _fake_faiss(1)) == "gpu"
    assert resolve_faiss_device("auto", _fake_faiss(0)) == "cpu"  # GPU build, no GPU
    assert resolve_faiss_device("auto", _fake_faiss(None)) == "cpu"  # CPU build
    assert resolve_faiss_device("auto") == "cpu"  # this machine: faiss-cpu
    with pytest.raises(RuntimeError, match="faiss-gpu"):
        resolve_faiss_device("gpu", _fake_faiss(None))
    with pytest.raises(ValueError, match="faiss_device"):
        resolve_faiss_device("cuda", _fake_faiss(1))


def test_gpu_index_is_built_only_when_a_gpu_build_sees_a_gpu(monkeypatch):
    import faiss

    import recbole_llm.knn as knn

    moved = []

    class GpuFaiss:  # the real CPU FAISS, posing as a GPU build that sees `gpus` GPUs
        def __init__(self, gpus):
            self.gpus = gpus

        def __getattr__(self, name):
            return getattr(faiss, name)

        def get_num_gpus(self):
            return self.gpus

        StandardGpuResources = object

        def index_cpu_to_gpu(self, resources, gpu_id, index):
            moved.append(gpu_id)
            return index

    x = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    monkeypatch.setattr(knn, "import_faiss", lambda: GpuFaiss(1))
    monkeypatch.setattr(knn, "_GPU_RESOURCES", {})
    _, gpu_idx = knn.knn_search(x, 5, faiss_device="auto", gpu_id=0)
    assert moved == [0]
    knn.knn_search(x, 5, faiss_device="cpu")
    assert moved == [0]  # cpu asked: not moved
    monkeypatch.setattr(knn, "import_faiss", lambda: GpuFaiss(0))
    _, cpu_idx = knn.knn_search(x, 5, faiss_device="auto")
    assert moved == [0]  # no GPU seen: not moved
    np.testing.assert_array_equal(gpu_idx, cpu_idx)


def test_missing_faiss_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        import_faiss()


def test_greedy_coverage_on_hand_made_graph():
    # user 0 covers {0,1,2,3}; user 4 covers {3,4,5}; user 6 covers {6}; user 1 covers {0,1}
    cover = np.zeros((7, 7), bool)
    for a, vs in {0: [0, 1, 2, 3], 1: [0, 1], 4: [3, 4, 5], 6: [6]}.items():
        cover[a, vs] = True
    anchors, covered = greedy_coverage_anchors(cover, 3)
    assert list(anchors) == [0, 4, 6]
    assert covered == pytest.approx([4 / 7, 6 / 7, 1.0])
    # once everyone is covered, the next anchor covers the least-covered users
    anchors, _ = greedy_coverage_anchors(cover, 4)
    assert list(anchors) == [0, 4, 6, 1] and len(set(anchors)) == 4
    with pytest.raises(ValueError):
        greedy_coverage_anchors(cover, 8)


def test_coverage_graph_thresholds_knn_by_bandwidth():
    dist = np.array([[0.0, 0.3, 0.9], [0.0, 0.3, 0.5], [0.0, 0.5, 0.9]])
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    graph = coverage_graph(dist, idx, bandwidth=0.4).toarray()
    np.testing.assert_array_equal(graph, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_kernel_values():
    d = np.array([0.0, 0.5, 0.999, 1.0, 1.5])
    np.testing.assert_allclose(kernel_weights(d, 1.0, "epanechnikov"),
                               [0.75, 0.5625, 0.75 * (1 - 0.999 ** 2), 0, 0], atol=1e-6)
    np.testing.assert_allclose(kernel_weights(d, 1.0, "uniform"), [0.5, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(kernel_weights(d, 1.0, "triangular"), [1, 0.5, 0.001, 0, 0], atol=1e-6)
    # separate train/test bandwidths: LOCA's 0.8 / 0.4
    np.testing.assert_allclose(kernel_weights(np.array([0.2]), 0.4), [0.5625])
    np.testing.assert_allclose(kernel_weights(np.array([0.2]), 0.8), [0.75 * (1 - 0.0625)])
    with pytest.raises(ValueError, match="kernel"):
        kernel_weights(d, 1.0, "gaussian")
    with pytest.raises(ValueError, match="bandwidth"):
        kernel_weights(d, 0.0)
