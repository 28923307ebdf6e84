"""The view-generator interface of LUMOS §4.2: S_u -> (S_F, S_P, S_N), on the client.

A generator maps a client's own training sequence to three item-id sequences:
a predictive *future* view, an intent-preserving *paraphrase* and a
*counterfactual* negative.  Views are kept in the client's
:class:`~recbole_llm.federated.client_data.ClientData` (computed once, or again
every round for a ``redraw`` generator) and never sent to the server.  (In simulation several clients' sequences are passed in one
call only to batch the work; each view depends on its own sequence alone.)
"""
from dataclasses import dataclass
from typing import List

import numpy as np

from recbole_llm.federated.client_data import left_align


@dataclass(frozen=True)
class TriView:
    """The three generated views of one user, as lists of internal item ids (no padding)."""

    future: List[int]
    paraphrase: List[int]
    counterfactual: List[int]


class ViewGenerator:
    """Base class: ``generate(sequences, user_ids) -> list[TriView]``.

    ``redraw = False``: a client's views are made once and cached; a generator with
    ``redraw = True`` makes them again every time the client trains, and may use
    ``round`` (set by the trainer before each round) to seed its draw.
    """

    name = "base"
    redraw = False
    round = 0

    def __init__(self, n_items, max_len, seed=2020):
        self.n_items, self.max_len, self.seed = int(n_items), int(max_len), int(seed)

    def rng(self, user_id):
        """A per-user random stream: a user's views do not depend on who else is generated."""
        return np.random.default_rng([self.seed, int(user_id)])

    def generate(self, sequences, user_ids):
        raise NotImplementedError


def prepare_views(clients, generator, max_len, round_index=0):
    """Fill the view cache of every client in ``clients`` that has none yet (of all, for a ``redraw`` generator)."""
    generator.round = int(round_index)
    todo = list(clients) if generator.redraw else [c for c in clients if c.views is None]
    if not todo:
        return
    triviews = generator.generate([c.sequence.tolist() for c in todo], [c.user_id for c in todo])
    for client, tv in zip(todo, triviews):
        seqs = [client.sequence.tolist(), tv.future, tv.paraphrase, tv.counterfactual]
        client.views, client.view_lengths = left_align(seqs, max_len)
