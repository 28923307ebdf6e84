"""Benchmark: profile L3Rec community discovery by stage and tune the FAISS index on measurements.

On n synthetic clustered users (d = 64; same generator as ``community_knn.py``):

* stages of the discovery pipeline with the exact graph (``--profile``): normalise,
  exact kNN of every user, coverage graph, greedy anchors, kernel weights;
* for each candidate index (``flat``; ``ivf:NLIST:P1,P2,..`` with nprobe values;
  ``hnsw:M:EF1,EF2,..`` with efSearch values): training, adding, and search time of
  ``--sample`` random query users, extrapolated to all n users (search is per query,
  so it scales linearly), and recall@k of those queries against exact neighbours
  (exact FAISS ``IndexFlatIP`` over all users for the same queries).

    python benchmarks/community_knn_tune.py --n 100000 --profile
    python benchmarks/community_knn_tune.py --n 1000000 --configs ivf:16384:128,256
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.community_knn import recall_at_k, synthetic_users  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def parse_config(text):
    """``flat`` | ``ivf:NLIST:P1,P2`` | ``hnsw:M:EF1,EF2`` -> (kind, build option, search values)."""
    parts = text.split(":")
    if parts[0] == "flat":
        return "flat", None, [None]
    return parts[0], int(parts[1]), [int(v) for v in parts[2].split(",")]


def profile_pipeline(unit, k, q, h):
    """Seconds of each discovery stage with the exact kNN graph of every user."""
    from recbole_llm.community.anchors import coverage_graph, greedy_coverage_anchors
    from recbole_llm.community.kernels import kernel_weights
    from recbole_llm.knn import anchor_distances, build_index, scaled_arccos_distance

    stages = {}
    built, stages["exact index add"] = timed(build_index, unit, "cpu", "flat")
    (cos, idx), stages["exact search, all users"] = timed(built.search, unit, k)
    dist, stages["arccos distances"] = timed(scaled_arccos_distance, cos)
    graph, stages["coverage graph"] = timed(coverage_graph, dist, idx, h)
    (anchors, coverage), stages[f"greedy anchors (q={q})"] = timed(greedy_coverage_anchors, graph, q)
    anchor_dist, stages["anchor distances"] = timed(anchor_distances, unit, anchors)
    _, stages["kernel weights"] = timed(kernel_weights, anchor_dist, h)
    return stages, coverage[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--q", type=int, default=10)
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--sample", type=int, default=2000, help="query users for recall and timing")
    parser.add_argument("--profile", action="store_true", help="time the stages with the exact graph")
    parser.add_argument("--configs", nargs="*",
                        default=["ivf:1024:8,16,32", "ivf:4096:32,64,128", "hnsw:32:64,128,256"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from benchmarks.common import peak_rss_mb, write_results
    from recbole_llm.knn import (empty_index, import_faiss, l2_normalize,
                                           set_search_params, train_index)

    faiss = import_faiss()
    faiss.omp_set_num_threads(args.threads)
    unit = l2_normalize(synthetic_users(args.n))
    queries = np.random.default_rng(1).choice(args.n, args.sample, replace=False)
    rows, extra = [], {}
    if args.profile:
        stages, coverage = profile_pipeline(unit, args.k, args.q, args.h)
        extra["stages_exact_seconds"] = stages
        extra["coverage"] = coverage
        for stage, sec in stages.items():
            rows.append(dict(index="exact pipeline", stage=stage, seconds=sec))
        print(stages, flush=True)
    exact_index = empty_index(unit.shape[1], args.n, "cpu", "flat")
    exact_index.add(unit)
    (_, exact), recall_seconds = timed(exact_index.search, unit[queries], args.k)
    del exact_index
    extra["recall_estimation_seconds"] = recall_seconds
    rows.append(dict(index="exact (recall reference)", stage=f"search {args.sample} queries",
                     seconds=recall_seconds,
                     full_search_seconds_est=recall_seconds * args.n / args.sample, recall=1.0))
    for text in args.configs:
        kind, option, values = parse_config(text)
        if kind == "flat":
            continue
        kwargs = {"nlist": option} if kind == "ivf" else {"hnsw_m": option}
        built, t_new = timed(empty_index, unit.shape[1], args.n, "cpu", kind, **kwargs)
        _, t_train = timed(train_index, built, unit)
        _, t_add = timed(built.add, unit)
        for value in values:
            if kind == "ivf":
                set_search_params(built, nprobe=value)
            else:
                set_search_params(built, ef_search=value)
            (_, idx), t_search = timed(built.search, unit[queries], args.k)
            full = t_search * args.n / args.sample
            row = dict(index=f"{kind} {option}", stage=f"{'nprobe' if kind == 'ivf' else 'efSearch'} {value}",
                       train_seconds=t_new + t_train, add_seconds=t_add,
                       us_per_query=1e6 * t_search / args.sample, full_search_seconds_est=full,
                       graph_seconds_est=t_new + t_train + t_add + full,
                       recall=recall_at_k(idx, exact))
            rows.append(row)
            print(row, flush=True)
        del built
    extra["peak_rss_mb"] = peak_rss_mb()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{c: row.get(c, "") for c in columns} for row in rows]  # one table, all columns
    write_results(f"community_knn_tune_{args.n}", rows, vars(args), extra=extra)


if __name__ == "__main__":
    main()
