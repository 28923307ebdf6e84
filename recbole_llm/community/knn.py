"""Neighbour search over CF embeddings for L³Rec community discovery (paper §4.1, eq. 1).

Users are compared by the scaled arccos distance of LOCA (Choi et al., WSDM 2021):
``dist(a, u) = arccos(cos(a, u)) · 2/π``.  It is 0 for identical directions, 1 at
a right angle (so the paper's ``h = 1.0`` keeps every user whose angle to the
anchor is below 90°, i.e. ``cos > 0``) and 2 for opposite vectors.

The k nearest neighbours of every user are found with FAISS: an exact
inner-product index (``IndexFlatIP``) over L2-normalised embeddings, so the
inner product *is* the cosine.  ``faiss_device: auto|cpu|gpu`` picks FAISS GPU
resources only when both a GPU and a GPU build of FAISS are present.  An
approximate inverted-file index (``index="ivf"``) is there for very large user
sets; its recall against the exact index is measured in
``benchmarks/community_knn.py``.
"""
import numpy as np

FAISS_DEVICES = ("auto", "cpu", "gpu")
KNN_INDEXES = ("flat", "ivf")


def import_faiss():
    """``faiss``, or an ImportError that names the package to install."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "L3Rec's community discovery needs FAISS for neighbour search: "
            "pip install faiss-cpu (or faiss-gpu for the GPU path)"
        ) from err
    return faiss


def faiss_gpu_available(faiss):
    """True when this FAISS build has GPU support and sees at least one GPU."""
    if not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return faiss.get_num_gpus() > 0
    except Exception:
        return False


def resolve_faiss_device(faiss_device="auto", faiss=None):
    """``"cpu"`` or ``"gpu"`` for ``faiss_device`` in auto|cpu|gpu; clear error if impossible."""
    if faiss_device not in FAISS_DEVICES:
        raise ValueError(f"faiss_device must be one of {FAISS_DEVICES}, got {faiss_device!r}")
    faiss = faiss or import_faiss()
    gpu = faiss_gpu_available(faiss)
    if faiss_device == "gpu" and not gpu:
        raise RuntimeError(
            "faiss_device='gpu' but this FAISS build has no GPU support or sees no GPU "
            "(install faiss-gpu on a CUDA machine, or use faiss_device='auto'/'cpu')"
        )
    return "gpu" if gpu and faiss_device in ("auto", "gpu") else "cpu"


def l2_normalize(x):
    """Rows of ``x`` scaled to unit length, float32 C-contiguous (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def scaled_arccos_distance(cos):
    """LOCA's distance ``arccos(cos) · 2/π`` (eq. 1): 0 same direction, 1 orthogonal, 2 opposite."""
    return (np.arccos(np.clip(cos, -1.0, 1.0)) * (2.0 / np.pi)).astype(np.float32)


def anchor_distances(embeddings, anchors):
    """Scaled arccos distances (q × n) from the ``anchors`` rows to every row.

    A few anchors against all users is one small matrix product; plain numpy
    beats a FAISS range search here (DESIGN.md §1).
    """
    unit = l2_normalize(embeddings)
    return scaled_arccos_distance(unit[np.asarray(anchors)] @ unit.T)


_GPU_RESOURCES = {}


def _gpu_resources(faiss, gpu_id):
    """One ``StandardGpuResources`` per GPU, kept for the process (it owns the GPU memory pool)."""
    if gpu_id not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu_id] = faiss.StandardGpuResources()
    return _GPU_RESOURCES[gpu_id]


def build_index(unit, faiss_device="auto", index="flat", nlist=1024, nprobe=64, gpu_id=0):
    """A FAISS inner-product index over the unit rows ``unit`` (flat = exact, ivf = approximate)."""
    if index not in KNN_INDEXES:
        raise ValueError(f"knn index must be one of {KNN_INDEXES}, got {index!r}")
    faiss = import_faiss()
    device = resolve_faiss_device(faiss_device, faiss)
    dim = unit.shape[1]
    if index == "flat":
        cpu_index = faiss.IndexFlatIP(dim)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        cpu_index = faiss.IndexIVFFlat(quantizer, dim, int(nlist), faiss.METRIC_INNER_PRODUCT)
    if device == "gpu":
        built = faiss.index_cpu_to_gpu(_gpu_resources(faiss, int(gpu_id)), int(gpu_id), cpu_index)
    else:
        built = cpu_index
    if index == "ivf":
        sample = unit
        if len(unit) > 64 * int(nlist):  # k-means needs ~40-256 points per list
            rng = np.random.default_rng(0)
            sample = unit[rng.choice(len(unit), 64 * int(nlist), replace=False)]
        built.train(sample)
        built.nprobe = int(nprobe)
    built.add(unit)
    return built


def knn_search(embeddings, k, queries=None, faiss_device="auto", index="flat",
               nlist=1024, nprobe=64, gpu_id=0):
    """The ``k`` nearest rows of ``embeddings`` for each query row (default: every row).

    Returns ``(distances, indices)``, both ``(n_queries, k)``, nearest first;
    distances are scaled arccos distances.  With the rows themselves as queries
    each row is (up to float ties) its own first neighbour, at distance 0.
    """
    unit = l2_normalize(embeddings)
    k = int(min(k, len(unit)))
    if k < 1:
        raise ValueError("knn_search needs k >= 1 and at least one embedding")
    query_unit = unit if queries is None else l2_normalize(queries)
    built = build_index(unit, faiss_device, index, nlist, nprobe, gpu_id)
    cos, idx = built.search(query_unit, k)
    return scaled_arccos_distance(cos), idx.astype(np.int64)
