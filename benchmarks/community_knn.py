"""Benchmark: L3Rec community discovery with FAISS vs a well-done numpy brute force.

kNN graph of n synthetic users (d = 64, clustered), k neighbours each:

* ``faiss_flat``: exact FAISS ``IndexFlatIP`` on L2-normalised rows (L3Rec's
  ``knn_index: auto`` up to 200k users);
* above 200k, ``auto`` = IVF with ``nlist ≈ 16·√n``, ``nprobe = nlist/64`` (chosen on
  measurements, ``community_knn_tune.py``); its recall@k against exact neighbours of
  random users (numpy) is measured;
* ``numpy``: blockwise ``Q @ X.T`` + ``argpartition`` + sort of the k best, the way
  LOCA-style code would do it (block size keeps each block's scores at 64 MB).

Each method runs in its own subprocess so that peak RSS (``ru_maxrss``) is its own.
At 10k and 100k the neighbours of numpy and exact FAISS are compared.  The 1M case
runs the whole discovery (kNN graph, greedy anchors, kernel weights) end to end;
numpy at 1M is timed on a slice of queries and extrapolated (marked as such).

    python benchmarks/community_knn.py --quick          # 10k and 100k
    python benchmarks/community_knn.py --sizes 1000000  # the 1M case (slow; run once)
    python benchmarks/community_knn.py --sizes 300000 --no-numpy  # end to end at 300k (~2 min)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIM = 64


def synthetic_users(n, dim=DIM, seed=0):
    """n users around n/100 random taste centres (hard-ish clusters: noise ~ centre norm)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 10), dim)).astype(np.float32)
    assign = rng.integers(0, len(centres), size=n)
    return centres[assign] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)


def numpy_knn(x, k, queries=None, block_bytes=64 << 20):
    """Blockwise exact cosine kNN: matmul + argpartition + sort of the k best."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    q_idx = np.arange(len(unit)) if queries is None else queries
    block = max(1, block_bytes // (4 * len(unit)))
    out_idx = np.empty((len(q_idx), k), np.int64)
    out_cos = np.empty((len(q_idx), k), np.float32)
    for s in range(0, len(q_idx), block):
        sims = unit[q_idx[s:s + block]] @ unit.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, 1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        out_idx[s:s + block] = np.take_along_axis(part, order, 1)
        out_cos[s:s + block] = np.take_along_axis(part_sims, order, 1)
    return out_cos, out_idx


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def worker(spec):
    """One measured run in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    from recbole_llm.community.communities import discover_communities
    from recbole_llm.knn import (default_nlist, default_nprobe, import_faiss, knn_search,
                                           resolve_index)

    import_faiss()  # library loading is not part of the search time

    x = synthetic_users(spec["n"])
    rss_data = rss_mb()
    k, method = spec["k"], spec["method"]
    start, cpu_start = time.perf_counter(), time.process_time()
    extra = {}
    if method == "numpy":
        queries = None
        if spec.get("query_slice"):
            queries = np.arange(spec["query_slice"])
        _, idx = numpy_knn(x, k, queries)
        seconds = time.perf_counter() - start
        if queries is not None:
            extra["extrapolated_from_queries"] = int(spec["query_slice"])
            seconds *= spec["n"] / spec["query_slice"]
    elif spec.get("end_to_end"):  # the whole discovery: kNN graph, anchors, kernel weights
        index = resolve_index(spec["index"], len(x))
        opts = {}
        if index == "ivf":
            opts["nlist"] = spec.get("nlist") or default_nlist(len(x))
            opts["nprobe"] = spec.get("nprobe") or default_nprobe(opts["nlist"])
        graph = knn_search(x, k, faiss_device="cpu", index=index, **opts)
        knn_seconds = time.perf_counter() - start
        com = discover_communities(x, spec["q"], train_bandwidth=spec["h"], faiss_device="cpu",
                                   knn_neighbors=k, knn_graph=graph)
        seconds = time.perf_counter() - start
        extra.update(index=index, **opts, coverage=com.stats()["coverage"],
                     avg_users_per_community=com.stats()["avg_users_per_community"],
                     stage_seconds=dict(com.seconds, knn_graph=knn_seconds),
                     load_avg_1m_start=spec["load_start"], load_avg_1m_end=os.getloadavg()[0])
        idx = None
        # recall@k of the graph against exact neighbours (numpy, float64-free) of random users
        sample = np.random.default_rng(1).choice(len(x), spec["recall_queries"], replace=False)
        recall_start = time.perf_counter()
        _, exact = numpy_knn(x, k, sample)
        extra["recall_at_k"] = recall_at_k(graph[1][sample], exact)
        extra["recall_queries"] = int(spec["recall_queries"])
        extra["recall_seconds"] = time.perf_counter() - recall_start
    else:
        _, idx = knn_search(x, k, faiss_device="cpu", index=spec["index"])
        seconds = time.perf_counter() - start
    if idx is not None and spec.get("save"):
        np.save(spec["save"], idx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    cpu = time.process_time() - cpu_start  # all threads; for end_to_end includes the recall check
    print(json.dumps(dict(seconds=seconds, cpu_seconds=cpu, peak_rss_mb=peak, data_rss_mb=rss_data,
                          **extra)))


def run_worker(spec, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                         capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall_at_k(approx, exact):
    """Mean share of each query's exact k neighbours that the approximate search also found."""
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))


