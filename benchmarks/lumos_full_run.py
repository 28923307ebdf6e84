"""One timed LUMOS run on ml-100k through ``run_recbole_llm``.

The paper's defaults from ``properties/model/LUMOS.yaml`` (SASRec hidden 64, 2 layers,
length 50, semantic views, 10 % of clients per round, 5 local epochs, evaluation
every 5 rounds), vectorized engine, 1 torch thread.  Early stopping is disabled
by default (``--stopping_step 1000``) so that exactly ``--rounds`` rounds run;
the target is 100 rounds in under 30 minutes on 2 CPU cores.  Records the wall
time, every round's training time, every evaluation's time and the test
HR@20 / NDCG@20 of the best-valid model.

    python benchmarks/lumos_full_run.py [--rounds 100] [--quick]
"""
import argparse
import logging
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402

ROUND_LINE = re.compile(r"epoch (\d+) (training|evaluating).*?time\S*: ([0-9.]+)s")


class RoundTimes(logging.Handler):
    """Collects RecBole's ``epoch N training/evaluating [time: Xs`` log lines (an epoch is a round)."""

    def __init__(self):
        super().__init__()
        self.train, self.evaluate = {}, {}

    def emit(self, record):
        match = ROUND_LINE.search(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))
        if match:
            target = self.train if match.group(2) == "training" else self.evaluate
            target[int(match.group(1))] = float(match.group(3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="3 rounds, evaluation every round")
    parser.add_argument("--stopping_step", type=int, default=1000)
    parser.add_argument("--engine", default="vectorized")
    parser.add_argument("--model", default="LUMOS", help="LUMOS, FedSeq or ConFedSRS")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size (inner size 4x)")
    parser.add_argument("--max_len", type=int, default=50)
    args = parser.parse_args()
    import torch

    from recbole_llm.quick_start import run_recbole_llm

    torch.set_num_threads(1)
    rounds = 3 if args.quick else args.rounds
    config = {"rounds": rounds, "stopping_step": args.stopping_step, "fed_engine": args.engine,
              "eval_step": 1 if args.quick else 5, "state": "INFO", "show_progress": False,
              "hidden_size": args.hidden, "n_layers": 2, "n_heads": 2, "inner_size": 4 * args.hidden,
              "MAX_ITEM_LIST_LENGTH": args.max_len}
    times = RoundTimes()
    root = logging.getLogger()
    root.addHandler(times)  # RecBole's init_logger then skips basicConfig: set the level here
    root.setLevel(logging.INFO)
    repo = os.getcwd()
    os.chdir(tempfile.mkdtemp())
    start = time.perf_counter()
    result = run_recbole_llm(model=args.model, dataset="ml-100k", config_dict=config)
    wall = time.perf_counter() - start
    os.chdir(repo)
    logging.getLogger().removeHandler(times)
    train_s = sorted(times.train.items())
    row = {"model": f"{args.model}(SASRec)", "engine": args.engine, "rounds_run": len(train_s),
           "wall_min": wall / 60, "mean_round_s": sum(t for _, t in train_s) / max(len(train_s), 1),
           "evaluations": len(times.evaluate), "eval_total_s": sum(times.evaluate.values()),
           "test_HR@20": float(result["test_result"]["hit@20"]),
           "test_NDCG@20": float(result["test_result"]["ndcg@20"])}
    name = "lumos_full_run" if args.model == "LUMOS" else f"lumos_full_run_{args.model}"
    write_results(name + ("_quick" if args.quick else ""), [row],
                  dict(config, model=args.model, dataset="ml-100k", threads=1),
                  extra={"round_train_s": dict(train_s), "eval_s": times.evaluate,
                         "best_valid_result": {k: float(v) for k, v in result["best_valid_result"].items()},
                         "test_result": {k: float(v) for k, v in result["test_result"].items()}})


if __name__ == "__main__":
    main()
