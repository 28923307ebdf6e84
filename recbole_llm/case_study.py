"""Top-K items for given users: RecBole's ``case_study``, with the two things it cannot see.

``recbole.utils.case_study.full_sort_topk(uid_series, model, test_data, k)`` works
for every model of this package (``tests/test_topk.py`` checks it against each
model's own full-sort scores).  These drop-in replacements, same signatures,
add:

* ranked-list depth: POD with beam search scores only its ``beam_size`` best
  items (every other item -inf), and L3Rec / L3RecTopN fuse local lists of
  ``fusion_list_length`` items (items no list holds all score 0); asking for more
  items than that would return ties in arbitrary order, so it is refused with a
  message that says what to change;
* ``eval_exclude_history: True``: the test loader of a sequential model then masks
  each user's earlier items (:mod:`recbole_llm.history_exclusion`), which RecBole's
  ``full_sort_scores`` ignores for sequential models; here they are masked too,
  so the top-K is the list the evaluator ranked;
* users without a test row: RecBole scores a sequential model's users from their
  rows of the test set (one row per test interaction, the history before it) and
  silently returns no row for a user who has none, which shifts every later user's
  list; here that is refused, naming the users.
"""
import numpy as np
import torch
from recbole.utils import case_study as _recbole

from recbole_llm.history_exclusion import HistoryCollate
from recbole_llm.model.l3rec.l3rec import L3RecBase
from recbole_llm.model.pod import POD


def ranked_depth(model):
    """How many items ``model`` ranks per user (``None``: all of them)."""
    if isinstance(model, POD) and model.inference == "beam":
        return model.beam_size, ("POD decodes item ids with a beam search and ranks only its beam "
                                 f"(beam_size={model.beam_size}); set model.beam_size = k on the loaded "
                                 "model (or pod_inference: exact, which scores every item)")
    if isinstance(model, L3RecBase):
        return model.list_length, ("L3Rec fuses local top-N lists of fusion_list_length="
                                   f"{model.list_length} items; set model.list_length = k on the loaded "
                                   "model (config key fusion_list_length)")
    return None, ""


def full_sort_scores(uid_series, model, test_data, device=None):
    """RecBole's ``full_sort_scores``, plus the history mask of ``eval_exclude_history``.

    Raises ValueError for users without a test row (sequential models only).
    """
    if test_data.is_sequential:
        # the rows RecBole scores: the uid_series users' rows of the test set, user by user
        uid = test_data.dataset.inter_feat[test_data.dataset.uid_field]
        user, index = (uid == torch.as_tensor(uid_series)[:, None]).nonzero(as_tuple=True)
        missing = sorted(set(range(len(uid_series))) - set(user.tolist()))
        if missing:
            ids = [int(uid_series[m]) for m in missing]
            raise ValueError(f"full_sort_scores: user id(s) {ids} have no row in the test set, so a sequential "
                             "model has no history to score them from (internal ids: map tokens with "
                             "dataset.token2id(dataset.uid_field, tokens)).")
    scores = _recbole.full_sort_scores(uid_series, model, test_data, device)
    collate = getattr(test_data, "collate_fn", None)
    if test_data.is_sequential and isinstance(collate, HistoryCollate):
        rows, items = collate.history(index.numpy())
        scores[rows.to(scores.device), items.to(scores.device)] = -np.inf
    return scores


def full_sort_topk(uid_series, model, test_data, k, device=None):
    """RecBole's ``full_sort_topk``: ``(topk_scores, topk_item_ids)``, one row per test row of the users.

    Raises ValueError when ``k`` exceeds the number of items ``model`` ranks (see
    :func:`ranked_depth`).
    """
    depth, what_to_do = ranked_depth(model)
    if depth is not None and k > depth:
        raise ValueError(f"full_sort_topk: k={k} > {depth}, the items {type(model).__name__} ranks per user: "
                         f"{what_to_do}.")
    return torch.topk(full_sort_scores(uid_series, model, test_data, device), k)


__all__ = ["full_sort_scores", "full_sort_topk", "ranked_depth"]
