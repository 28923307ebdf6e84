"""POD speed on ml-100k: training samples/s and users scored/s (tiny and T5-small-sized T5).

Random-initialised T5s built offline (recbole_llm.llm.tiny_t5): speed does not
depend on the weights, and no pretrained T5 is available on these machines.
Prints a markdown table and writes the same figures to
benchmarks/results/pod_speed.json with machine facts and the exact configs.

    python benchmarks/pod_speed.py --quick     # a few minutes on 2 CPU cores
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_llm.config import Config  # noqa: E402
from recbole_llm.llm.tiny_t5 import save_tiny_t5  # noqa: E402
from recbole_llm.quick_start import build_model, prepare  # noqa: E402

SIZES = {
    "tiny": dict(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2),
    "t5-small-sized": dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8, vocab_size=32128),
}


def machine():
    import recbole
    import transformers

    return {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0], "torch": torch.__version__,
            "recbole": recbole.__version__, "transformers": transformers.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def train_speed(model, train_data, steps, lr):
    """Samples/s of optimizer steps (forward, backward, AdamW) on ml-100k training batches."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    batches = iter(train_data)
    next(batches)  # warm-up batch not timed
    seen, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(batches).to(model.device)
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
        seen += len(batch)
    return seen / (time.perf_counter() - start), seen


@torch.no_grad()
def scoring_speed(model, test_data, users):
    """Users/s of full_sort_predict (the full-ranking evaluator's call) on test users."""
    model.eval()
    done, start = 0, time.perf_counter()
    for batch in test_data:
        part = batch[0][: users - done].to(model.device)
        scores = model.full_sort_predict(part)
        assert scores.shape == (len(part), model.n_items)
        done += len(part)
        if done >= users:
            break
    return done / (time.perf_counter() - start), done


def run(size, quick, tmp):
    path = save_tiny_t5(os.path.join(tmp, size), **SIZES[size])
    big = size != "tiny"
    settings = {"pod_llm": path, "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 64,
                "eval_batch_size": 64, "beam_size": 20, "topk": [5, 10], "show_progress": False,
                "state": "WARNING", "pod_decode_batch": 32 if big else 64}
    config = Config("POD", "ml-100k", config_dict=settings)
    _, train_data, _, test_data = prepare(config)
    model = build_model(config, train_data)
    steps = (4 if quick else 20) if big else (30 if quick else 200)
    users = (32 if quick else 128) if big else (128 if quick else 943)
    row = {"size": size, "parameters": sum(p.numel() for p in model.parameters()),
           "config": {**settings, "pod_llm": f"random {size} T5", **SIZES[size]}}
    row["train_samples_per_s"], row["train_samples_timed"] = train_speed(model, train_data, steps,
                                                                         config["learning_rate"])
    row["beam_users_per_s"], row["beam_users_timed"] = scoring_speed(model, test_data, users)
    if not big:
        model.inference = "exact"
        row["exact_users_per_s"], row["exact_users_timed"] = scoring_speed(model, test_data, 8)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and users")
    parser.add_argument("--sizes", default="tiny,t5-small-sized")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine: spin-waits)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "pod_speed.json"))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # RecBole writes ./log
        rows = [run(size, args.quick, tmp) for size in args.sizes.split(",")]
    print("| T5 | params | train samples/s | users/s (beam 20) | users/s (exact) |")
    print("|---|---|---|---|---|")
    for r in rows:
        exact = f"{r['exact_users_per_s']:.2f}" if "exact_users_per_s" in r else "-"
        print(f"| {r['size']} | {r['parameters']:,} | {r['train_samples_per_s']:.1f} | "
              f"{r['beam_users_per_s']:.2f} | {exact} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"benchmark": "pod_speed", "dataset": "ml-100k", "quick": args.quick,
                   "machine": machine(), "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
