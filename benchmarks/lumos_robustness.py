"""LUMOS robustness (paper Fig. 3): noisy and adversarial clients, target-item exposure.

A fraction of the clients is replaced by
* ``noise``: sequences of uniformly random items (same lengths), or
* ``promotion``: a target-item promotion attack at attacker-knowledge level k --
  each attacker sequence is made of items the attacker knows to be popular (a
  fraction k of its items, drawn from the true top-100 items) or random items
  (the rest), with the target item after every known-popular item.
Attackers run the same client code (their views come from their own sequences).
Reported: HR@20 / NDCG@20 of the test set and the target item's exposure (share
of test users whose top-20 list holds it) against the attacker fraction.

    python benchmarks/lumos_robustness.py [--quick] [--model LUMOS]
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402


def study_config(quick, metrics=("Hit", "NDCG"), rounds=None):
    """Settings shared by the Fig. 2 and Fig. 3 studies (paper's in full mode, shrunk in quick)."""
    return dict(state="WARNING", show_progress=False, metrics=list(metrics), topk=[20],
                valid_metric="NDCG@20", rounds=rounds or (20 if quick else 100), eval_step=5 if quick else 10,
                hidden_size=32 if quick else 64, inner_size=128 if quick else 256,
                MAX_ITEM_LIST_LENGTH=20 if quick else 50, local_epochs=5)


def add_study_arguments(parser):
    """The flags the Fig. 2 and Fig. 3 scripts share."""
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="LUMOS")
    parser.add_argument("--rounds", type=int, default=None, help="FedAvg rounds (default 20 quick, 100 full)")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in the results file, replacing those run again")
    parser.add_argument("--name", default=None, help="results file name (default from --quick/--rounds)")
    parser.add_argument("--seed", type=int, default=2020,
                        help="RecBole seed of the runs (rows are keyed by it, so --append adds seeds)")


def study_name(base, args):
    """Results file name: ``--name``, else ``base``, ``_quick`` in quick mode, ``_<N>rounds`` when --rounds is given."""
    if args.name:
        return args.name
    return base + ("_quick" if args.quick else "") + (f"_{args.rounds}rounds" if args.rounds else "")


def previous_study(name, append):
    """With ``append``: the rows and configs already in ``benchmarks/results/<name>.json``."""
    import json

    from benchmarks.common import RESULTS_DIR

    path = os.path.join(RESULTS_DIR, name + ".json")
    if not (append and os.path.exists(path)):
        return [], []
    with open(path) as f:
        old = json.load(f)
    return old["rows"], old["config"].get("earlier_runs", []) + [old["config"]]


def save_study(name, rows, config, key, previous=([], [])):
    """Write the study's rows merged with ``previous`` (see :func:`previous_study`; same ``key`` replaced)."""
    old_rows, earlier = previous
    fresh = {key(r) for r in rows}
    rows = [r for r in old_rows if key(r) not in fresh] + rows
    write_results(name, rows, dict(config, earlier_runs=earlier) if earlier else config)


def attacker_sequence(rng, length, n_items, target, popular, knowledge, kind):
    if kind == "noise":
        return rng.integers(1, n_items, size=length).tolist()
    seq = []
    while len(seq) < length:
        if rng.random() < knowledge:
            seq += [int(rng.choice(popular)), target]
        else:
            seq.append(int(rng.integers(1, n_items)))
    return seq[:length]


@torch.no_grad()
def exposure(model, test_data, target, k=20):
    model.eval()
    hit = total = 0
    for interaction, history_index, _, _ in test_data:
        scores = model.full_sort_predict(interaction.to(model.device)).view(-1, model.n_items)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        hit += int((scores.topk(k, dim=1).indices == target).any(1).sum())
        total += scores.shape[0]
    return hit / max(total, 1)


def run(model_name, overrides, fraction, kind, knowledge, seed=0):
    """One federated run with a share ``fraction`` of attacker clients; ``seed`` picks and builds them."""
    from recbole_llm.config import Config
    from recbole_llm.federated.client_data import make_client
    from recbole_llm.llm.item_text import popularity
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.utils import get_trainer

    config = Config(model=model_name, dataset="ml-100k", config_dict=overrides)
    dataset, train, valid, test = prepare(config)
    model = build_model(config, train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clients = trainer.setup_clients(train)
    pop = popularity(dataset)
    order = np.argsort(-pop)
    popular, target = order[1:101], int(order[-200])  # a long-tail item to promote
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(clients), size=int(round(fraction * len(clients))), replace=False):
        c = clients[i]
        seq = attacker_sequence(rng, len(c.sequence), dataset.item_num, target, popular, knowledge, kind)
        clients[i] = make_client(c.user_id, seq, model.max_seq_length, model.causal)
    trainer.fit(train, valid, saved=True, show_progress=False, verbose=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    return {"hit@20": result["hit@20"], "ndcg@20": result["ndcg@20"],
            "target_exposure@20": exposure(model, test, target)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_arguments(parser)
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.1, 0.3], help="noisy-client shares")
    parser.add_argument("--attacks", nargs="*", default=["none", "noise", "promotion"])
    parser.add_argument("--knowledge", nargs="*", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = study_config(args.quick, rounds=args.rounds)
    settings = [("none", 0.0, 0.0)] + [("noise", f, 0.0) for f in args.fractions]
    levels = args.knowledge or ((0.3, 0.9) if args.quick else (0.3, 0.6, 0.9))
    settings += [("promotion", 0.1, k) for k in levels]
    settings = [s for s in settings if s[0] in args.attacks]
    name = study_name("lumos_robustness", args)
    previous = previous_study(name, args.append)
    for row in previous[0]:  # rows written before --seed existed ran RecBole's default seed
        row.setdefault("seed", 2020)
    repo, tmp = os.getcwd(), tempfile.mkdtemp()
    os.chdir(tmp)
    rows = []
    for kind, fraction, knowledge in settings:
        res = run(args.model, dict(overrides, seed=args.seed, checkpoint_dir=os.path.join(tmp, "saved")),
                  fraction, kind, knowledge, seed=args.seed - 2020)  # 2020 -> attacker seed 0, as before
        rows.append(dict({"model": args.model, "attack": kind, "attacker_fraction": fraction,
                          "knowledge": knowledge, "seed": args.seed}, **res))
        print(rows[-1], flush=True)
        # rewritten after every run, so a run cut off keeps what it measured
        save_study(name, rows, overrides,
                   lambda r: (r["model"], r["attack"], r["attacker_fraction"], r["knowledge"], r["seed"]), previous)
    os.chdir(repo)


if __name__ == "__main__":
    main()
