"""HR@20 / NDCG@20 of SASRec, BERT4Rec and GRU4Rec with and without MLTFR on ml-100k
(issue 4, item 9b): MiniLM experts, 3 seeds, mean ± std, test split, leave-one-out
by time, full ranking.

Each backbone trains with its own RecBole loss (``loss_type: CE``) both bare and
wrapped (``mltfr_loss: backbone``), so the only difference is the MLTFR
augmentation.  Bare backbones train ``round1_epochs + epochs`` epochs, the
same total as MLTFR's two rounds; early stopping applies within each run/round.
``--quick`` trains on the users with fewer than ``--max-user-inter`` interactions
and few epochs -- a smoke-level comparison, not the paper's protocol.

``--reduced`` keeps every ml-100k user but shrinks the paper's setup to a CPU budget
(hidden, history length, batch, epochs, token pool: see the flags); the exact config
is written into the JSON.  Seeds run one after another (all six models per seed) and
the JSON is rewritten after each, so an interrupted run still holds complete seeds.

    python benchmarks/mltfr_accuracy.py [--quick | --reduced [--deadline HH:MM]] [--seeds 3]
        [--backbones SASRec ...] [--mltfr-only] [--pool N] [--num-tokens K] [--name NAME]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import mean_std, mltfr_default, write_results  # noqa: E402

RUNNER = r'''
import json, sys
import torch
torch.set_num_threads(int(sys.argv[3]))
from recbole_llm.quick_start import run_recbole_llm
res = run_recbole_llm(model=sys.argv[1], dataset="ml-100k", config_dict=json.loads(sys.argv[2]), saved=True)
print("RESULT" + json.dumps(dict(res["test_result"])))
'''
BACKBONES = ("SASRec", "BERT4Rec", "GRU4Rec")


def run(model, config, threads=1):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUNNER, model, json.dumps(config), str(threads)], cwd=tmp,
                             capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1"))
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(f"{model} failed")
    return json.loads(out.stdout.split("RESULT")[-1])


def reduced(args, base, mltfr):
    """``--reduced``: all ml-100k users, fewer epochs and a shorter history than the paper (CPU budget)."""
    base.update({"hidden_size": args.hidden, "embedding_size": args.hidden, "inner_size": 4 * args.hidden,
                 "MAX_ITEM_LIST_LENGTH": args.max_len, "train_batch_size": args.batch,
                 "epochs": args.epochs, "stopping_step": 2})
    mltfr.update({"round1_epochs": args.round1_epochs, "token_pool": args.pool})


def summarise(results):
    rows = []
    for (backbone, wrapped), runs in results.items():
        rows.append({"backbone": backbone, "model": f"MLTFR({backbone})" if wrapped else backbone,
                     "seeds": len(runs), "HR@20": mean_std(r["hit@20"] for r in runs),
                     "NDCG@20": mean_std(r["ndcg@20"] for r in runs),
                     "run_s": mean_std(r["run_s"] for r in runs), "per_seed": runs})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reduced", action="store_true", help="all users, budgeted epochs/length (see reduced())")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-user-inter", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2, help="--reduced: Round-2 epochs (bare: + round1)")
    parser.add_argument("--round1-epochs", type=int, default=2)
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--num-tokens", type=int, default=None, help="K (default: the shipped num_tokens)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES), help="a subset of the backbones")
    parser.add_argument("--mltfr-only", action="store_true", help="skip the bare backbones (e.g. a token-pool study)")
    parser.add_argument("--name", default=None, help="results file name (default mltfr_accuracy[_quick|_reduced])")
    parser.add_argument("--deadline", help="UTC HH:MM: start no seed that the last seed's time says ends later")
    args = parser.parse_args()
    base = {"hidden_size": 64, "embedding_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
            "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "dropout_prob": 0.2,
            "learning_rate": 1e-3, "train_batch_size": 128, "eval_batch_size": 4096,
            "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "metrics": ["Hit", "NDCG"], "topk": [20],
            "valid_metric": "NDCG@20", "show_progress": False, "state": "WARNING",
            "epochs": 50, "stopping_step": 5}
    mltfr = {"llm_experts": ["minilm"] * 4, "token_pool": mltfr_default("token_pool"),
             "num_tokens": args.num_tokens or mltfr_default("num_tokens"), "expert_heads": 4,
             "mltfr_loss": "backbone", "round1_epochs": 50}
    if args.quick:
        base.update({"user_inter_num_interval": f"[5,{args.max_user_inter})", "MAX_ITEM_LIST_LENGTH": 20,
                     "train_batch_size": 256, "epochs": 2, "stopping_step": 2})
        mltfr.update({"round1_epochs": 2, "token_pool": 1024})
    elif args.reduced:
        reduced(args, base, mltfr)
    name = args.name or "mltfr_accuracy" + ("_quick" if args.quick else "_reduced" if args.reduced else "")
    # Seed-major order: every finished seed is a complete 6-model comparison, written at once.
    results = {(b, w): [] for b in args.backbones for w in ((True,) if args.mltfr_only else (False, True))}
    seed_s = []
    for seed in range(args.seeds):
        if args.deadline and seed_s:
            now = datetime.datetime.now(datetime.timezone.utc)
            end = now.replace(hour=int(args.deadline[:2]), minute=int(args.deadline[3:]), second=0)
            if now + datetime.timedelta(seconds=seed_s[-1]) > end:
                print(f"stopping after {seed} seeds: the next would end after {args.deadline} UTC", flush=True)
                break
        t_seed = time.time()
        for backbone, wrapped in results:
            cfg = dict(base, seed=2020 + seed)
            if wrapped:
                cfg.update(mltfr, backbone=backbone)
            else:
                cfg["epochs"] = base["epochs"] + mltfr["round1_epochs"]
            t = time.time()
            result = dict(run("MLTFR" if wrapped else backbone, cfg, args.threads), run_s=time.time() - t, seed=2020 + seed)
            results[backbone, wrapped].append(result)
            print(backbone, wrapped, seed, result, flush=True)
        seed_s.append(time.time() - t_seed)
        rows = summarise(results)
        table = [{k: v for k, v in r.items() if k != "per_seed"} for r in rows]
        path = write_results(name, table, {"base": base, "mltfr": mltfr, "seeds_requested": args.seeds,
                                           "torch_threads": args.threads},
                             extra={"per_seed": {r["model"]: r["per_seed"] for r in rows},
                                    "seconds_per_seed": seed_s})
    print(path)


if __name__ == "__main__":
    main()
