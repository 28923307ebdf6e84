"""Item indexing for POD: item IDs written as text and split into sub-word tokens.

L3Rec §4.2 trains each local LLM on prompts x that encode a user's history and
targets y that name the next item; with POD/P5 (L3Rec §5.1.3) an item is named
by an ID string such as ``"item_123"`` that T5's SentencePiece tokenizer splits
into pieces (``▁item`` ``_`` ``12`` ``3``), so related IDs share tokens.

Two ways to number items (config ``item_indexing``):

* ``sequential`` -- P5's sequential indexing: items are numbered 1, 2, ... in
  the order they first appear when the training sequences are read user by
  user, so items consumed together get nearby numbers and shared prefixes.
* ``collaborative`` -- CF-based collaborative indexing (after Hua et al., "How
  to Index Item IDs for Recommendation Foundation Models", 2023): items are
  embedded by a truncated SVD of the (degree-normalised) user-item matrix,
  i.e. a spectral embedding of the co-occurrence graph, and split recursively
  by k-means into at most ``collaborative_clusters`` groups until a group holds
  that many items or fewer; the ID is the path of group numbers,
  ``"item_3_12_5"``.  IDs stay plain text, so T5's vocabulary is unchanged.

Both give every item a distinct string; :class:`ItemTokens` tokenizes them and
refuses the tokenizer if two items get the same token sequence (a collision)
or an ID contains unknown tokens.
"""
import warnings

import numpy as np
import torch
from torch import nn

ITEM_PREFIX = "item_"


def training_interactions(dataset, item_field, user_field):
    """(users, items) of the training data in reading order: user by user, oldest first.

    Works on RecBole's augmented sequential datasets (each row: history list +
    target) and on plain interaction tables.
    """
    inter = dataset.inter_feat
    seq_field = item_field + dataset.config["LIST_SUFFIX"]
    users = inter[user_field].numpy()
    if seq_field in inter:
        seq = inter[seq_field].numpy()
        lengths = inter[dataset.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
        rows = np.zeros((len(seq), seq.shape[1] + 1), dtype=np.int64)
        rows[:, :-1] = seq
        rows[np.arange(len(seq)), lengths] = inter[item_field].numpy()  # target after its history
        keep = rows > 0
        return np.repeat(users, keep.sum(1)), rows[keep]
    return users, inter[item_field].numpy()


def sequential_indexing(items_in_reading_order, n_items):
    """P5 sequential indexing: ``number[item]`` by first appearance (1-based); unseen items last."""
    items = np.asarray(items_in_reading_order, dtype=np.int64)
    _, first = np.unique(items, return_index=True)
    ordered = items[np.sort(first)]
    ordered = ordered[ordered > 0]
    unseen = np.setdiff1d(np.arange(1, n_items), ordered)
    number = np.zeros(n_items, dtype=np.int64)
    number[np.concatenate([ordered, unseen])] = np.arange(1, n_items)
    return [None] + [f"{ITEM_PREFIX}{n}" for n in number[1:]]


def spectral_item_embedding(users, items, n_users, n_items, dim, seed=0):
    """Items embedded by a truncated SVD of D_u^-1/2 R D_i^-1/2 (spectral co-occurrence embedding)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    pairs = np.unique(np.stack([users, items], 1), axis=0)
    r = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items))
    du = np.asarray(r.sum(1)).ravel()
    di = np.asarray(r.sum(0)).ravel()
    norm = sp.diags(1 / np.sqrt(np.maximum(du, 1))) @ r @ sp.diags(1 / np.sqrt(np.maximum(di, 1)))
    k = max(1, min(dim, min(norm.shape) - 1))
    _, s, vt = svds(norm, k=k, random_state=seed)
    return (vt.T * s).astype(np.float64)


def collaborative_indexing(users, items, n_users, n_items, n_clusters=16, dim=32, seed=0):
    """Collaborative (CF-based) IDs: recursive k-means paths over the spectral embedding."""
    from scipy.cluster.vq import kmeans2

    if n_clusters < 2:
        raise ValueError(f"collaborative_clusters must be >= 2, got {n_clusters}")
    emb = spectral_item_embedding(users, items, n_users, n_items, dim, seed)
    rng = np.random.default_rng(seed)
    names = [None] * n_items
    todo = [(np.arange(1, n_items), [])]
    while todo:
        group, path = todo.pop()
        if len(group) <= n_clusters:
            for leaf, item in enumerate(group):
                names[item] = ITEM_PREFIX + "_".join(str(p) for p in path + [leaf])
            continue
        points = emb[group]
        if np.ptp(points, axis=0).max() > 0:
            with warnings.catch_warnings():  # an empty cluster is fine: it gets no number
                warnings.simplefilter("ignore", UserWarning)
                _, labels = kmeans2(points, n_clusters, minit="++", seed=rng, iter=10)
        else:
            labels = np.zeros(len(group), dtype=np.int64)
        if np.bincount(labels).max() == len(group):  # no split (e.g. items never seen): chunk evenly
            labels = np.arange(len(group)) * n_clusters // len(group)
        for c in np.unique(labels):
            todo.append((group[labels == c], path + [int(c)]))
    return names


class ItemTokens(nn.Module):
    """Token table of the item IDs: ``table[item, :length[item]]`` are its pieces (no EOS).

    Raises ``ValueError`` on a collision (two items, one token sequence) or on
    an ID that the tokenizer maps to its unknown token.
    """

    def __init__(self, id_strings, tokenizer):
        super().__init__()
        self.id_strings = list(id_strings)
        pieces = tokenizer(self.id_strings[1:], add_special_tokens=False)["input_ids"]
        unk = tokenizer.unk_token_id
        bad = [s for s, p in zip(self.id_strings[1:], pieces) if unk is not None and unk in p or not p]
        if bad:
            raise ValueError(f"POD: the tokenizer cannot spell item IDs such as {bad[0]!r} "
                             "(unknown tokens); use a T5 tokenizer that covers digits and '_'.")
        owner = {}
        for item, p in enumerate(pieces, start=1):
            other = owner.setdefault(tuple(p), item)
            if other != item:
                raise ValueError(f"POD: item ID collision: items {other} and {item} both tokenize "
                                 f"to {p} ({self.id_strings[other]!r}, {self.id_strings[item]!r}).")
        width = max(len(p) for p in pieces)
        table = torch.full((len(self.id_strings), width), tokenizer.pad_token_id, dtype=torch.long)
        length = torch.zeros(len(self.id_strings), dtype=torch.long)
        for item, p in enumerate(pieces, start=1):
            table[item, :len(p)] = torch.tensor(p)
            length[item] = len(p)
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("length", length, persistent=False)
        self.eos_token_id = tokenizer.eos_token_id

    def sequences(self):
        """Target token sequence (pieces + EOS) of every real item, as lists."""
        return [self.table[i, :n].tolist() + [self.eos_token_id]
                for i, n in enumerate(self.length.tolist()) if i > 0]

    def target_labels(self, items, ignore_index=-100):
        """Labels ``[B, width + 1]``: each item's pieces, EOS, then ``ignore_index``."""
        width = self.table.shape[1] + 1
        labels = torch.full((len(items), width), ignore_index, dtype=torch.long, device=items.device)
        labels[:, :-1] = self.table[items]
        n = self.length[items]
        pos = torch.arange(width, device=items.device)
        labels = labels.masked_fill(pos >= n.unsqueeze(1), ignore_index)
        return labels.scatter(1, n.unsqueeze(1), self.eos_token_id)
