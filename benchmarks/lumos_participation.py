"""LUMOS participation study (paper Fig. 2): MRR@20 against clients per round on ml-100k.

The number of clients sampled per round is set through ``client_fraction``
(n / number of clients); everything else is fixed.  Reports test MRR@20,
HR@20 and NDCG@20 of the best-valid model for each n.  ``--individual`` adds the
paper's "individual learning" reference at the same n: every sampled client trains
only its own model, nothing is averaged (``individual_learning: True``,
:mod:`recbole_llm.federated.individual`).

    python benchmarks/lumos_participation.py [--quick] [--model LUMOS] [--individual] [--only-individual]
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.lumos_robustness import add_study_arguments, previous_study, save_study, study_config, study_name  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_arguments(parser)
    parser.add_argument("--sizes", nargs="*", type=int, default=None, help="clients per round")
    parser.add_argument("--individual", action="store_true", help="also run individual learning")
    parser.add_argument("--only-individual", action="store_true", help="run individual learning only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from recbole_llm.quick_start import run_recbole_llm

    n_clients = 943  # ml-100k users with training data
    sizes = args.sizes or ((16, 32, 64, 128) if args.quick else (32, 64, 128, 512))
    overrides = study_config(args.quick, metrics=("Hit", "NDCG", "MRR"), rounds=args.rounds)
    name = study_name("lumos_participation", args)
    previous = previous_study(name, args.append)
    for row in previous[0]:  # rows written before individual learning existed are federated
        row.setdefault("learning", "federated")
        row.setdefault("seed", 2020)  # and ran RecBole's default seed
    repo, tmp = os.getcwd(), tempfile.mkdtemp()
    os.chdir(tmp)
    learning = ([] if args.only_individual else ["federated"]) + \
        (["individual"] if args.individual or args.only_individual else [])
    rows = []
    for n in sizes:
        for mode in learning:
            start = time.time()
            res = run_recbole_llm(model=args.model, dataset="ml-100k", config_dict=dict(
                overrides, seed=args.seed, client_fraction=n / n_clients, individual_learning=mode == "individual",
                checkpoint_dir=os.path.join(tmp, "saved")))
            test = res["test_result"]
            rows.append({"model": args.model, "learning": mode, "clients_per_round": n, "seed": args.seed,
                         "MRR@20": test["mrr@20"], "HR@20": test["hit@20"], "NDCG@20": test["ndcg@20"],
                         "wall_s": round(time.time() - start, 1)})
            print(rows[-1], flush=True)
            save_study(name, rows, overrides,
                       lambda r: (r["model"], r["learning"], r["clients_per_round"], r["seed"]), previous)
    os.chdir(repo)
    plot_participation(name)


def plot_participation(name):
    """``<name>_mrr.png``: test MRR@20 against clients per round, one line per model and learning mode."""
    import json

    from benchmarks.common import RESULTS_DIR, line_plot

    with open(os.path.join(RESULTS_DIR, name + ".json")) as f:
        rows = json.load(f)["rows"]
    groups = {}  # (line, clients per round) -> MRR@20 of every seed
    for r in rows:
        groups.setdefault((f"{r['model']} ({r.get('learning', 'federated')})", r["clients_per_round"]), []).append(r["MRR@20"])
    series = {}
    for (label, n), values in sorted(groups.items(), key=lambda kv: kv[0][1]):
        xs, ys = series.setdefault(label, ([], []))
        xs.append(n), ys.append(sum(values) / len(values))  # mean over seeds
    return line_plot(series, os.path.join(RESULTS_DIR, name + "_mrr.png"), "clients per round", "test MRR@20",
                     "ml-100k, Fig. 2: MRR@20 against participation (mean over seeds)", logx=True)


if __name__ == "__main__":
    main()
