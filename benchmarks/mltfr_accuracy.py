"""HR@20 / NDCG@20 of SASRec, BERT4Rec and GRU4Rec with and without MLTFR on ml-100k
(issue 4, item 9b): MiniLM experts, 3 seeds, mean ± std, test split, leave-one-out
by time, full ranking.

Each backbone trains with its own RecBole loss (``loss_type: CE``) both bare and
wrapped (``mltfr_loss: backbone``), so the only difference is the MLTFR
augmentation.  Bare backbones train ``round1_epochs + epochs`` epochs, the
same total as MLTFR's two rounds; early stopping applies within each run/round.
``--quick`` trains on the users with fewer than ``--max-user-inter`` interactions
and few epochs -- a smoke-level comparison, not the paper's protocol.

    python benchmarks/mltfr_accuracy.py [--quick] [--seeds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import mean_std, write_results  # noqa: E402

RUNNER = r'''
import json, sys
from recbole_llm.quick_start import run_recbole_llm
res = run_recbole_llm(model=sys.argv[1], dataset="ml-100k", config_dict=json.loads(sys.argv[2]), saved=True)
print("RESULT" + json.dumps(dict(res["test_result"])))
'''
BACKBONES = ("SASRec", "BERT4Rec", "GRU4Rec")


def run(model, config):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUNNER, model, json.dumps(config)], cwd=tmp,
                             capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1"))
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(f"{model} failed")
    return json.loads(out.stdout.split("RESULT")[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-user-inter", type=int, default=40)
    args = parser.parse_args()
    base = {"hidden_size": 64, "embedding_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
            "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "dropout_prob": 0.2,
            "learning_rate": 1e-3, "train_batch_size": 128, "eval_batch_size": 4096,
            "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "metrics": ["Hit", "NDCG"], "topk": [20],
            "valid_metric": "NDCG@20", "show_progress": False, "state": "WARNING",
            "epochs": 50, "stopping_step": 5}
    mltfr = {"llm_experts": ["minilm"] * 4, "token_pool": 2048, "num_tokens": 32, "expert_heads": 4,
             "mltfr_loss": "backbone", "round1_epochs": 50}
    if args.quick:
        base.update({"user_inter_num_interval": f"[5,{args.max_user_inter})", "MAX_ITEM_LIST_LENGTH": 20,
                     "train_batch_size": 256, "epochs": 2, "stopping_step": 2})
        mltfr.update({"round1_epochs": 2, "token_pool": 1024})
    rows = []
    for backbone in BACKBONES:
        for wrapped in (False, True):
            results = []
            for seed in range(args.seeds):
                cfg = dict(base, seed=2020 + seed)
                if wrapped:
                    cfg.update(mltfr, backbone=backbone)
                else:
                    cfg["epochs"] = base["epochs"] + mltfr["round1_epochs"]
                results.append(run("MLTFR" if wrapped else backbone, cfg))
                print(backbone, wrapped, seed, results[-1], flush=True)
            rows.append({"backbone": backbone, "model": f"MLTFR({backbone})" if wrapped else backbone,
                         "HR@20": mean_std(r["hit@20"] for r in results),
                         "NDCG@20": mean_std(r["ndcg@20"] for r in results),
                         "per_seed": [dict(r) for r in results]})
    table = [{k: v for k, v in r.items() if k != "per_seed"} for r in rows]
    path = write_results("mltfr_accuracy" + ("_quick" if args.quick else ""), table,
                         {"base": base, "mltfr": mltfr, "seeds": args.seeds},
                         extra={"per_seed": {r["model"]: r["per_seed"] for r in rows}})
    print(path)


if __name__ == "__main__":
    main()
