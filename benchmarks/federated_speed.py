"""Federated engine speed: client updates/s and LUMOS round time.

* ml-100k at the paper's settings (SASRec hidden 64, 2 layers, length 50, E = 5
  local epochs, 10 % = 94 clients per round): client updates/s of the sequential
  and vectorized engines with the causal pass, and of RecBole-style prefix
  samples (the pre-issue baseline) on a subset of the same clients;
* 10,000 synthetic clients (ml-100k-like lengths and catalogue): the same engines
  on a sample of them (``--synthetic_clients`` of the 10,000 per measurement);
* one LUMOS round (semantic views, CL on) with each engine, view generation
  timed apart, and the projected 100-round wall time.

    python benchmarks/federated_speed.py [--quick] [--threads 1]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402


def setup(model_name, overrides, tmp):
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config
    from recbole_llm.utils import get_model

    os.chdir(tmp)
    config = Config(model=model_name, dataset="ml-100k", config_dict=dict(state="WARNING", **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train.dataset)
    return config, dataset, train, model


def time_round(engine, global_params, clients, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run_round(global_params, clients)
        best = min(best, time.perf_counter() - start)
    return best


def synthetic_clients(n, n_items, max_len, seed, causal=True):
    import numpy as np

    from recbole_llm.federated.client_data import make_client

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(4.2, 0.9, size=n).astype(int), 18, 700)  # ml-100k-like
    return [make_client(u, rng.integers(1, n_items, size=k).tolist(), max_len, causal)
            for u, k in enumerate(lengths, start=1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP spinning on shared cores)")
    parser.add_argument("--synthetic_clients", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="engine rounds timed as the best of this many")
    args = parser.parse_args()
    import tempfile

    import torch

    from recbole_llm.federated.client_data import build_clients
    from recbole_llm.federated.client_update import LocalTrainingSpec, SequentialEngine, trainable_parameters
    from recbole_llm.federated.sampling import sample_clients
    from recbole_llm.federated.vectorized import VectorizedEngine
    from recbole_llm.model.lumos.views import build_view_generator, prepare_views

    torch.set_num_threads(args.threads)
    repo = os.getcwd()
    tmp = tempfile.mkdtemp()
    paper = dict(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, MAX_ITEM_LIST_LENGTH=50,
                 local_epochs=5, client_fraction=0.1)
    prefix_subset = 10 if args.quick else 30
    n_synth_sample = args.synthetic_clients or (100 if args.quick else 1000)
    rows = []
    config, dataset, train, model = setup("FedSeq", paper, tmp)
    spec = LocalTrainingSpec.from_config(config)
    clients = build_clients(train.dataset, 50, causal=True)
    cohort = [clients[i] for i in sample_clients(len(clients), 0.1, torch.Generator().manual_seed(0))]
    params = {k: v.clone() for k, v in trainable_parameters(model).items()}
    engines = {"sequential": SequentialEngine(model, spec), "vectorized": VectorizedEngine(model, spec)}
    engines["vectorized"].run_round(params, cohort[:4])  # warm up torch.func
    for name, engine in engines.items():
        sec = time_round(engine, params, cohort, args.repeats)
        rows.append({"setting": "ml-100k FedSeq(SASRec), causal pass", "engine": name, "clients": len(cohort),
                     "round_s": sec, "client_updates_per_s": len(cohort) / sec})
    prefix_clients = build_clients(train.dataset, 50, causal=False)
    prefix_cohort = [prefix_clients[clients.index(c)] for c in cohort[:prefix_subset]]
    model.causal = False
    sec = time_round(SequentialEngine(model, spec), params, prefix_cohort)
    rows.append({"setting": "ml-100k FedSeq(SASRec), RecBole prefix samples", "engine": "sequential",
                 "clients": len(prefix_cohort), "round_s": sec * len(cohort) / len(prefix_cohort),
                 "client_updates_per_s": len(prefix_cohort) / sec})
    model.causal = True

    synth = synthetic_clients(10000, dataset.item_num, 50, seed=0)
    sample = [synth[i] for i in sample_clients(len(synth), n_synth_sample / len(synth),
                                               torch.Generator().manual_seed(1))]
    for name, engine in engines.items():
        sec = time_round(engine, params, sample, args.repeats)
        rows.append({"setting": f"10,000 synthetic clients ({len(sample)} timed)", "engine": name,
                     "clients": len(sample), "round_s": sec, "client_updates_per_s": len(sample) / sec})

    config, dataset, train, model = setup("LUMOS", paper, tmp)
    spec = LocalTrainingSpec.from_config(config)
    clients = build_clients(train.dataset, 50, causal=True)
    cohort = [clients[i] for i in sample_clients(len(clients), 0.1, torch.Generator().manual_seed(0))]
    start = time.perf_counter()
    generator = build_view_generator(config, dataset)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    prepare_views(clients, generator, 50)
    views_s = time.perf_counter() - start
    params = {k: v.clone() for k, v in trainable_parameters(model).items()}
    for name, engine in (("sequential", SequentialEngine(model, spec)), ("vectorized", VectorizedEngine(model, spec))):
        sec = time_round(engine, params, cohort, args.repeats)
        rows.append({"setting": "ml-100k LUMOS(SASRec) round, semantic views", "engine": name,
                     "clients": len(cohort), "round_s": sec, "client_updates_per_s": len(cohort) / sec,
                     "projected_100_rounds_min": (100 * sec + views_s + encode_s) / 60})
    os.chdir(repo)
    for row in rows:  # vectorized / sequential client updates/s of the same setting
        ref = [r for r in rows if r["setting"] == row["setting"] and r["engine"] == "sequential"]
        row["speedup"] = row["client_updates_per_s"] / ref[0]["client_updates_per_s"] if ref else None
    write_results("federated_speed" + ("_quick" if args.quick else ""), rows,
                  dict(paper, quick=args.quick, threads=args.threads, prefix_subset=prefix_subset,
                       synthetic_sample=len(sample), repeats=args.repeats),
                  extra={"item_text_encoding_s": encode_s, "views_all_943_clients_s": views_s})
    print(f"MiniLM item-text encoding {encode_s:.1f}s, semantic views for all clients {views_s:.1f}s")


if __name__ == "__main__":
    main()
