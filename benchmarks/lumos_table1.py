"""LUMOS Table 1 on ml-100k (issue 5, item 11): centralised vs federated, HR@20 / NDCG@20.

Rows: SASRec and GRU4Rec trained centrally by RecBole's trainer; FedSeq,
ConFedSRS and LUMOS (semantic views) with both backbones, through
``FederatedTrainer``; mean ± std over seeds of the test metrics of the best-valid
model; a PNG of valid NDCG@20 per round (when matplotlib is installed).  The
paper's setting is 100 rounds, hidden 64, length 50, 3 seeds; ``--quick`` shrinks
it to fit a shared 2-core machine (the exact config is written to the JSON).

    python benchmarks/lumos_table1.py [--quick] [--seeds 3] [--rounds 100]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR, mean_std, write_results  # noqa: E402

FEDERATED = [("FedSeq", "SASRec"), ("FedSeq", "GRU4Rec"), ("ConFedSRS", "SASRec"),
             ("ConFedSRS", "GRU4Rec"), ("LUMOS", "SASRec"), ("LUMOS", "GRU4Rec")]


def run(model, config_dict):
    """Train and test one model; returns (test result, valid history)."""
    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.utils import get_trainer

    config = Config(model=model, dataset="ml-100k", config_dict=config_dict)
    _, train, valid, test = prepare(config)
    net = build_model(config, train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.fit(train, valid, saved=True, show_progress=False, verbose=True)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    return dict(result), getattr(trainer, "valid_history", [])


def plot(curves, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves.items():
        if points:
            ax.plot([r + 1 for r, _ in points], [v["ndcg@20"] for _, v in points], marker="o", label=label)
    ax.set_xlabel("round"), ax.set_ylabel("valid NDCG@20"), ax.legend(fontsize=7)
    ax.set_title("ml-100k, valid NDCG@20 per round (seed 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.quick else 3)
    rounds = args.rounds or (20 if args.quick else 100)
    common = dict(hidden_size=32 if args.quick else 64, embedding_size=32 if args.quick else 64,
                  inner_size=128 if args.quick else 256, n_layers=2, n_heads=2,
                  MAX_ITEM_LIST_LENGTH=20 if args.quick else 50, metrics=["Hit", "NDCG"], topk=[20],
                  valid_metric="NDCG@20", state="INFO", show_progress=False)
    federated = dict(rounds=rounds, eval_step=5 if args.quick else 10, stopping_step=100, local_epochs=5,
                     client_fraction=0.1)
    central = dict(epochs=10 if args.quick else 50, stopping_step=5, train_batch_size=256)
    repo, tmp = os.getcwd(), tempfile.mkdtemp()
    os.chdir(tmp)
    results, curves, times = {}, {}, {}
    for seed in range(seeds):
        jobs = [(m, None) for m in ("SASRec", "GRU4Rec")] + FEDERATED
        for model, backbone in jobs:
            label = f"{model}({backbone})" if backbone else model
            cfg = dict(common, seed=2020 + seed, checkpoint_dir=os.path.join(tmp, "saved"))
            cfg.update(dict(federated, backbone=backbone) if backbone else central)
            start = time.time()
            test, history = run(model, cfg)
            times.setdefault(label, []).append(time.time() - start)
            results.setdefault(label, []).append(test)
            if seed == 0:
                curves[label] = history
            print(f"seed {seed} {label}: {test} ({times[label][-1]:.0f}s)", flush=True)
    os.chdir(repo)
    rows = [{"method": label, "HR@20": mean_std(r["hit@20"] for r in res),
             "NDCG@20": mean_std(r["ndcg@20"] for r in res), "seeds": len(res),
             "wall_s_per_run": sum(times[label]) / len(times[label])} for label, res in results.items()]
    name = "lumos_table1" + ("_quick" if args.quick else "")
    png = plot(curves, os.path.join(RESULTS_DIR, name + "_valid_ndcg.png"))
    write_results(name, rows, dict(common=common, federated=federated, central=central, seeds=seeds,
                                   threads=args.threads),
                  extra={"raw": results, "valid_curves": {k: v for k, v in curves.items()}, "plot": png})


if __name__ == "__main__":
    main()
