"""Shared plumbing of the benchmark scripts: machine facts, markdown tables, JSON results.

Convention: every ``benchmarks/<name>.py`` runs standalone,
has a ``--quick`` mode, prints a markdown table and writes the same figures to
``benchmarks/results/<name>.json`` with :func:`machine_facts` and the exact config.
"""
import datetime
import json
import os
import platform
import resource
import statistics

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine_facts():
    """Cores, versions, device and date: what makes two results comparable."""
    import torch

    facts = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_avg_1m": os.getloadavg()[0],
    }
    for pkg in ("recbole", "transformers", "faiss", "numpy"):
        try:
            facts[pkg] = __import__(pkg).__version__
        except Exception:
            facts[pkg] = None
    return facts


def cpu_model():
    """The CPU's model name and widest vector extension: absolute times and some ratios
    (elementwise-heavy vs GEMM-heavy models) move between hosts that differ in these."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or None
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    vector = next((v for v in ("avx512f", "avx2", "avx") if v in flags), "none")
    return f"{name} ({vector})"


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mean_std(values):
    """``"m ± s"`` of a list of numbers (std 0 for a single value)."""
    values = list(values)
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def markdown_table(rows, columns=None):
    """Rows (dicts) as a markdown table; columns default to the keys of all rows."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))  # every row's keys, in order
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for col in columns:
            v = row.get(col, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(name, rows, config, extra=None):
    """Print the table and write ``benchmarks/results/<name>.json``; returns the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_facts(), "config": config, "rows": rows}
    if extra:
        payload.update(extra)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    print(markdown_table(rows))
    print(f"\nwritten: {os.path.relpath(path)}")
    return path


def line_plot(series, path, xlabel, ylabel, title, reference=None, logx=False):
    """A PNG of ``{label: (xs, ys)}`` lines (and a dashed ``(value, label)`` reference); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (xs, ys) in series.items():
        if len(xs):
            ax.plot(xs, ys, marker="o", label=label)
    if reference is not None:
        ax.axhline(reference[0], color="grey", linestyle="--", label=reference[1])
    if logx:  # ticks at the measured x values, written plainly
        ax.set_xscale("log", base=2)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def mltfr_default(key):
    """MLTFR's shipped value of ``key`` (properties/model/MLTFR.yaml): what a user gets without setting it."""
    import yaml

    from recbole_llm.config import PROPERTIES_DIR

    with open(os.path.join(PROPERTIES_DIR, "model", "MLTFR.yaml")) as f:
        return yaml.safe_load(f)[key]


def paired_test(a, b):
    """Paired comparison of two methods over the same seeds: mean difference a − b, its std, and the
    two-sided paired t-test p-value (None with fewer than two pairs or zero variance)."""
    a, b = list(a), list(b)
    n = min(len(a), len(b))
    diffs = [x - y for x, y in zip(a[:n], b[:n])]
    if n < 2:
        return {"pairs": n, "mean_diff": diffs[0] if diffs else None, "std_diff": None, "p_value": None}
    from scipy import stats

    sd = statistics.stdev(diffs)
    p = None if sd == 0 else float(stats.ttest_rel(a[:n], b[:n]).pvalue)
    return {"pairs": n, "mean_diff": statistics.mean(diffs), "std_diff": sd, "p_value": p}
