"""LUMOS Table 1 on ml-100k: centralised vs federated, HR@20 / NDCG@20.

Every trained model is tested under both protocols: RecBole's full ranking of
sequential models (all items) and LUMOS §5.1's (items the user has not interacted
with; ``eval_exclude_history``), columns "(unseen)".

Rows: SASRec and GRU4Rec trained centrally by RecBole's trainer; FedSeq,
ConFedSRS and LUMOS (semantic views) with both backbones, through
``FederatedTrainer``; mean ± std over seeds of the test metrics of the best-valid
model; a PNG of valid NDCG@20 per round (when matplotlib is installed).  A
reference row scores RecBole's ``Pop`` (training-split item counts) with the same
evaluator: a federated model that has learnt only item popularity lands there.
Optional ablation rows (``--ablations MODEL:BACKBONE:key=value``) run a federated
model away from the paper's defaults (e.g. ``LUMOS:SASRec:cl_temperature=0.5``).

The paper's setting is 100 rounds, hidden 64, length 50, 3 seeds; the flags shrink
it to fit a shared 2-core machine (the exact config is written to the JSON, which
is rewritten after every run so that a cut-off run keeps what it measured).

    python benchmarks/lumos_table1.py [--quick] [--seeds 3] [--rounds 100] [--epochs 10]
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR, line_plot, mean_std, paired_test, write_results  # noqa: E402
from benchmarks.lumos_dynamics import parse_run  # noqa: E402

FEDERATED = [("FedSeq", "SASRec"), ("FedSeq", "GRU4Rec"), ("ConFedSRS", "SASRec"),
             ("ConFedSRS", "GRU4Rec"), ("LUMOS", "SASRec"), ("LUMOS", "GRU4Rec")]


def run(model, config_dict):
    """Train and test one model; returns (test result, valid history)."""
    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.utils import get_trainer

    from recbole_llm.history_exclusion import exclude_history

    config = Config(model=model, dataset="ml-100k", config_dict=config_dict, command_line=False)
    _, train, valid, test = prepare(config)
    net = build_model(config, train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.fit(train, valid, saved=True, show_progress=False, verbose=True)
    result = dict(trainer.evaluate(test, load_best_model=True, show_progress=False))
    exclude_history(config, train, valid, test)  # the same model under LUMOS §5.1's protocol
    unseen = trainer.evaluate(test, load_best_model=False, show_progress=False)
    result.update({f"{k} (unseen)": v for k, v in unseen.items()})
    return result, getattr(trainer, "valid_history", [])


def popularity(config_dict):
    """RecBole's ``Pop`` (item counts of the clients' training sequences), same evaluator."""
    import torch
    from recbole.model.general_recommender import Pop
    from recbole.trainer import Trainer

    from recbole_llm.config import Config
    from recbole_llm.federated.client_data import training_sequences
    from recbole_llm.quick_start import prepare

    config = Config(model="FedSeq", dataset="ml-100k", config_dict=config_dict, command_line=False)
    dataset, train, valid, test = prepare(config)
    pop = Pop(config, train.dataset)
    items = torch.as_tensor([v for s in training_sequences(train.dataset).values() for v in s])
    pop.item_cnt = torch.bincount(items, minlength=dataset.item_num).unsqueeze(1)
    pop.max_cnt = pop.item_cnt.max(dim=0)[0]
    trainer = Trainer(config, pop)
    out = {name: dict(trainer.evaluate(data, load_best_model=False, show_progress=False))
           for name, data in (("valid", valid), ("test", test))}
    from recbole_llm.history_exclusion import exclude_history

    exclude_history(config, train, valid, test)
    out["test (unseen)"] = dict(trainer.evaluate(test, load_best_model=False, show_progress=False))
    return out


def plot(curves, path, reference=None):
    """Valid NDCG@20 per round of each method (``curves``: {label: [(round, valid result)]})."""
    series = {label: ([r + 1 for r, _ in points], [v["ndcg@20"] for _, v in points])
              for label, points in curves.items()}
    return line_plot(series, path, "round", "valid NDCG@20", "ml-100k, valid NDCG@20 per round (first seed)",
                     reference=None if reference is None else (reference, "Pop (valid)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--eval-step", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="centralised training epochs")
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--ablations", nargs="*", default=[], help="MODEL:BACKBONE:key=value[:...]")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="run only these rows, e.g. SASRec 'LUMOS(SASRec)' (default: all)")
    parser.add_argument("--append", action="store_true",
                        help="add to the rows already in the results file (e.g. more seeds of some rows)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed = 2020 + offset")
    parser.add_argument("--name", default=None, help="results file name (default lumos_table1[_quick])")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.quick else 3)
    rounds = args.rounds or (20 if args.quick else 100)
    hidden = args.hidden or (32 if args.quick else 64)
    common = dict(hidden_size=hidden, embedding_size=hidden, inner_size=4 * hidden, n_layers=2, n_heads=2,
                  MAX_ITEM_LIST_LENGTH=args.max_len or (20 if args.quick else 50), metrics=["Hit", "NDCG"],
                  topk=[20], valid_metric="NDCG@20", state="INFO", show_progress=False)
    federated = dict(rounds=rounds, eval_step=args.eval_step or (5 if args.quick else 10), stopping_step=100,
                     local_epochs=5, client_fraction=0.1)
    central = dict(epochs=args.epochs or (10 if args.quick else 50), stopping_step=5, train_batch_size=256)
    name = args.name or ("lumos_table1" + ("_quick" if args.quick else ""))
    config = dict(common=common, federated=federated, central=central, seeds=seeds, threads=args.threads,
                  ablations=args.ablations)
    repo, tmp = os.getcwd(), tempfile.mkdtemp()
    results, curves, times, loads, runs = {}, {}, {}, {}, []
    path = os.path.join(RESULTS_DIR, name + ".json")
    if args.append and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        results, curves, runs = old["raw"], old["valid_curves"], old["config"]["runs"]
        times, loads = old["wall_s"], old["load_avg_1m"]
    runs.append(dict(args=sys.argv[1:], config=config))
    config = dict(config, runs=runs)
    os.chdir(tmp)
    pop = popularity(dict(common, seed=2020))
    print(f"Pop: {pop}", flush=True)
    jobs = [(m, None, {}) for m in ("SASRec", "GRU4Rec")] + [(m, b, {}) for m, b in FEDERATED]
    for spec in args.ablations:
        model, backbone, extra = parse_run(spec)
        jobs.append((model, backbone, dict(extra, label=", ".join(f"{k}={v}" for k, v in extra.items()))))

    def save():
        rows = [{"method": "Pop (training counts, RecBole Pop)", "HR@20": mean_std([pop["test"]["hit@20"]]),
                 "NDCG@20": mean_std([pop["test"]["ndcg@20"]]),
                 "HR@20 (unseen)": mean_std([pop["test (unseen)"]["hit@20"]]),
                 "NDCG@20 (unseen)": mean_std([pop["test (unseen)"]["ndcg@20"]]), "seeds": 1, "wall_s_per_run": 0.0,
                 "load_avg_1m": None}]
        rows += [{"method": label, "HR@20": mean_std(r["hit@20"] for r in res),
                  "NDCG@20": mean_std(r["ndcg@20"] for r in res),
                  "HR@20 (unseen)": mean_std(r["hit@20 (unseen)"] for r in res if "hit@20 (unseen)" in r),
                  "NDCG@20 (unseen)": mean_std(r["ndcg@20 (unseen)"] for r in res if "ndcg@20 (unseen)" in r),
                  "seeds": len(res),
                  "wall_s_per_run": sum(times[label]) / len(times[label]),
                  "load_avg_1m": round(sum(loads[label]) / len(loads[label]), 2)}
                 for label, res in results.items()]
        tests = {}
        for label in results:
            for base in ("FedSeq", "ConFedSRS"):
                if not label.startswith("LUMOS("):
                    continue
                other = label.replace("LUMOS", base, 1).split(",")[0]
                if other in results:
                    for metric in ("hit@20", "ndcg@20", "hit@20 (unseen)", "ndcg@20 (unseen)"):
                        tests[f"{label} vs {other}, {metric}"] = paired_test(
                            [r[metric] for r in results[label]], [r[metric] for r in results[other]])
        os.chdir(repo)
        png = plot(curves, os.path.join(RESULTS_DIR, name + "_valid_ndcg.png"), pop["valid"]["ndcg@20"])
        write_results(name, rows, config, extra={"raw": results, "popularity": pop, "valid_curves": curves,
                                                 "paired_tests": tests,
                                                 "wall_s": times, "load_avg_1m": loads,
                                                 "plot": png and os.path.relpath(png, repo)})
        os.chdir(tmp)

    for seed in range(args.seed_offset, args.seed_offset + seeds):
        for model, backbone, extra in jobs:
            extra = dict(extra)
            label = f"{model}({backbone})" if backbone else model
            if "label" in extra:
                label += ", " + extra.pop("label")
            if args.methods is not None and label not in args.methods:
                continue
            cfg = dict(common, seed=2020 + seed, checkpoint_dir=os.path.join(tmp, "saved"))
            cfg.update(dict(federated, backbone=backbone, **extra) if backbone else central)
            start = time.time()
            test, history = run(model, cfg)
            times.setdefault(label, []).append(time.time() - start)
            loads.setdefault(label, []).append(os.getloadavg()[0])
            results.setdefault(label, []).append(test)
            if label not in curves or not curves[label]:
                curves[label] = history
            print(f"seed {seed} {label}: {test} ({times[label][-1]:.0f}s)", flush=True)
            save()
    os.chdir(repo)


if __name__ == "__main__":
    main()
