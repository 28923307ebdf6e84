"""HR@20 / NDCG@20 and epoch time of the six backbones of MLTFR's Table 2 on ml-100k.

SASRec and BERT4Rec are RecBole's; FMLPRec, LinRec, CL4SRec and BSARec are this
package's.  Every (model, seed) runs ``run_recbole_llm`` in a fresh process
(RecBole's logger is configured once per process); the epoch training time is
read from RecBole's log.  Leave-one-out by time, full ranking, test metrics of
the best-validation epoch; mean ± std over the seeds.

    python benchmarks/backbones.py            # each model's yaml defaults, 20 epochs
    python benchmarks/backbones.py --quick [--threads 1]   # hidden 16, length 10, 2 epochs
    python benchmarks/backbones.py --step-time [--quick]    # interleaved train-step times

Epoch times of runs made one after another drift with the machine's load; the
``--step-time`` mode times forward + backward of the same training batches for
all models in one process, round-robin, and reports the median per model.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.common import mean_std, write_results  # noqa: E402

MODELS = ["SASRec", "BERT4Rec", "FMLPRec", "LinRec", "CL4SRec", "BSARec"]
SEEDS = [2020, 2021, 2022]

RUNNER = r'''
import json, sys
from recbole_llm.quick_start import run_recbole_llm
res = run_recbole_llm(model=sys.argv[1], dataset="ml-100k", config_dict=json.loads(sys.argv[2]), saved=False)
print("RESULT" + json.dumps(dict(res["test_result"])))
'''


def run_one(model, config, threads=None):
    """Test metrics and per-epoch training times of one run, in a fresh process."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUNNER, model, json.dumps(config)], cwd=tmp,
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"{model} failed:\n{out.stderr[-3000:]}")
        test = json.loads(out.stdout.split("RESULT")[-1])
        log = open(glob.glob(os.path.join(tmp, "log", model, "*.log"))[0]).read()
    times = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", log)]
    return test, times


def step_times(models, config, steps):
    """Median seconds of ``calculate_loss`` + ``backward`` per training batch, models interleaved."""
    import statistics

    import torch

    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare

    batches, nets = {}, {}
    for model in models:
        run_config = Config(model=model, dataset="ml-100k", config_dict=dict(config, state="WARNING"))
        _, train_data, _, _ = prepare(run_config)
        nets[model] = build_model(run_config, train_data).train()
        loader = iter(train_data)
        batches[model] = [next(loader) for _ in range(steps)]
    times = {model: [] for model in models}
    for step in range(steps):
        for model in models:
            start = time.perf_counter()
            nets[model].calculate_loss(batches[model][step]).backward()
            times[model].append(time.perf_counter() - start)
            nets[model].zero_grad(set_to_none=True)
    return {model: statistics.median(t[1:]) for model, t in times.items()}  # first step warms up


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 epochs (shared CPU)")
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--step-time", type=int, nargs="?", const=30, default=None, metavar="STEPS",
                        help="time STEPS training batches per model, interleaved (default 30)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, VALUE read as JSON (e.g. MAX_ITEM_LIST_LENGTH=200)")
    parser.add_argument("--name", default=None, help="results file name (default from the mode)")
    args = parser.parse_args()
    config = {"epochs": 20, "stopping_step": 5, "train_batch_size": 2048, "eval_batch_size": 4096,
              "metrics": ["Hit", "NDCG"], "topk": [20], "valid_metric": "NDCG@20",
              "show_progress": False, "state": "INFO"}
    if args.quick:
        config.update({"epochs": 2, "hidden_size": 16, "inner_size": 32, "n_layers": 2,
                       "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 1024})
    for item in args.set:
        key, value = item.split("=", 1)
        config[key] = json.loads(value)
    if args.step_time:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)  # RecBole writes ./log
            medians = step_times(args.models, config, args.step_time)
            os.chdir(here)
        rows = [{"model": m, "train step (ms, median)": round(1000 * t, 1),
                 "vs SASRec": round(t / medians[args.models[0]], 2)} for m, t in medians.items()]
        write_results(args.name or "backbones_step_time" + ("_quick" if args.quick else ""), rows,
                      dict(config, steps=args.step_time, models=args.models, threads=args.threads))
        return
    rows, runs = [], []
    for model in args.models:
        per_seed = []
        for seed in SEEDS:
            start = time.time()
            test, times = run_one(model, dict(config, seed=seed), args.threads)
            per_seed.append({"model": model, "seed": seed, "hit@20": test["hit@20"],
                             "ndcg@20": test["ndcg@20"], "epoch_times_s": times,
                             "wall_s": round(time.time() - start, 1)})
            print(json.dumps(per_seed[-1]), flush=True)
        runs.extend(per_seed)
        rows.append({
            "model": model,
            "HR@20": mean_std(r["hit@20"] for r in per_seed),
            "NDCG@20": mean_std(r["ndcg@20"] for r in per_seed),
            "epoch time (s)": mean_std(sum(r["epoch_times_s"]) / len(r["epoch_times_s"]) for r in per_seed),
        })
    write_results(args.name or "backbones" + ("_quick" if args.quick else ""), rows,
                  dict(config, seeds=SEEDS, models=args.models, threads=args.threads),
                  extra={"runs": runs})


if __name__ == "__main__":
    main()
