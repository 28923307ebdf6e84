"""The data of L³Rec's global CF model (paper §4.1 "Local Community Discovery", eq. 7).

Two halves, one per owner:

* :func:`global_training_view` -- what the *model* builds its global model on
  (RecBole general models derive state from their dataset in the constructor:
  MultiVAE its users' history rows, LightGCN its graph).  It reads no file: it is
  the general (unordered) form of the training split the model is built on, i.e.
  every (user, item) interaction that split holds.  A general split (L3RecTopN)
  is that form already; a sequential split (L3Rec) holds each user's training
  items as next-item targets plus the first item(s) in the history list of the
  user's first row (RecBole's own general view of a sequential dataset, cf.
  ``SequentialDataset.inter_matrix``).  So a model rebuilt from a checkpoint by
  ``load_data_and_model`` gets the same global model as the one trained.
* :func:`prepare_global_data` -- what the *trainer* trains the global model on:
  RecBole's ``create_dataset`` + ``data_preparation`` on the global model's own
  config (same data, filtering and leave-one-out split as L³Rec), checked to use
  the same user and item ids as L³Rec, and to hold the same training
  interactions as the view (RecBole's general and sequential leave-one-out
  splits differ only for users with fewer than 4 interactions: then a warning).
"""
import warnings

import numpy as np
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.dataset import Dataset, SequentialDataset
from recbole.data.interaction import Interaction


def global_training_view(dataset):
    """The interactions of the training split ``dataset`` as a general RecBole ``Dataset``.

    Same fields, id maps and users/items as ``dataset``; no file is read.
    """
    if not isinstance(dataset, SequentialDataset):
        return dataset
    inter, uid = dataset.inter_feat, dataset.uid_field
    suffix = dataset.config["LIST_SUFFIX"]
    _, first = np.unique(inter[uid].numpy(), return_index=True)  # rows are in time order per user
    first = torch.from_numpy(first)
    lengths = inter[dataset.item_list_length_field][first]
    width = inter[dataset.iid_field + suffix].shape[1]
    earlier = torch.arange(width)[None, :] < lengths[:, None]  # the first rows' history lists
    columns = {uid: torch.cat([inter[uid][first][:, None].expand_as(earlier)[earlier], inter[uid]])}
    for field in inter.columns:
        if field != uid and field + suffix in inter.columns:
            columns[field] = torch.cat([inter[field + suffix][first][earlier], inter[field]])
    view = object.__new__(Dataset)  # a plain (general) Dataset sharing the fields and id maps
    view.__dict__.update(vars(dataset))
    view.inter_feat = Interaction(columns)
    return view


def _pairs(dataset, n_items):
    """The (user, item) interactions of ``dataset``, sorted, as ``user * n_items + item``."""
    inter = dataset.inter_feat
    return np.sort(inter[dataset.uid_field].numpy().astype(np.int64) * n_items
                   + inter[dataset.iid_field].numpy())


def check_same_ids(global_dataset, dataset):
    """The global model's user and item ids must be L³Rec's (same filtering for both)."""
    for field in (dataset.uid_field, dataset.iid_field):
        if list(global_dataset.field2id_token[field]) != list(dataset.field2id_token[field]):
            raise RuntimeError(f"L3Rec: the global model's {field} ids differ from the local "
                               "models'; use the same filtering for both")


def prepare_global_data(global_config, dataset):
    """``(train, valid, test)`` loaders of the global model, checked against L³Rec's training split
    ``dataset`` (the split the model and its global model were built on)."""
    global_dataset = create_dataset(global_config)
    check_same_ids(global_dataset, dataset)
    data = data_preparation(global_config, global_dataset)
    trained_on = _pairs(data[0]._dataset, dataset.item_num)
    built_on = _pairs(global_training_view(dataset), dataset.item_num)
    if not np.array_equal(trained_on, built_on):
        warnings.warn(
            f"L3Rec: the global model's training split has {len(trained_on)} interactions, L3Rec's "
            f"{len(built_on)} (RecBole's general and sequential leave-one-out splits differ for users "
            "with fewer than 4 interactions); the global model keeps L3Rec's training interactions "
            "as its input/graph and trains on its own split. Filter such users "
            "(user_inter_num_interval: '[4,inf)') to make both the same.", RuntimeWarning)
    return data
