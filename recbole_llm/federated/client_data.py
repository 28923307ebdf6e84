"""Client data of federated sequential recommendation (LUMOS §3, §4.1).

Every user of a RecBole dataset is one client that holds only its own *training*
sequence: the items RecBole's leave-one-out split (``LS: valid_and_test``,
time order) leaves for training, i.e. the user's history without its valid and
test targets.  The global model is then scored by RecBole's full-ranking
evaluator on the usual valid/test loaders.

A client's training sequence is turned into *rows* of ``max_len`` item ids:

* causal pass (SASRec, GRU4Rec): windows of the sequence, each row predicting the
  next item at every position in one pass; windows are aligned to the end of the
  sequence so the most recent targets get the longest context and every target is
  predicted exactly once;
* prefix samples (any other backbone): RecBole's augmentation, one row per prefix
  (the last ``max_len`` items before each target), target at the row's last position.

Rows are left-aligned and right-padded with the padding id 0; ``targets`` holds
the item to predict after each position (0 where there is none).
"""
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch


@dataclass
class ClientData:
    """The private data of one client.  Only the client (and its engine) reads it."""

    user_id: int
    sequence: torch.Tensor  # LongTensor [T]: the full training sequence S_u
    inputs: torch.Tensor  # LongTensor [R, L]
    targets: torch.Tensor  # LongTensor [R, L]
    lengths: torch.Tensor  # LongTensor [R]
    views: Optional[torch.Tensor] = field(default=None)  # LongTensor [4, L]: S_u, S_F, S_P, S_N
    view_lengths: Optional[torch.Tensor] = field(default=None)  # LongTensor [4]

    @property
    def num_targets(self):
        return int((self.targets > 0).sum())

    @property
    def num_rows(self):
        return int(self.inputs.shape[0])

    def anchor(self, max_len):
        """The last ``max_len`` items of S_u, left-aligned: what h_u encodes."""
        return left_align([self.sequence[-max_len:].tolist()], max_len)


def left_align(sequences, max_len):
    """``(LongTensor [n, max_len], LongTensor [n])`` with each list at the front, 0-padded."""
    out = torch.zeros(len(sequences), max_len, dtype=torch.long)
    lengths = torch.zeros(len(sequences), dtype=torch.long)
    for i, seq in enumerate(sequences):
        seq = list(seq)[-max_len:]
        out[i, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        lengths[i] = len(seq)
    return out, lengths


def causal_windows(sequence, max_len):
    """Rows for a causal pass: windows of ``max_len`` inputs whose targets cover items 1..T-1 once."""
    seq = list(sequence)
    n_targets = len(seq) - 1
    inputs, targets, lengths = [], [], []
    end = n_targets  # targets seq[start+1 : end+1] for inputs seq[start : end]
    while end > 0:
        start = max(0, end - max_len)
        inputs.append(seq[start:end])
        targets.append(seq[start + 1:end + 1])
        lengths.append(end - start)
        end = start
    inputs.reverse(), targets.reverse(), lengths.reverse()
    x, _ = left_align(inputs, max_len)
    y, _ = left_align(targets, max_len)
    return x, y, torch.as_tensor(lengths, dtype=torch.long)


def prefix_samples(sequence, max_len):
    """RecBole's prefix samples: one row per target, the last ``max_len`` items before it."""
    seq = list(sequence)
    inputs = [seq[max(0, t - max_len):t] for t in range(1, len(seq))]
    x, lengths = left_align(inputs, max_len)
    y = torch.zeros_like(x)
    y[torch.arange(len(inputs)), lengths - 1] = torch.as_tensor(seq[1:], dtype=torch.long)
    return x, y, lengths


def make_client(user_id, sequence, max_len, causal=True):
    rows = causal_windows if causal else prefix_samples
    x, y, lengths = rows(sequence, max_len)
    return ClientData(int(user_id), torch.as_tensor(list(sequence), dtype=torch.long), x, y, lengths)


def training_sequences(train_dataset):
    """``{user id: training sequence}`` from RecBole's (augmented) training split.

    The split keeps each user's prefix samples in time order, so a user's training
    sequence is the first item of its first sample followed by every sample's target.
    """
    feat = train_dataset.inter_feat
    uid = feat[train_dataset.uid_field].numpy()
    target = feat[train_dataset.iid_field].numpy()
    first = feat[train_dataset.config["ITEM_ID_FIELD"] + train_dataset.config["LIST_SUFFIX"]][:, 0].numpy()
    order = np.argsort(uid, kind="stable")
    uid, target, first = uid[order], target[order], first[order]
    bounds = np.flatnonzero(np.diff(uid)) + 1
    out = {}
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(uid)]):
        if hi > lo:
            out[int(uid[lo])] = [int(first[lo])] + target[lo:hi].tolist()
    return out


def build_clients(train_dataset, max_len, causal=True):
    """One :class:`ClientData` per user that has at least one training target."""
    return [make_client(u, s, max_len, causal) for u, s in sorted(training_sequences(train_dataset).items())]
