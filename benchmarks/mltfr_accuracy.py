"""MLTFR's accuracy study on ml-100k (paper §4.2-4.4): bare vs wrapped backbones, the
ablations, and the token-pool / routing-scale choices, with seeds and paired tests.

Protocol (the paper's §4.1.1 where it gives one): hidden 64, MAX_ITEM_LIST_LENGTH 50, batch 128,
Adam lr 1e-3, dropout 0.2, 4 heads, leave-one-out by time, full ranking, HR@20 / NDCG@20 on the
test split.  Every run trains to early stopping on valid NDCG@20 (``stopping_step``, at most
``--max-epochs`` per round; MLTFR's two rounds each stop on their own).  Seeds 2020, 2021, ...

Arms (``--groups``):

- ``main``: for each backbone of ``--backbones`` and each loss of ``--losses``, the bare backbone
  and MLTFR over it with the shipped default experts.  ``eq16``: the paper's loss for both
  (bare = MLTFR with ``llm_experts: []``, i.e. the backbone trained by eq. 16 with one sampled
  negative); ``ce``: RecBole's full-softmax CE for both (bare = the RecBole model itself).
- ``ablation`` (on ``--ablation-backbone``, eq. 16): w/o SC, LLM-TE, LLM-RE, 1/2/3 experts (the
  first n default experts; 4 is ``main``), random instead of user-guided token filter.
- ``pool``: ``token_pool_mode`` first / farthest at 512 and 2048, the whole vocabulary
  (``token_pool: 0``), and ``routing_scale: learnable``, each against the shipped default.

Each finished run is one line of ``benchmarks/results/<name>.jsonl`` (arm, seed, valid and test
metrics, seconds).  A rerun skips the (arm, seed) pairs already there, so an interrupted or
partial study continues unchanged; ``<name>.json`` is rebuilt from all lines after every run:
mean ± std per arm and paired t-tests (same seeds) of every arm against its reference arm.
``--jobs J`` runs J runs at once, each with ``--threads`` torch threads.

    python benchmarks/mltfr_accuracy.py [--groups main ablation pool] [--seeds 5] [--jobs 2]
        [--backbones SASRec BERT4Rec GRU4Rec] [--losses eq16 ce] [--max-epochs 100] [--quick]
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR, mean_std, mltfr_default, paired_test, write_results  # noqa: E402

RUNNER = r'''
import json, sys
import torch
torch.set_num_threads(int(sys.argv[3]))
from recbole_llm.quick_start import run_recbole_llm
res = run_recbole_llm(model=sys.argv[1], dataset="ml-100k", config_dict=json.loads(sys.argv[2]), saved=True)
print("RESULT" + json.dumps({"valid": dict(res["best_valid_result"] or {}), "test": dict(res["test_result"])}))
'''
BACKBONES = ("SASRec", "BERT4Rec", "GRU4Rec")
PAPER = {"hidden_size": 64, "embedding_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
         "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "dropout_prob": 0.2, "learning_rate": 1e-3,
         "train_batch_size": 128, "eval_batch_size": 4096, "MAX_ITEM_LIST_LENGTH": 50,
         "metrics": ["Hit", "NDCG"], "topk": [20], "valid_metric": "NDCG@20",
         "show_progress": False, "state": "WARNING"}
LOSSES = {"eq16": {"loss_type": "BPR", "mltfr_loss": "bce"},       # BPR: RecBole samples eq. 16's negative
          "ce": {"loss_type": "CE", "mltfr_loss": "backbone"}}


def key_value(text):
    """``KEY=VALUE`` -> (key, value), the value read as yaml (``true``, ``2048``, ``learnable``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def arms(args):
    """{arm name: (model, config delta, reference arm or None)} for the requested groups."""
    experts = list(mltfr_default("llm_experts"))
    wrapped = {"llm_experts": experts, "expert_heads": 4}
    out = {}
    if "main" in args.groups:
        for backbone in args.backbones:
            for loss in args.losses:
                bare = f"{backbone} [{loss}]"
                if loss == "eq16":
                    out[bare] = ("MLTFR", dict(LOSSES[loss], backbone=backbone, llm_experts=[]), None)
                else:
                    out[bare] = (backbone, {"loss_type": "CE"}, None)
                out[f"MLTFR({backbone}) [{loss}]"] = ("MLTFR", dict(LOSSES[loss], **wrapped, backbone=backbone), bare)
                for key, value in args.set:  # the wrapper away from the shipped defaults, against the bare arm
                    out[f"MLTFR({backbone}) [{loss}] {key}={value}"] = (
                        "MLTFR", dict(LOSSES[loss], **wrapped, backbone=backbone, **{key: value}), bare)
    b = args.ablation_backbone
    full = f"MLTFR({b}) [eq16]"
    base = dict(LOSSES["eq16"], **wrapped, backbone=b)
    if "ablation" in args.groups or "pool" in args.groups:
        out.setdefault(f"{b} [eq16]", ("MLTFR", dict(LOSSES["eq16"], backbone=b, llm_experts=[]), None))
        out.setdefault(full, ("MLTFR", base, f"{b} [eq16]"))
    if "ablation" in args.groups:
        out[f"{full} w/o SC"] = ("MLTFR", dict(base, use_sc=False), full)
        out[f"{full} LLM-TE"] = ("MLTFR", dict(base, expert_mode="te"), full)
        out[f"{full} LLM-RE"] = ("MLTFR", dict(base, expert_mode="re"), full)
        for n in range(1, len(experts)):
            out[f"{full} {n} expert{'s' * (n > 1)}"] = ("MLTFR", dict(base, llm_experts=experts[:n]), full)
        out[f"{full} random filter"] = ("MLTFR", dict(base, token_filter="random"), full)
    if "pool" in args.groups:
        shipped = (mltfr_default("token_pool_mode"), mltfr_default("token_pool"))
        for mode in ("first", "farthest"):
            for size in (512, 2048):
                if (mode, size) != shipped:
                    out[f"{full} pool {mode} {size}"] = ("MLTFR", dict(base, token_pool_mode=mode, token_pool=size),
                                                          full)
        out[f"{full} whole vocabulary"] = ("MLTFR", dict(base, token_pool=0), full)
        out[f"{full} learnable scale"] = ("MLTFR", dict(base, routing_scale="learnable"), full)
    return out


def protocol(args):
    cfg = dict(PAPER, epochs=args.max_epochs, stopping_step=args.stopping_step)
    if args.quick:  # a smoke run of the script: the users with few interactions, two epochs per round
        cfg.update(user_inter_num_interval="[5,25)", epochs=2, stopping_step=2, MAX_ITEM_LIST_LENGTH=20)
    return cfg


def run(model, config, threads):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        out = subprocess.run([sys.executable, "-c", RUNNER, model, json.dumps(config), str(threads)], cwd=tmp,
                             capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1"))
    if out.returncode:
        raise RuntimeError(f"{model} {config} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.split("RESULT")[-1]), run_s=time.time() - t)


def load_runs(path):
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(runs, table):
    """Mean ± std per arm, and the paired test of each arm against its reference over shared seeds."""
    by_arm = {}
    for r in runs:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r
    rows = []
    for arm, (_, _, ref) in table.items():
        mine = by_arm.get(arm, {})
        if not mine:
            continue
        row = {"arm": arm, "seeds": len(mine),
               "HR@20": mean_std(r["test"]["hit@20"] for r in mine.values()),
               "NDCG@20": mean_std(r["test"]["ndcg@20"] for r in mine.values()),
               "valid NDCG@20": mean_std(r["valid"].get("ndcg@20", float("nan")) for r in mine.values()),
               "run_min": mean_std(r["run_s"] / 60 for r in mine.values()), "vs": ref or "-"}
        theirs = by_arm.get(ref, {})
        shared = sorted(set(mine) & set(theirs))
        for metric in ("ndcg@20", "hit@20"):
            test = paired_test([mine[s]["test"][metric] for s in shared], [theirs[s]["test"][metric] for s in shared])
            gain = (test["mean_diff"] / statistics.mean([theirs[s]["test"][metric] for s in shared])
                    if shared and test["mean_diff"] is not None else None)
            row[f"{metric} gain"] = None if gain is None else f"{100 * gain:+.1f} %"
            row[f"{metric} p"] = test["p_value"]
        row["paired seeds"] = len(shared)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", nargs="*", default=["main"], choices=["main", "ablation", "pool"])
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--ablation-backbone", default="SASRec")
    parser.add_argument("--arms", nargs="*", default=None, help="run only the arms whose name contains one of these")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=100, help="per round")
    parser.add_argument("--stopping-step", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--quick", action="store_true", help="smoke run (subset of users, 2 epochs per round)")
    parser.add_argument("--name", default=None, help="results name (default mltfr_accuracy[_quick])")
    parser.add_argument("--set", nargs="*", default=[], type=key_value, metavar="KEY=VALUE",
                        help="add a main arm per backbone and loss: the wrapper with this MLTFR key changed")
    parser.add_argument("--summarise", action="store_true", help="rebuild the summary of the chosen arms only")
    args = parser.parse_args()
    table = arms(args)
    if args.arms:
        chosen = {a for a in table if any(s in a for s in args.arms)}
        chosen |= {table[a][2] for a in chosen if table[a][2]}  # with their references, for the paired tests
        table = {a: v for a, v in table.items() if a in chosen}
    name = args.name or "mltfr_accuracy" + ("_quick" if args.quick else "")
    jsonl = os.path.join(RESULTS_DIR, f"{name}.jsonl")
    base = protocol(args)
    done = {(r["arm"], r["seed"]) for r in load_runs(jsonl)}
    todo = [(arm, 2020 + s) for s in range(args.seeds) for arm in table if (arm, 2020 + s) not in done]
    lock = threading.Lock()

    def summary():
        write_results(name, summarise(load_runs(jsonl), table),
                      {"protocol": base, "arms": {a: {"model": m, "config": d, "vs": r} for a, (m, d, r) in table.items()},
                       "seeds_requested": args.seeds, "torch_threads": args.threads, "jobs": args.jobs})

    if args.summarise:
        return summary()
    print(f"{len(table)} arms x {args.seeds} seeds: {len(done)} runs done, {len(todo)} to run", flush=True)

    def one(arm, seed):
        model, delta, _ = table[arm]
        cfg = dict(base, **delta, seed=seed)
        if model == "MLTFR" and cfg.get("llm_experts"):
            cfg["round1_epochs"] = base["epochs"]
        elif args.quick:  # the smoke run's bare arms get both rounds' epochs (no early stopping there)
            cfg["epochs"] = 2 * base["epochs"]
        result = dict(run(model, cfg, args.threads), arm=arm, seed=seed, model=model, config=delta)
        with lock:
            with open(jsonl, "a") as f:
                f.write(json.dumps(result) + "\n")
            print(f"{arm} seed {seed}: test {result['test']} ({result['run_s'] / 60:.1f} min)", flush=True)
            summary()

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(one, arm, seed) for arm, seed in todo]:
            future.result()


if __name__ == "__main__":
    main()
