"""Benchmark: wall time of training L3Rec's local models in parallel vs one after the other.

The same q local SASRec tasks (communities from a trained MultiVAE on ml-100k)
are trained with ``parallel: none`` (sequential, this process, all torch
threads), ``process`` (spawned process pool, threads split) and ``ray`` (local
Ray, one task per model).  Start-up costs (spawning, importing RecBole in each
worker, starting Ray) are included: they are part of what a user waits for.

    python benchmarks/l3rec_parallel.py --quick   # users with <= 60 interactions, q = 4
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: no spin-waiting on shared cores)")
    parser.add_argument("--q", type=int, default=None)
    parser.add_argument("--local-epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--modes", nargs="*", default=["none", "process", "ray"])
    parser.add_argument("--name-suffix", default=None, help="results file name suffix")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config keys
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.common import write_results
    from recbole_llm.community.local_models import train_local_models
    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.model.l3rec import L3RecTrainer

    q = args.q or (4 if args.quick else 10)
    base = {"num_local_models": q, "local_model_epochs": args.local_epochs or (1 if args.quick else 3),
            "global_epochs": 10, "MAX_ITEM_LIST_LENGTH": 20, "state": "WARNING",
            "show_progress": False, "seed": 2020}
    if args.quick:
        base["user_inter_num_interval"] = "[10,60]"
    config = Config(model="L3Rec", dataset="ml-100k", config_dict=base)
    _, train, _, _ = prepare(config)
    model = build_model(config, train)
    trainer = L3RecTrainer(config, model)
    trainer.train_global_model(train)
    model.set_communities(trainer.discover_communities())
    workers = args.workers or min(q, os.cpu_count() or 1)
    rows = []
    for mode in args.modes:
        tasks = trainer.local_tasks(train)
        start = time.perf_counter()
        results = train_local_models(tasks, mode, workers=workers)
        wall = time.perf_counter() - start
        rows.append(dict(parallel=mode, local_models=len(results),
                         workers=1 if mode == "none" else workers, wall_seconds=wall,
                         sum_of_task_seconds=sum(r["seconds"] for r in results),
                         training_rows=sum(r["rows"] for r in results)))
        print(rows[-1], flush=True)
    sequential = next((r["wall_seconds"] for r in rows if r["parallel"] == "none"), None)
    for row in rows:
        row["speedup_vs_none"] = sequential / row["wall_seconds"] if sequential else None
    name = "l3rec_parallel" + ("_quick" if args.quick else "") + (args.name_suffix or "")
    write_results(name, rows, dict(vars(args), base=base, cores=os.cpu_count()),
                  extra={"load_avg_1m_start": load_start, "load_avg_1m_end": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
