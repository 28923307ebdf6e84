"""SASRec epoch time through ``run_recbole_llm`` vs RecBole's own ``run_recbole``.

Same config and seed in two fresh processes.  Stock RecBole runs with autograd
anomaly detection on (its ``sine.py`` turns it on at import); recbole_llm turns
it off.  Both run with ``saved=False`` because stock RecBole cannot reload its
own checkpoint on torch>=2.6 (the other compat fix).  Test metrics must match.

    python benchmarks/foundation_epoch_time.py [--quick]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402

RUNNER = r'''
import json, sys, torch
cfg = json.loads(sys.argv[2])
if sys.argv[1] == "recbole":
    from recbole.quick_start import run_recbole as run
else:
    from recbole_llm.quick_start import run_recbole_llm as run
res = run(model="SASRec", dataset="ml-100k", config_dict=cfg, saved=False)
print("RESULT" + json.dumps({"test": dict(res["test_result"]), "anomaly": torch.is_anomaly_enabled()}))
'''


def run_one(kind, config):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUNNER, kind, json.dumps(config)], cwd=tmp,
                             capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        result = json.loads(out.stdout.split("RESULT")[-1])
        log = open(glob.glob(os.path.join(tmp, "log", "SASRec", "*.log"))[0]).read()
    times = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", log)]
    return times, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    config = {"epochs": 2, "train_neg_sample_args": None, "show_progress": False, "seed": 2020,
              "metrics": ["Hit", "NDCG"], "topk": [20], "valid_metric": "NDCG@20", "state": "INFO"}
    if args.quick:  # the configuration anomaly detection was first measured on
        config.update({"epochs": 1, "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 512})
    rows = []
    for kind in ("recbole", "recbole_llm"):
        times, result = run_one(kind, config)
        rows.append({"pipeline": "run_recbole" if kind == "recbole" else "run_recbole_llm",
                     "anomaly_detection": result["anomaly"],
                     "epoch_time_s": sum(times) / len(times), "epochs": len(times),
                     "test_hit@20": result["test"]["hit@20"], "test_ndcg@20": result["test"]["ndcg@20"]})
    rows[1]["speedup"] = rows[0]["epoch_time_s"] / rows[1]["epoch_time_s"]
    identical = all(rows[0][k] == rows[1][k] for k in ("test_hit@20", "test_ndcg@20"))
    write_results("foundation_epoch_time" + ("_quick" if args.quick else ""), rows, config,
                  extra={"identical_metrics": identical})
    print(f"identical test metrics: {identical}")


if __name__ == "__main__":
    main()
