"""FAISS neighbour search over embeddings: the one home of FAISS indexes (L³Rec §4.1, eq. 1; LUMOS title lookup).

Users are compared by the scaled arccos distance of LOCA (Choi et al., WSDM 2021):
``dist(a, u) = arccos(cos(a, u)) · 2/π``.  It is 0 for identical directions, 1 at
a right angle (so the paper's ``h = 1.0`` keeps every user whose angle to the
anchor is below 90°, i.e. ``cos > 0``) and 2 for opposite vectors.

The k nearest neighbours of every user are found with FAISS inner-product
indexes over L2-normalised embeddings, so the inner product *is* the cosine:

* ``flat``: exact (``IndexFlatIP``), cost O(n²) -- the default up to
  ``EXACT_MAX_USERS`` users (``index="auto"``);
* ``ivf``: inverted file (``IndexIVFFlat``), approximate -- ``auto`` above that
  size, with ``nlist ≈ 8·√n`` lists and ``nprobe = nlist/128`` probes (8192 and
  64 at 1M users), chosen on ``benchmarks/community_knn_tune.py``: recall@50
  against exact 0.996 on 1M clustered synthetic users (2,000 random queries) at
  half the search time of nlist/64 probes (0.997); 1M users end to end took 5 min
  on one core, where exact FAISS would take ~35 min;
* ``hnsw``: graph index (``IndexHNSWFlat``, CPU only), approximate.

``faiss_device: auto|cpu|gpu`` picks FAISS GPU resources only when both a GPU
and a GPU build of FAISS are present.
"""
import numpy as np

FAISS_DEVICES = ("auto", "cpu", "gpu")
KNN_INDEXES = ("auto", "flat", "ivf", "hnsw")
KNN_OPTIONS = ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "gpu_id")
EXACT_MAX_USERS = 200_000  # index="auto": exact below, IVF above (exact is O(n²))
IVF_TRAIN_POINTS_PER_LIST = 40  # k-means sample per list (FAISS warns below 39; cost ∝ sample·nlist)


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
    beats a FAISS range search here.
    """
    unit = l2_normalize(embeddings)
    return scaled_arccos_distance(unit[np.asarray(anchors)] @ unit.T)


_GPU_RESOURCES = {}


def _gpu_resources(faiss, gpu_id):
    """One ``StandardGpuResources`` per GPU, kept for the process (it owns the GPU memory pool)."""
    if gpu_id not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu_id] = faiss.StandardGpuResources()
    return _GPU_RESOURCES[gpu_id]


def default_nlist(n):
    """IVF lists for ``n`` vectors: the power of two nearest ``8·√n`` (FAISS advises 4–16·√n),
    at most ``n / IVF_TRAIN_POINTS_PER_LIST`` so that k-means has enough points per list."""
    n = max(int(n), 1)
    nearest = 2 ** round(np.log2(8.0 * np.sqrt(n)))
    trainable = 2 ** int(np.floor(np.log2(max(n / IVF_TRAIN_POINTS_PER_LIST, 1.0))))
    return int(max(1, min(nearest, trainable)))


def default_nprobe(nlist):
    """IVF probes: ``nlist / 128``, at least 16 (and at most ``nlist``) -- see the module doc."""
    return int(min(int(nlist), max(16, int(nlist) // 128)))


def resolve_index(index, n):
    """The concrete index kind for ``n`` vectors: ``auto`` is exact up to ``EXACT_MAX_USERS``."""
    if index not in KNN_INDEXES:
        raise ValueError(f"knn index must be one of {KNN_INDEXES}, got {index!r}")
    if index == "auto":
        return "flat" if n <= EXACT_MAX_USERS else "ivf"
    return index


def empty_index(dim, n, faiss_device="auto", index="auto", nlist=None, hnsw_m=32,
                ef_construction=80, gpu_id=0):
    """An untrained, empty FAISS inner-product index of kind ``index`` for ``n`` vectors."""
    faiss = import_faiss()
    index = resolve_index(index, n)
    device = resolve_faiss_device(faiss_device, faiss)
    if index == "flat":
        cpu_index = faiss.IndexFlatIP(dim)
    elif index == "ivf":
        nlist = int(nlist or default_nlist(n))
        cpu_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        if faiss_device == "gpu":
            raise ValueError("knn index 'hnsw' runs on CPU only (use 'flat' or 'ivf' on GPU)")
        cpu_index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        cpu_index.hnsw.efConstruction = int(ef_construction)
        return cpu_index
    if device == "gpu":
        return faiss.index_cpu_to_gpu(_gpu_resources(faiss, int(gpu_id)), int(gpu_id), cpu_index)
    return cpu_index


def train_index(built, unit, seed=0):
    """k-means of an IVF index on ``IVF_TRAIN_POINTS_PER_LIST`` sampled rows per list (no-op otherwise)."""
    if built.is_trained:
        return built
    sample_size = IVF_TRAIN_POINTS_PER_LIST * int(built.nlist)
    sample = unit
    if len(unit) > sample_size:
        sample = unit[np.random.default_rng(seed).choice(len(unit), sample_size, replace=False)]
    built.train(sample)
    return built


def set_search_params(built, nprobe=None, ef_search=128):
    """Probes of an IVF index (default :func:`default_nprobe`), ``efSearch`` of an HNSW index."""
    if hasattr(built, "nprobe"):
        built.nprobe = int(nprobe or default_nprobe(built.nlist))
    if hasattr(built, "hnsw"):
        built.hnsw.efSearch = int(ef_search)
    return built


def build_index(unit, faiss_device="auto", index="auto", nlist=None, nprobe=None, gpu_id=0,
                hnsw_m=32, ef_construction=80, ef_search=128):
    """A FAISS inner-product index over the unit rows ``unit``, trained, filled and ready to search.

    ``index``: auto | flat (exact) | ivf | hnsw (approximate); see the module doc.
    """
    built = empty_index(unit.shape[1], len(unit), faiss_device, index, nlist, hnsw_m,
                        ef_construction, gpu_id)
    train_index(built, unit)
    built.add(unit)
    return set_search_params(built, nprobe, ef_search)


def knn_search(embeddings, k, queries=None, faiss_device="auto", index="auto", **index_options):
    """The ``k`` nearest rows of ``embeddings`` for each query row (default: every row).

    Returns ``(distances, indices)``, both ``(n_queries, k)``, nearest first;
    distances are scaled arccos distances.  With the rows themselves as queries
    each row is (up to float ties) its own first neighbour, at distance 0.
    ``index_options`` (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_construction``,
    ``ef_search``, ``gpu_id``) go to :func:`build_index`.
    """
    unit = l2_normalize(embeddings)
    k = int(min(k, len(unit)))
    if k < 1:
        raise ValueError("knn_search needs k >= 1 and at least one embedding")
    query_unit = unit if queries is None else l2_normalize(queries)
    built = build_index(unit, faiss_device, index, **index_options)
    cos, idx = built.search(query_unit, k)
    return scaled_arccos_distance(cos), idx.astype(np.int64)
