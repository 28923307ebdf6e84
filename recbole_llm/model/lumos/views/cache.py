"""On-disk cache of generated LUMOS views (§4.2): an LLM writes a user's views once.

Generating three views for every ml-100k user with SmolLM2-135M takes minutes on a
CPU; a run that asks again for a user's views with the same generator settings and
the same sequence reads them back.  One file per generator setting under
``$RECBOLE_LLM_CACHE/views`` (``lumos_view_cache``), holding
``{user id: (sequence, future, paraphrase, counterfactual)}``; an entry whose
sequence differs from the user's current one is regenerated.  The cache lives on
the client's own machine, as the views do.
"""
import hashlib
import json
import os
from logging import getLogger

import torch

from recbole_llm.model.lumos.views.base import TriView


class ViewCache:
    """``lookup(user, sequence) -> TriView | None``, ``store(...)``, ``save()``."""

    def __init__(self, directory, settings):
        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:24]
        self.path = os.path.join(os.path.expanduser(directory), f"{key}.pt")
        self.entries = torch.load(self.path, weights_only=True) if os.path.isfile(self.path) else {}
        self.dirty = False
        if self.entries:
            getLogger().info(f"LUMOS views: {len(self.entries)} users cached in {self.path}")

    def lookup(self, user_id, sequence):
        entry = self.entries.get(int(user_id))
        if entry is None or entry[0] != list(sequence):
            return None
        return TriView(*entry[1:])

    def store(self, user_id, sequence, view):
        self.entries[int(user_id)] = (list(sequence), list(view.future), list(view.paraphrase),
                                      list(view.counterfactual))
        self.dirty = True

    def save(self):
        if not self.dirty:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        torch.save(self.entries, tmp)
        os.replace(tmp, self.path)
        self.dirty = False
        getLogger().info(f"LUMOS views of {len(self.entries)} users cached in {self.path}")
