"""Exclude each user's history from full-sort ranking, for sequential models.

The protocol of LUMOS §5.1 ranks, for each test user, "all candidate items not
previously interacted with": the items the user consumed before the target are
taken out of the ranking.  RecBole already evaluates its *general* models that
way (their ``FullSortEvalDataLoader`` returns a ``history_index`` of the user's
training items and ``Trainer._full_sort_batch_eval`` sets those scores to
``-inf``), but for *sequential* models the same loader returns
``history_index=None``, so items the user already interacted with are ranked with
the rest.

:func:`exclude_history` (applied by :func:`recbole_llm.quick_start.prepare` when
``eval_exclude_history: True``) gives the valid and test loaders of a sequential
model a ``history_index`` in RecBole's format, so that RecBole's own trainer,
evaluator and every loop that honours ``history_index`` rank only unseen items:

* a valid row masks every item of the user before its target: the targets and the
  input sequences (``ITEM_ID_LIST``) of the user's training rows (the user's first
  item is never a target), plus the targets of the user's earlier valid rows and
  the row's own input sequence (these only matter for splits with several valid
  rows per user, or users without training rows);
* a test row masks the same from the training *and* validation rows.

The row's own target is never masked, even when it is in the history: a repeat
consumption stays rankable (RecBole's general loaders do the same: their history
excludes the evaluated positives).

The per-user history is built once with numpy when the switch is applied; each
batch then gathers its rows' history with a few vectorised operations.
"""
import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

_CHUNK = 1 << 16  # rows of ITEM_ID_LIST turned into (user, item) keys at a time


def _columns(config, dataset):
    """(uid, target, item_list, list_length) of ``dataset``'s rows as numpy arrays."""
    feat = dataset.inter_feat
    return (feat[dataset.uid_field].numpy().astype(np.int64),
            feat[dataset.iid_field].numpy().astype(np.int64),
            feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].numpy(),
            feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy().astype(np.int64))


def _list_items(lists, lengths):
    """(row, item) of the first ``lengths[r]`` items of each row of ``lists``."""
    rows, cols = np.nonzero(np.arange(lists.shape[1]) < lengths[:, None])
    return rows, lists[rows, cols].astype(np.int64)


def _gather(flat, starts, lengths):
    """(row, value) of ``flat[starts[r]:starts[r] + lengths[r]]`` for every row r."""
    rows = np.repeat(np.arange(len(starts)), lengths)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return rows, flat[offsets + np.arange(len(rows))]


def _user_history(config, datasets, user_num, item_num):
    """CSR (ptr, items) of each user's items in ``datasets``: targets and input sequences."""
    keys = []
    for dataset in datasets:
        uid, target, lists, lengths = _columns(config, dataset)
        keys.append(np.unique(uid * item_num + target))
        for s in range(0, len(uid), _CHUNK):
            rows, items = _list_items(lists[s:s + _CHUNK], lengths[s:s + _CHUNK])
            keys.append(np.unique(uid[s:s + _CHUNK][rows] * item_num + items))
    keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    ptr = np.searchsorted(keys // item_num, np.arange(user_num + 1))
    return ptr, keys % item_num


class HistoryCollate:
    """``collate_fn`` for a sequential model's ``FullSortEvalDataLoader`` that adds a ``history_index``.

    Wraps the loader's own ``collate_fn`` (RecBole's), which returns
    ``(interaction, None, positive_u, positive_i)``, and replaces the ``None`` with
    ``(rows, items)``: LongTensors of batch rows and item ids to score ``-inf``.
    """

    def __init__(self, collate, config, dataset, earlier_datasets):
        self.collate = collate
        self.item_num = dataset.item_num
        self.ptr, self.items = _user_history(config, earlier_datasets, dataset.user_num, self.item_num)
        self.uid, self.target, self.lists, self.lengths = _columns(config, dataset)
        # this phase's rows of a user, in dataset (= time) order: row r's earlier
        # rows are sorted positions group_start[r] .. rank[r] - 1
        order = np.argsort(self.uid, kind="stable")
        self.sorted_target = self.target[order]
        self.rank = np.empty_like(order)
        self.rank[order] = np.arange(len(order))
        sorted_uid = self.uid[order]
        self.group_start = np.searchsorted(sorted_uid, sorted_uid)[self.rank]
        self.first_row = order[self.group_start]  # the user's first row of this phase

    def history(self, index):
        """(rows, items) to mask for the dataset rows ``index`` (rows are positions in ``index``)."""
        index = np.asarray(index, dtype=np.int64)
        uid = self.uid[index]
        pairs = [
            _gather(self.items, self.ptr[uid], self.ptr[uid + 1] - self.ptr[uid]),
            _gather(self.sorted_target, self.group_start[index], self.rank[index] - self.group_start[index]),
            _list_items(self.lists[index], self.lengths[index]),
            _list_items(self.lists[self.first_row[index]], self.lengths[self.first_row[index]]),
        ]
        rows = np.concatenate([r for r, _ in pairs])
        items = np.concatenate([i for _, i in pairs])
        keep = items != self.target[index][rows]  # never mask the row's own positive
        keys = np.unique(rows[keep] * self.item_num + items[keep])
        return torch.from_numpy(keys // self.item_num), torch.from_numpy(keys % self.item_num)

    def __call__(self, index):
        interaction, _, positive_u, positive_i = self.collate(index)
        return interaction, self.history(index), positive_u, positive_i


def exclude_history(config, train_data, valid_data, test_data):
    """Make the full-sort valid and test loaders of a sequential model mask each user's history.

    Valid rows mask the user's training items, test rows the user's training and
    validation items (see the module docstring); the row's own positive item is
    never masked.  Loaders of non-sequential models are left unchanged (RecBole's
    general loaders already mask the training history).  Raises ValueError for a
    sequential model evaluated on sampled candidates (``eval_args.mode`` not
    ``full``).  Applying it twice is the same as once.  Returns the three loaders.
    """
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return train_data, valid_data, test_data
    mode = config["eval_args"]["mode"]
    if any(m != "full" for m in mode.values()):
        raise ValueError(
            f"eval_exclude_history: True needs full-sort evaluation (eval_args.mode: full) for "
            f"sequential models, got eval_args.mode = {mode}; set eval_args.mode to full or "
            "eval_exclude_history to False")
    earlier = [train_data._dataset]
    for loader in (valid_data, test_data):
        if not isinstance(loader, FullSortEvalDataLoader):  # e.g. a subclass of another kind
            raise ValueError(f"eval_exclude_history: expected a FullSortEvalDataLoader, got "
                             f"{type(loader).__name__}")
        collate = loader.collate_fn
        if isinstance(collate, HistoryCollate):
            collate = collate.collate
        # torch's DataLoader reads self.collate_fn whenever an iterator is created
        loader.collate_fn = HistoryCollate(collate, config, loader._dataset, earlier)
        earlier = earlier + [loader._dataset]
    return train_data, valid_data, test_data