def agreement(a, b):
    """Fraction of users whose k-neighbour set is the same in both runs."""
    return float(np.mean([set(r) == set(s) for r, s in zip(a, b)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k only")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--q", type=int, default=10)
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--index", default="auto", help="auto | flat | ivf | hnsw (sizes > 200k)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~16 sqrt(n))")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF probes (default nlist/64)")
    parser.add_argument("--recall-queries", type=int, default=2000)
    parser.add_argument("--no-numpy", action="store_true",
                        help="sizes > 200k: skip the extrapolated numpy brute force")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads of FAISS and numpy (1: no spin-waiting on shared cores)")
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    from benchmarks.common import write_results

    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    rows, extra = [], {}
    tmp = tempfile.mkdtemp(prefix="knn_bench_")
    for n in sizes:
        base = {"n": n, "k": args.k}
        if n <= 200_000:
            f = run_worker(dict(base, method="faiss", index="flat", save=f"{tmp}/faiss_{n}.npy"), args.threads)
            m = run_worker(dict(base, method="numpy", save=f"{tmp}/numpy_{n}.npy"), args.threads)
            same = agreement(np.load(f"{tmp}/faiss_{n}.npy"), np.load(f"{tmp}/numpy_{n}.npy"))
            rows.append(dict(users=n, method="faiss exact (IndexFlatIP)", seconds=f["seconds"],
                             peak_rss_mb=f["peak_rss_mb"], speedup_vs_numpy=m["seconds"] / f["seconds"],
                             same_neighbours=same))
            rows.append(dict(users=n, method="numpy blockwise", seconds=m["seconds"],
                             peak_rss_mb=m["peak_rss_mb"], speedup_vs_numpy=1.0, same_neighbours=same))
        else:
            e = run_worker(dict(base, method="faiss", index=args.index, end_to_end=True, q=args.q,
                                h=args.h, nlist=args.nlist, nprobe=args.nprobe,
                                recall_queries=args.recall_queries, load_start=os.getloadavg()[0]),
                           args.threads)
            m = None if args.no_numpy else run_worker(dict(base, method="numpy", query_slice=5000),
                                                      args.threads)
            label = e["index"] + (f"{e['nlist']} nprobe {e['nprobe']}" if e["index"] == "ivf" else "")
            rows.append(dict(users=n, method=f"end to end: faiss {label} + anchors (q={args.q}) + kernels",
                             seconds=e["seconds"], cpu_seconds=e["cpu_seconds"],
                             peak_rss_mb=e["peak_rss_mb"],
                             speedup_vs_numpy=m["seconds"] / e["seconds"] if m else "",
                             recall_at_k=e["recall_at_k"], coverage=e["coverage"],
                             threads=args.threads, load_start=e["load_avg_1m_start"],
                             load_end=e["load_avg_1m_end"]))
            extra[n] = e
            if m:
                rows.append(dict(users=n, method="numpy blockwise kNN only (extrapolated from 5k queries)",
                                 seconds=m["seconds"], peak_rss_mb=m["peak_rss_mb"], speedup_vs_numpy=1.0))
    name = "community_knn"
    if min(sizes) > 200_000:  # end-to-end runs get their own file
        name += "_" + "_".join("1m" if n == 1_000_000 else str(n) for n in sizes)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{c: row.get(c, "") for c in columns} for row in rows]
    write_results(name, rows, vars(args), extra={"end_to_end": extra} if extra else None)


if __name__ == "__main__":
    main()
