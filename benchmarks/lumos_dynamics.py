"""Learning dynamics of FedSeq / ConFedSRS / LUMOS on ml-100k (LUMOS §4.3-§4.4 at small scale).

Runs FedAvg rounds through ``FederatedTrainer`` and, every ``--every`` rounds,
records on a fixed probe of 16 clients (global model, train mode): the next-item
CE, the tri-view InfoNCE, the gradient norms of CE and of λ_CL·InfoNCE, and the
norm of the sequence representation h; plus the valid HR@20 / NDCG@20 of the
global model.  Written to diagnose the quick Table 1 (does the contrastive
gradient dominate, does the model stay at the popularity ranking?).

    python benchmarks/lumos_dynamics.py --rounds 100 --runs FedSeq:SASRec LUMOS:SASRec \
        LUMOS:SASRec:cl_temperature=0.5
"""
import argparse
import ast
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402


def parse_run(spec):
    model, backbone, *overrides = spec.split(":")
    extra = {}
    for item in overrides:
        key, value = item.split("=", 1)
        extra[key] = ast.literal_eval(value)
    return model, backbone, extra


def probe_statistics(model, probe):
    """Mean CE / InfoNCE, median gradient norms of CE and λ·InfoNCE, mean |h| over the probe."""
    import numpy as np
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    stats = {"ce": [], "cl": [], "grad_ce": [], "grad_cl": [], "h_norm": []}

    def norm(loss):
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None)))

    model.train()
    for c in probe:
        ce = model.next_item_loss(c.inputs, c.targets, c.lengths)
        stats["ce"].append(float(ce.detach()))
        stats["grad_ce"].append(norm(ce))
        if c.views is not None:
            cl = model.contrastive_loss(c.views, c.view_lengths)
            stats["cl"].append(float(cl.detach()))
            stats["grad_cl"].append(norm(model.cl_weight * cl))
            with torch.no_grad():
                stats["h_norm"].append(float(model.backbone(c.views, c.view_lengths).norm(dim=-1).mean()))
    out = {}
    for key, values in stats.items():
        if values:
            out[key] = float(np.median(values) if key.startswith("grad") else np.mean(values))
    return out


def run(model_name, backbone, extra, common, rounds, every):
    import torch

    from recbole_llm.config import Config
    from recbole_llm.federated.client_update import trainable_parameters
    from recbole_llm.federated.server import FedAvgServer
    from recbole_llm.model.lumos.views import prepare_views
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.federated.engines import make_engine
    from recbole_llm.utils import get_trainer

    config = Config(model=model_name, dataset="ml-100k",
                    config_dict=dict(common, rounds=rounds, backbone=backbone, **extra))
    _, train, valid, _ = prepare(config)
    model = build_model(config, train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.setup_clients(train)
    trainer.eval_collector.data_collect(train)
    server = FedAvgServer(trainable_parameters(model))
    engine = make_engine(config["fed_engine"], model, trainer.spec)
    generator = torch.Generator().manual_seed(int(config["seed"]))
    probe = trainer.clients[:16]
    if model.use_views:
        prepare_views(probe, trainer.view_generator, model.max_seq_length)
    history, start = [], time.time()
    for rnd in range(rounds):
        loss = trainer.train_round(server, engine, generator)
        if (rnd + 1) % every == 0 or rnd == 0:
            point = dict(round=rnd + 1, wall_s=round(time.time() - start, 1), round_loss=loss,
                         **probe_statistics(model, probe))
            _, result = trainer._valid_epoch(valid, show_progress=False)
            point.update({"valid_" + k: float(v) for k, v in result.items()})
            history.append(point)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()),
                  flush=True)
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["FedSeq:SASRec", "LUMOS:SASRec"],
                        help="MODEL:BACKBONE[:key=value...]")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--name", default="lumos_dynamics")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    common = dict(hidden_size=args.hidden, embedding_size=args.hidden, inner_size=4 * args.hidden, n_layers=2,
                  n_heads=2, MAX_ITEM_LIST_LENGTH=args.max_len, metrics=["Hit", "NDCG"], topk=[20],
                  valid_metric="NDCG@20", state="WARNING", show_progress=False, seed=args.seed)
    repo, tmp = os.getcwd(), tempfile.mkdtemp()
    os.chdir(tmp)
    histories, rows = {}, []
    for spec in args.runs:
        model, backbone, extra = parse_run(spec)
        print(f"== {spec}", flush=True)
        hist = run(model, backbone, extra, common, args.rounds, args.every)
        histories[spec] = hist
        best = max(hist, key=lambda p: p["valid_ndcg@20"])
        rows.append({"run": spec, "last valid NDCG@20": hist[-1]["valid_ndcg@20"],
                     "best valid NDCG@20": best["valid_ndcg@20"], "best round": best["round"],
                     "last CE": hist[-1]["ce"], "median |∇λCL|/|∇CE|": (
                         sorted(p["grad_cl"] / p["grad_ce"] for p in hist)[len(hist) // 2]
                         if "grad_cl" in hist[0] else None),
                     "wall_s": hist[-1]["wall_s"]})
        os.chdir(repo)
        write_results(args.name, rows, dict(common=common, rounds=args.rounds, every=args.every,
                                            runs=args.runs), extra={"history": histories})
        os.chdir(tmp)


if __name__ == "__main__":
    main()
