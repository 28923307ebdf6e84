"""CL4SRec's sequence augmentations (Xie et al., ICDE 2022): item crop, mask, reorder, batched.

The three augmentations of CL4SRec, applied to a whole padded batch at once
(no Python loop per sequence):

* :func:`item_crop`: keep a random contiguous sub-sequence of
  ``L_c = floor(eta * n)`` items (at least one item is always kept);
* :func:`item_mask`: replace ``L_m = floor(gamma * n)`` randomly chosen
  items by ``mask_token``;
* :func:`item_reorder`: shuffle a random contiguous window of
  ``L_r = floor(beta * n)`` items;
* :func:`random_augmentation`: draws one of the three, independently for every
  sequence of the batch (CL4SRec draws both views this way).

Layout (RecBole's): ``seq`` is a ``LongTensor [B, L]`` whose items sit in
positions ``0 .. lengths[b]-1`` with the padding id ``0`` after them;
``lengths`` is a ``LongTensor [B]``.  Every function returns a new
``(seq, lengths)`` pair in the same layout and never writes padding inside a
sequence nor items after its end; the inputs are not modified.  Randomness comes
from ``generator`` (a ``torch.Generator`` on ``seq``'s device) when given, else
from torch's global generator.  Rates outside their range raise ``ValueError``.

Example::

    from recbole_llm.augmentation import random_augmentation
    view, view_len = random_augmentation(item_seq, item_seq_len, eta=0.6, gamma=0.3,
                                         beta=0.6, mask_token=n_items, generator=g)
"""
import operator

import torch

from recbole_llm.validation import number

PADDING_ID = 0


def check_rate(name, value, low=0.0, high=1.0):
    """Raise ``ValueError`` unless ``value`` is a number with ``low <= value <= high``; returns it as float."""
    return float(number(low=low, high=high).check(name, value))


def _check_batch(seq, lengths):
    if seq.dim() != 2:
        raise ValueError(f"seq must be a [batch, max_len] tensor, got shape {tuple(seq.shape)}")
    if lengths.shape != seq.shape[:1]:
        raise ValueError(f"lengths must have shape [{seq.shape[0]}], got {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > seq.shape[1]):
        raise ValueError(f"lengths must lie in [0, {seq.shape[1]}] (the padded length), got "
                         f"min {int(lengths.min())}, max {int(lengths.max())}")


def _uniform(shape, seq, generator):
    return torch.rand(shape, generator=generator, device=seq.device)


def _random_start(lengths, window, seq, generator):
    """Uniform start index in ``[0, lengths - window]`` for each row."""
    slots = (lengths - window + 1).clamp_min(1)
    return (_uniform(lengths.shape, seq, generator) * slots).long().clamp_max(slots - 1)


def _positions(seq):
    return torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)


def item_crop(seq, lengths, eta, generator=None):
    """Item crop: a random contiguous run of ``max(1, floor(eta * n))`` items, moved to the front."""
    eta = check_rate("eta (crop)", eta)
    _check_batch(seq, lengths)
    crop_len = torch.floor(lengths.double() * eta).long()
    crop_len = torch.maximum(crop_len, lengths.clamp_max(1))  # never crop a sequence to nothing
    start = _random_start(lengths, crop_len, seq, generator)
    pos = _positions(seq)
    source = (start.unsqueeze(1) + pos).clamp_max(seq.shape[1] - 1)
    cropped = seq.gather(1, source)
    cropped = cropped.masked_fill(pos >= crop_len.unsqueeze(1), PADDING_ID)
    return cropped, crop_len


def item_mask(seq, lengths, gamma, mask_token, generator=None):
    """Item mask: ``floor(gamma * n)`` distinct random positions of each sequence become ``mask_token``."""
    gamma = check_rate("gamma (mask)", gamma)
    _check_batch(seq, lengths)
    try:
        mask_token = operator.index(mask_token)
    except TypeError:
        mask_token = None
    if mask_token is None or mask_token == PADDING_ID:
        raise ValueError(f"mask_token must be an int item id other than the padding id "
                         f"{PADDING_ID}")
    n_mask = torch.floor(lengths.double() * gamma).long()
    pos = _positions(seq)
    scores = _uniform(seq.shape, seq, generator).masked_fill(pos >= lengths.unsqueeze(1), 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # random rank of each real item, padding last
    return seq.masked_fill(rank < n_mask.unsqueeze(1), mask_token), lengths.clone()


def item_reorder(seq, lengths, beta, generator=None):
    """Item reorder: shuffle a random contiguous window of ``floor(beta * n)`` items."""
    beta = check_rate("beta (reorder)", beta)
    _check_batch(seq, lengths)
    window = torch.floor(lengths.double() * beta).long()
    start = _random_start(lengths, window, seq, generator).unsqueeze(1)
    pos = _positions(seq)
    inside = (pos >= start) & (pos < start + window.unsqueeze(1))
    # Positions outside keep their integer key; those inside get keys in [start, start + 1),
    # which sort among themselves in random order and stay between their neighbours.
    keys = torch.where(inside, start + _uniform(seq.shape, seq, generator), pos.double())
    return seq.gather(1, keys.argsort(dim=1, stable=True)), lengths.clone()


def random_augmentation(seq, lengths, eta, gamma, beta, mask_token, generator=None):
    """One of crop / mask / reorder, drawn uniformly and independently for each sequence."""
    views = [item_crop(seq, lengths, eta, generator),
             item_mask(seq, lengths, gamma, mask_token, generator),
             item_reorder(seq, lengths, beta, generator)]
    choice = (_uniform(lengths.shape, seq, generator) * 3).long().clamp_max(2)
    out_seq, out_len = views[2]
    for k in (1, 0):
        pick = choice == k
        out_seq = torch.where(pick.unsqueeze(1), views[k][0], out_seq)
        out_len = torch.where(pick, views[k][1], out_len)
    return out_seq, out_len
