"""Merge several ``benchmarks/results/<name>.json`` files of one benchmark (parallel streams) into one.

    python benchmarks/merge_results.py OUT IN1 IN2 ... [--best-valid]

Rows are rebuilt from the raw per-seed results; ``--best-valid`` adds each run's best valid
NDCG@20 and its round (the selection criterion of a default chosen on the valid set).  An
input may itself be a merged file (e.g. ``OUT`` plus a new stream of seeds).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR, mean_std, paired_test, write_results  # noqa: E402


def run_wall_times(data, label, runs):
    """Wall seconds of each run of ``label`` (merged files older than ``wall_s`` kept only the mean)."""
    if "wall_s" in data:
        return data["wall_s"][label]
    row = next(r for r in data["rows"] if r["method"] == label)
    return [row["wall_s_per_run"]] * runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--best-valid", action="store_true")
    parser.add_argument("--keep-inputs", action="store_true")
    args = parser.parse_args()
    raw, curves, configs, pop, wall = {}, {}, [], None, {}
    for name in args.inputs:
        path = os.path.join(RESULTS_DIR, name + ".json")
        with open(path) as f:
            data = json.load(f)
        merged = "merged_from" in data["config"]  # its curves are already one list per run
        for label, results in data["raw"].items():
            raw.setdefault(label, []).extend(results)
            wall.setdefault(label, []).extend(run_wall_times(data, label, len(results)))
            curve = data["valid_curves"].get(label, [])
            curves.setdefault(label, []).extend(curve if merged else [curve])
        configs.extend(data["config"]["configs"] if merged else [data["config"]])
        pop = pop or data.get("popularity")
    rows = []
    if pop:
        rows.append({"method": "Pop (training counts, RecBole Pop)", "HR@20": mean_std([pop["test"]["hit@20"]]),
                     "NDCG@20": mean_std([pop["test"]["ndcg@20"]]),
                     "HR@20 (unseen)": mean_std([pop.get("test (unseen)", {}).get("hit@20", float("nan"))]),
                     "NDCG@20 (unseen)": mean_std([pop.get("test (unseen)", {}).get("ndcg@20", float("nan"))]),
                     "seeds": 1})
    for label, results in raw.items():
        row = {"method": label, "HR@20": mean_std(r["hit@20"] for r in results),
               "NDCG@20": mean_std(r["ndcg@20"] for r in results),
               "HR@20 (unseen)": mean_std(r["hit@20 (unseen)"] for r in results if "hit@20 (unseen)" in r),
               "NDCG@20 (unseen)": mean_std(r["ndcg@20 (unseen)"] for r in results if "ndcg@20 (unseen)" in r),
               "seeds": len(results), "wall_s_per_run": round(sum(wall[label]) / len(wall[label]))}
        if args.best_valid:
            best = [max(c, key=lambda p: p[1]["ndcg@20"]) for c in curves[label] if c]
            row["best valid NDCG@20"] = mean_std(b[1]["ndcg@20"] for b in best)
            row["at round"] = ",".join(str(b[0] + 1) for b in best)
        rows.append(row)
    tests = {}
    for label in raw:
        if not label.startswith("LUMOS("):
            continue
        others = [label.replace("LUMOS", base, 1).split(",")[0] for base in ("FedSeq", "ConFedSRS")]
        others.append(label.split(",")[0])  # a variant (e.g. LLM views) against the default LUMOS
        for other in others:
            if other in raw and other != label:
                for metric in ("hit@20", "ndcg@20", "hit@20 (unseen)", "ndcg@20 (unseen)"):
                    tests[f"{label} vs {other}, {metric}"] = paired_test(
                        [r[metric] for r in raw[label]], [r[metric] for r in raw[other]])
    write_results(args.out, rows, {"merged_from": args.inputs, "configs": configs},
                  extra={"raw": raw, "popularity": pop, "valid_curves": curves, "paired_tests": tests,
                         "wall_s": wall})
    if not args.keep_inputs:
        for name in args.inputs:
            if name != args.out:
                os.remove(os.path.join(RESULTS_DIR, name + ".json"))


if __name__ == "__main__":
    main()
