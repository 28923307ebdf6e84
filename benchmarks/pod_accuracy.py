"""Does POD learn?  HR/NDCG@5,10 on ml-100k (leave-one-out, full ranking) of a small
random-initialised T5 POD after a few epochs, next to RecBole's Pop under the same
protocol.  No pretrained T5 is available here, so these are not the paper's figures.

    python benchmarks/pod_accuracy.py --quick
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pod_speed import machine  # noqa: E402  (this folder is on sys.path when run as a script)
from recbole_llm.llm.tiny_t5 import save_tiny_t5  # noqa: E402
from recbole_llm.quick_start import run_recbole_llm  # noqa: E402

COMMON = {"topk": [5, 10], "metrics": ["Hit", "NDCG"], "valid_metric": "NDCG@10",
          "MAX_ITEM_LIST_LENGTH": 20, "show_progress": False, "state": "WARNING", "seed": 2020}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller T5 and fewer epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "pod_accuracy.json"))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    size = dict(d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=4) if args.quick else \
        dict(d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4)
    pod = dict(COMMON, epochs=2 if args.quick else 10, train_batch_size=256, eval_batch_size=256,
               beam_size=20, learning_rate=5e-3 if args.quick else 1e-3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name, model, settings in (
                ("Pop", "Pop", dict(COMMON, epochs=1)),
                ("POD (random T5 " + "/".join(f"{k}={v}" for k, v in size.items()) + ")", "POD",
                 dict(pod, pod_llm=save_tiny_t5(os.path.join(tmp, "t5"), **size)))):
            start = time.perf_counter()
            result = run_recbole_llm(model, "ml-100k", config_dict=settings, saved=False)
            rows.append({"model": name, "seconds": round(time.perf_counter() - start, 1),
                         "test": dict(result["test_result"]),
                         "config": {k: v for k, v in settings.items() if k != "pod_llm"}})
    print("| model | HR@5 | NDCG@5 | HR@10 | NDCG@10 | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        t = r["test"]
        print(f"| {r['model']} | {t['hit@5']:.4f} | {t['ndcg@5']:.4f} | {t['hit@10']:.4f} | "
              f"{t['ndcg@10']:.4f} | {r['seconds']} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"benchmark": "pod_accuracy", "dataset": "ml-100k", "quick": args.quick,
                   "machine": machine(), "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
