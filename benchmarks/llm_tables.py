"""Token tables of the named offline LLMs: load time and peak memory, first read vs cached read.

Each measurement runs in a fresh Python process (so peak RSS is that read's own), with
an empty cache directory for the first read and the same directory for the second.

    python benchmarks/llm_tables.py            # every installed named LLM
    python benchmarks/llm_tables.py --quick    # the small ones (no Gemma)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
from recbole_llm.llm.token_embeddings import load_token_embeddings
t1 = time.perf_counter()
emb = load_token_embeddings(sys.argv[1], cache_dir=sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "import_s": t1 - t0, "shape": list(emb.matrix.shape),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(name, cache_dir):
    out = subprocess.run([sys.executable, "-c", CHILD, name, cache_dir], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from recbole_llm.llm.catalog import NAMED_LLMS
    import importlib.util

    names = [n for n, llm in NAMED_LLMS.items() if importlib.util.find_spec(llm.module) is not None]
    if args.quick:
        names = [n for n in names if n != "gemma3-270m"]
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            first, cached = measure(name, cache), measure(name, cache)
            size = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache))
        rows.append({"llm": name, "table": " x ".join(map(str, first["shape"])),
                     "first read s": round(first["seconds"], 2), "first peak RSS MiB": round(first["peak_rss_mb"]),
                     "cached read s": round(cached["seconds"], 2),
                     "cached peak RSS MiB": round(cached["peak_rss_mb"]),
                     "cache file MiB": round(size / 2**20, 1)})
        print(rows[-1], flush=True)
    write_results("llm_tables" + ("_quick" if args.quick else ""), rows, {"names": names},
                  extra={"note": "peak RSS includes the interpreter, torch and transformers imports"})


if __name__ == "__main__":
    main()
