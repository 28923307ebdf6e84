"""POD speed on ml-100k: training samples/s and users scored/s (tiny and T5-small-sized T5).

Random-initialised T5s built offline (recbole_llm.llm.tiny_t5): speed does not
depend on the weights, and no pretrained T5 is available on these machines.
Prints a markdown table and writes the same figures to
benchmarks/results/pod_speed.json (``pod_speed_quick.json`` with --quick) with
machine facts and the exact configs (benchmarks/common.py).

    python benchmarks/pod_speed.py --quick     # a few minutes on 2 CPU cores
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import write_results  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.llm.tiny_t5 import save_tiny_t5  # noqa: E402
from recbole_llm.quick_start import build_model, prepare  # noqa: E402

SIZES = {
    "tiny": dict(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2),
    "t5-small-sized": dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8, vocab_size=32128),
}


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
    row = {"T5": size, "parameters": sum(p.numel() for p in model.parameters())}
    row["train samples/s"], row["train samples timed"] = train_speed(model, train_data, steps,
                                                                     config["learning_rate"])
    row["users/s (beam 20)"], row["users timed (beam)"] = scoring_speed(model, test_data, users)
    if not big:
        model.inference = "exact"
        row["users/s (exact)"], row["users timed (exact)"] = scoring_speed(model, test_data, 8)
    return row, {**settings, "pod_llm": f"random {size} T5", **SIZES[size]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and users")
    parser.add_argument("--sizes", default="tiny,t5-small-sized")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine: spin-waits)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # RecBole writes ./log
        runs = [run(size, args.quick, tmp) for size in args.sizes.split(",")]
        os.chdir(cwd)
    write_results("pod_speed" + ("_quick" if args.quick else ""), [r for r, _ in runs],
                  {r["T5"]: c for r, c in runs}, extra={"dataset": "ml-100k", "quick": args.quick})


if __name__ == "__main__":
    main()
