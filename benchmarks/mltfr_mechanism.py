"""Why MLTFR moves a backbone's accuracy: epoch-by-epoch diagnostics of Round 1 (§2.1, eq. 1-12).

Trains the bare backbone and MLTFR(backbone) (Round 1: experts and gate, no consensus
expert) from the same seed at the accuracy study's config (``benchmarks/mltfr_accuracy.py``),
one epoch at a time through RecBole's ``Trainer._train_epoch``, and after every epoch records:

* valid NDCG@20 of the bare backbone, and of MLTFR scored three ways: as the paper scores it
  (clean Top-K), with the training-time Gumbel routing left on (does the train/eval difference
  of eq. 4 matter?), and with the augmentation switched off (W_output = 0: how much does the
  trained backbone rely on it?);
* the size of the augmentation against the item embeddings it is added to, ``||W_output|| /
  ||E||`` over the real positions of one valid batch;
* per expert, the share of the clean Top-K tokens that the Gumbel-noised Top-K keeps
  (1 = noise changes nothing; K / pool = a random draw).

    python benchmarks/mltfr_mechanism.py [--backbone GRU4Rec] [--loss ce] [--epochs 8] [--set KEY=VALUE] [--quick]
"""
import argparse
import os
import sys
import tempfile
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import write_results  # noqa: E402
from benchmarks.mltfr_accuracy import LOSSES, PAPER, key_value  # noqa: E402


def build(model, config_dict):
    from recbole_llm.config import Config
    from recbole_llm.quick_start import build_model, prepare
    from recbole_llm.utils import get_trainer

    config = Config(model=model, dataset="ml-100k", config_dict=config_dict, command_line=False)
    _, train, valid, _ = prepare(config)
    net = build_model(config, train)
    return net, get_trainer(config["MODEL_TYPE"], config["model"])(config, net), train, valid


def valid_ndcg(trainer, valid):
    return round(float(trainer.evaluate(valid, load_best_model=False, show_progress=False)["ndcg@20"]), 4)


def first_sequence(model, valid):
    interaction = next(iter(valid))[0].to(model.device)
    return interaction[model.ITEM_SEQ]


@torch.no_grad()
def augmentation_ratio(model, item_seq):
    """||W_output|| / ||E|| per real position (mean), as the hook adds it in evaluation."""
    table = model.backbone.item_embedding.weight
    E = table[item_seq]
    aug = model.semantic_augmentation(item_seq, E, item_table=table)
    real = item_seq != 0
    return round(float((aug.norm(dim=-1)[real] / E.norm(dim=-1)[real]).mean()), 4)


@torch.no_grad()
def noisy_top_k_overlap(model, item_seq):
    """Per expert: mean share of its clean Top-K that the Gumbel-noised Top-K keeps."""
    from recbole_llm.model.mltfr.layers import filter_tokens

    E = model.backbone.item_embedding(item_seq)
    mask = item_seq != 0
    shares = []
    for expert, v in zip(model.experts, model.expert_vocab):
        W_voc = model._vocab(v)
        expert.eval()
        clean, _ = filter_tokens([expert], E, mask, W_voc)
        expert.train()
        noisy, _ = filter_tokens([expert], E, mask, W_voc)
        expert.eval()
        same = (clean[0].unsqueeze(-1) == noisy[0].unsqueeze(-2)).any(-1).float().mean()
        shares.append(round(float(same), 3))
    return shares


def mltfr_views(model, trainer, valid):
    """Valid NDCG@20 with training-time routing noise, and with the augmentation off."""
    for expert in model.experts:
        expert.train()  # only the routing's ``noisy`` flag reads it; MLTFR's dropout stays off
    noisy = valid_ndcg_without_reset(trainer, valid)
    for expert in model.experts:
        expert.eval()
    model.semantic_augmentation = lambda item_seq, E, item_table=None: torch.zeros_like(E)
    off = valid_ndcg_without_reset(trainer, valid)
    del model.semantic_augmentation
    return noisy, off


def valid_ndcg_without_reset(trainer, valid):
    """``Trainer.evaluate`` puts the model in eval mode; keep the experts' flags as set."""
    model = trainer.model
    flags = [e.training for e in model.experts]
    original = model.eval

    def eval_keeping_experts():
        original()
        for e, flag in zip(model.experts, flags):
            e.train(flag)
        return model

    model.eval = eval_keeping_experts
    try:
        return valid_ndcg(trainer, valid)
    finally:
        del model.eval


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="GRU4Rec")
    parser.add_argument("--loss", default="ce", choices=list(LOSSES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: users with few interactions, 2 epochs")
    parser.add_argument("--set", nargs="*", default=[], type=key_value, metavar="KEY=VALUE",
                        help="MLTFR keys away from the shipped defaults (e.g. routing_scale=learnable)")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = 2 if args.quick else args.epochs
    tmp = tempfile.mkdtemp()
    cfg = dict(PAPER, seed=args.seed, checkpoint_dir=os.path.join(tmp, "saved"), **LOSSES[args.loss])
    if args.quick:
        cfg.update(user_inter_num_interval="[5,25)", MAX_ITEM_LIST_LENGTH=20)
    if args.loss == "ce":
        bare_model, bare_cfg = args.backbone, dict(cfg, loss_type="CE")
    else:
        bare_model, bare_cfg = "MLTFR", dict(cfg, backbone=args.backbone, llm_experts=[])
    os.chdir(tmp)
    _, bare_trainer, train, valid = build(bare_model, bare_cfg)
    model, trainer, m_train, m_valid = build("MLTFR", dict(cfg, backbone=args.backbone, expert_heads=4, **dict(args.set)))
    item_seq = first_sequence(model, m_valid)
    rows = []
    for epoch in range(epochs):
        t = time.time()
        bare_loss = bare_trainer._train_epoch(train, epoch, show_progress=False)
        bare_s = time.time() - t
        t = time.time()
        loss = trainer._train_epoch(m_train, epoch, show_progress=False)
        mltfr_s = time.time() - t
        model.eval()
        noisy, off = mltfr_views(model, trainer, m_valid)
        row = {"epoch": epoch + 1, "bare valid NDCG@20": valid_ndcg(bare_trainer, valid),
               "MLTFR valid NDCG@20": valid_ndcg(trainer, m_valid),
               "MLTFR, noisy routing": noisy, "MLTFR, augmentation off": off,
               "||W_output|| / ||E||": augmentation_ratio(model, item_seq),
               "clean Top-K kept under noise": noisy_top_k_overlap(model, item_seq),
               "bare loss": round(float(bare_loss), 4), "MLTFR loss": round(float(loss), 4),
               "bare s": round(bare_s, 1), "MLTFR s": round(mltfr_s, 1)}
        rows.append(row)
        print(row, flush=True)
        name = args.name or "_".join(["mltfr_mechanism", args.backbone.lower(), args.loss]
                                     + [f"{k}_{v}" for k, v in args.set] + ["quick"] * args.quick)
        write_results(name, rows, dict(cfg, backbone=args.backbone, epochs=epochs, quick=args.quick,
                                       mltfr_set=dict(args.set)),
                      extra={"pool_size": [int(model._vocab(v).shape[0]) for v in model.expert_vocab],
                             "num_tokens": model.experts[0].num_tokens})


if __name__ == "__main__":
    main()
