"""Benchmark: L3Rec accuracy on ml-100k (paper Fig. 4 and Table 6, SASRec local models).

For each seed, one L3Rec with q_max local models is trained; greedy coverage is
incremental and local model j is seeded ``seed + j``, so the L3Rec with the first
q anchors is exactly the q_max model restricted to its first q local models --
q = 1, 5, 10, 20 are evaluated from one training.  Every fusion method is
evaluated on the same local models (wRRF(LLM) weights from each model's NDCG@5
on the users' validation items).  Baselines on the same split and protocol
(leave-one-out by time, full ranking): the global MultiVAE alone (every user on
the fallback) and one SASRec trained on all data with the local models' settings.

    python benchmarks/l3rec_accuracy.py --quick --seeds 2020  # users with <= 60 interactions, tiny SASRec, 2 epochs
    python benchmarks/l3rec_accuracy.py --bandwidth 0.6  # all of ml-100k, 3 seeds (~10 min a seed, 1 core)
    python benchmarks/l3rec_accuracy.py --bandwidth 0.6 --resume --seeds 2023  # add a seed
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METRICS = ("hit@5", "hit@10", "ndcg@5", "ndcg@10")
FUSIONS = ("count", "rrf", "wrrf_cf", "wrrf_valid")


def evaluate(config, model, data):
    from recbole.trainer import Trainer

    result = Trainer(config, model).evaluate(data, load_best_model=False)
    return {m: float(result[m]) for m in METRICS}


def run_seed(seed, args, base):
    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare, run_recbole_llm
    from recbole_llm.model.l3rec import L3RecTrainer

    q_max = max(args.qs)
    config = Config(model="L3Rec", dataset="ml-100k",
                    config_dict=dict(base, seed=seed, num_local_models=q_max))
    _, train, valid, test = prepare(config)
    model = build_model(config, train)
    trainer = L3RecTrainer(config, model)
    start = time.perf_counter()
    trainer.fit(train, None, saved=False)
    train_seconds = time.perf_counter() - start
    trainer.measure_valid_ndcg(valid)
    stats = {"avg_users_per_community": float((model.train_weights[:, 1:] > 0).sum(1).float().mean()),
             "coverage": float((model.test_weights[:, 1:] > 0).any(0).float().mean())}
    rows = []
    trained = model.trained_local_models()
    for q in args.qs:
        model.set_trained_local_models(j for j in trained if j < q)
        for fusion in FUSIONS:
            model.fusion = fusion
            rows.append(dict(seed=seed, method=f"L3Rec q={q} {fusion}", **evaluate(config, model, test)))
    model.set_trained_local_models([])  # every user on the fallback: the global model alone
    rows.append(dict(seed=seed, method=f"global {base['global_model']}", **evaluate(config, model, test)))
    sasrec = dict(base["local_config"], epochs=base["local_model_epochs"], seed=seed,
                  **{k: base[k] for k in ("MAX_ITEM_LIST_LENGTH", "train_batch_size", "state",
                                          "show_progress", "metrics", "topk", "valid_metric")
                     if k in base})
    if "user_inter_num_interval" in base:
        sasrec["user_inter_num_interval"] = base["user_inter_num_interval"]
    result = run_recbole_llm(model="SASRec", dataset="ml-100k", config_dict=sasrec, saved=False)
    rows.append(dict(seed=seed, method="SASRec on all data",
                     **{m: float(result["test_result"][m]) for m in METRICS}))
    return rows, dict(stats, l3rec_train_seconds=train_seconds,
                      local_seconds=[r["seconds"] for r in trainer.local_results])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: no spin-waiting on shared cores)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[2020, 2021, 2022])
    parser.add_argument("--qs", type=int, nargs="*", default=[1, 5, 10, 20])
    parser.add_argument("--bandwidth", type=float, default=1.0)
    parser.add_argument("--local-epochs", type=int, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds already in the results JSON (same config) and add the others")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config keys
    import torch

    torch.set_num_threads(args.threads)
    base = {
        "local_model": "SASRec", "global_model": "MultiVAE", "global_epochs": 20,
        "local_model_epochs": args.local_epochs or (2 if args.quick else 3),
        "local_config": {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 1},
        "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 1024, "bandwidth": args.bandwidth,
        "state": "WARNING", "show_progress": False, "metrics": ["Hit", "NDCG"],
        "topk": [5, 10], "valid_metric": "NDCG@10",
    }
    if args.quick:  # shared 2-core CPU: a slice of ml-100k and tiny local models
        base["user_inter_num_interval"] = "[10,60]"  # 450 users, ~15.6k interactions
        base["local_config"] = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1}
        base["MAX_ITEM_LIST_LENGTH"] = 10
    all_rows, per_seed = [], {}
    if args.resume:
        all_rows, per_seed = resumed_seeds(args, base)
    for seed in args.seeds:  # results are rewritten after every seed: a cut-off run keeps its seeds
        if str(seed) in per_seed:
            continue
        start = time.perf_counter()
        rows, info = run_seed(seed, args, base)
        all_rows += rows
        per_seed[str(seed)] = dict(info, seed_wall_seconds=time.perf_counter() - start,
                                   load_avg_1m=os.getloadavg()[0])
        print(f"seed {seed} done: {per_seed[str(seed)]}", flush=True)
        write_table(args, base, all_rows, per_seed)


def results_name(args):
    name = "l3rec_accuracy" + ("_quick" if args.quick else "")
    return name + (f"_h{args.bandwidth:g}" if args.bandwidth != 1.0 else "")


def resumed_seeds(args, base):
    """Rows and per-seed facts of the seeds in an earlier results JSON with the same base config."""
    import json

    from benchmarks.common import RESULTS_DIR

    path = os.path.join(RESULTS_DIR, results_name(args) + ".json")
    if not os.path.exists(path):
        return [], {}
    old = json.load(open(path))
    if old["config"]["base"] != json.loads(json.dumps(base)):
        raise ValueError(f"--resume: {path} was made with another config; not mixing them")
    return old["raw_rows"], {str(k): v for k, v in old["per_seed"].items()}


def write_table(args, base, all_rows, per_seed):
    """Mean ± std over the seeds done so far, written to the results JSON."""
    from benchmarks.common import mean_std, write_results

    table = []
    for method in dict.fromkeys(r["method"] for r in all_rows):
        sel = [r for r in all_rows if r["method"] == method]
        table.append(dict(method=method, seeds=len(sel),
                          **{m: mean_std(r[m] for r in sel) for m in METRICS}))
    write_results(results_name(args), table, dict(vars(args), base=base),
                  extra={"per_seed": per_seed, "raw_rows": all_rows, "seeds_done": list(per_seed)})


if __name__ == "__main__":
    main()
