"""Does POD learn?  HR/NDCG@5,10 on ml-100k (leave-one-out, full ranking) of a small
random-initialised T5 POD after a few epochs, next to RecBole's Pop under the same
protocol.  No pretrained T5 is available here, so these are not the paper's figures.

    python benchmarks/pod_accuracy.py --quick
Writes benchmarks/results/pod_accuracy[_quick].json (benchmarks/common.py).
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import write_results  # noqa: E402
from recbole_llm.llm.tiny_t5 import save_tiny_t5  # noqa: E402
from recbole_llm.quick_start import run_recbole_llm  # noqa: E402

COMMON = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},  # for Pop too
          "topk": [5, 10], "metrics": ["Hit", "NDCG"], "valid_metric": "NDCG@10",
          "MAX_ITEM_LIST_LENGTH": 20, "show_progress": False, "state": "WARNING", "seed": 2020}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller T5 and fewer epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="POD epochs (default: 2 with --quick, else 10)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    size = dict(d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=4) if args.quick else \
        dict(d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4)
    pod = dict(COMMON, epochs=args.epochs or (2 if args.quick else 10), train_batch_size=256,
               eval_batch_size=256,
               beam_size=20, learning_rate=5e-3 if args.quick else 1e-3)
    rows, configs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # RecBole writes ./log
        for name, model, settings in (
                ("Pop", "Pop", dict(COMMON, epochs=1)),
                ("POD (random T5 " + "/".join(f"{k}={v}" for k, v in size.items()) + ")", "POD",
                 dict(pod, pod_llm=save_tiny_t5(os.path.join(tmp, "t5"), **size)))):
            start = time.perf_counter()
            test = run_recbole_llm(model, "ml-100k", config_dict=settings, saved=False)["test_result"]
            rows.append({"model": name, "HR@5": test["hit@5"], "NDCG@5": test["ndcg@5"],
                         "HR@10": test["hit@10"], "NDCG@10": test["ndcg@10"],
                         "seconds": round(time.perf_counter() - start, 1)})
            configs[name] = {k: v for k, v in settings.items() if k != "pod_llm"}
        os.chdir(cwd)
    write_results("pod_accuracy" + ("_quick" if args.quick else "")
                  + (f"_{args.epochs}ep" if args.epochs else ""), rows, configs,
                  extra={"dataset": "ml-100k", "quick": args.quick})


if __name__ == "__main__":
    main()
