"""Dropout with its keep-mask drawn by ``torch.rand``: the one home of this speed-up, used by
MLTFR's expert dropout (§2.2, W_output) and by the federated vectorised engine (LUMOS §3).

The mask is the same Bernoulli(1 - p) keep-mask with the same 1 / (1 - p) scaling as
``nn.Dropout``, so the output has the same distribution; only the random numbers are drawn
differently.  On CPU, ``bernoulli_`` (what ``nn.Dropout`` uses) is about 2x slower: 2.1 vs 1.05 ms
forward + backward on MLTFR's 5,000 x 64 real-item rows at one thread.
"""
import torch
from torch import nn


def rand_mask_dropout(x, p, training=True):
    """``F.dropout(x, p, training)`` in distribution: keep each entry with probability 1 - p."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0.0
    # out of place: torch.func.vmap (the federated engine) has no batching rule for in-place ge_
    return x * ((torch.rand_like(x) >= p) * (1.0 / (1.0 - p)))


class RandMaskDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same train/eval behaviour) drawing its mask with ``torch.rand``."""

    def forward(self, x):
        return rand_mask_dropout(x, self.p, self.training)
