"""``llm`` views of LUMOS §4.2: a local causal LM prompted with the user's item titles.

For every client the LM is asked, with the templates of ``lumos_prompts.yaml``
(editable; config ``lumos_prompt_file``), for a continuation (future view), an
intent-preserving rewrite (paraphrase) and a preference-inconsistent list
(counterfactual).  Generation is batched over the cohort's prompts with a
``max_new_tokens`` budget.  The generated text is split into titles and each is
mapped to the catalogue item with the nearest title embedding (text encoder +
FAISS inner-product index); titles below ``min_similarity``, duplicates, and (for
the future view) items the user already has are dropped.  A view left empty
falls back to the ``semantic`` view of the same user, and is counted in
``fallbacks``.  With a :class:`~recbole_llm.model.lumos.views.cache.ViewCache`, users
whose views were generated before (same settings, same sequence) are read back and
only the others are prompted; the LM is loaded only when some user must be prompted.
"""
import os
import re
from logging import getLogger

import numpy as np
import yaml

from recbole_llm.config import PROPERTIES_DIR
from recbole_llm.model.lumos.views.base import TriView
from recbole_llm.model.lumos.views.semantic import SemanticViewGenerator

VIEW_KEYS = ("future", "paraphrase", "counterfactual")
SPLIT = re.compile(r"[\n;,|]+")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def default_prompt_file():
    return os.path.join(PROPERTIES_DIR, "lumos_prompts.yaml")


def load_prompts(path=None):
    path = path or default_prompt_file()
    with open(path, encoding="utf-8") as f:
        prompts = yaml.safe_load(f) or {}
    missing = [k for k in VIEW_KEYS if not isinstance(prompts.get(k), str)]
    if missing:
        raise ValueError(f"prompt file {path} lacks templates for {missing}")
    return {k: prompts[k] for k in VIEW_KEYS}


def split_titles(text):
    """Candidate titles in a generated text (list items, lines, comma-separated)."""
    out = []
    for chunk in SPLIT.split(text):
        chunk = BULLET.sub("", chunk).strip().strip('"').strip()
        if len(chunk) >= 2 and any(ch.isalnum() for ch in chunk):
            out.append(chunk)
    return out


class LLMViewGenerator(SemanticViewGenerator):
    name = "llm"

    def __init__(self, item_embeddings, max_len, text_generator, title_index, titles, prompts,
                 seed=2020, history_length=10, min_similarity=0.3, cache=None, **semantic_kwargs):
        super().__init__(item_embeddings, max_len, seed, **semantic_kwargs)
        self._text_generator, self.title_index = text_generator, title_index
        self.titles, self.prompts = titles, prompts
        self.history_length, self.min_similarity = int(history_length), float(min_similarity)
        self.fallbacks = {k: 0 for k in VIEW_KEYS}
        self.titles_generated = self.titles_mapped = 0  # generated titles, and those mapped to an item
        self.cache = cache

    @property
    def text_generator(self):
        """The LM (built on first use when given as a factory: fully cached users never load it)."""
        if callable(self._text_generator) and not hasattr(self._text_generator, "generate"):
            self._text_generator = self._text_generator()
        return self._text_generator

    @property
    def mapped_fraction(self):
        """Fraction of the generated titles that were mapped to a catalogue item."""
        return self.titles_mapped / self.titles_generated if self.titles_generated else 0.0

    def prompt(self, key, seq):
        history = "\n".join(self.titles[v] for v in seq[-self.history_length:])
        n = self.future_length if key == "future" else min(len(seq), self.history_length)
        return self.prompts[key].format(history=history, n=n)

    def map_to_items(self, text, exclude):
        titles = split_titles(text)
        ids, sims = self.title_index.lookup(titles)
        self.titles_generated += len(titles)
        self.titles_mapped += int((sims >= self.min_similarity).sum()) if len(titles) else 0
        out, seen = [], set(exclude)
        for item, sim in zip(ids.tolist(), sims.tolist()):
            if item > 0 and sim >= self.min_similarity and item not in seen:
                out.append(item)
                seen.add(item)
        return out[:self.max_len]

    def generate(self, sequences, user_ids):
        if self.cache is None:
            return self.generate_views(sequences, user_ids)
        out = [self.cache.lookup(u, s) for s, u in zip(sequences, user_ids)]
        todo = [i for i, view in enumerate(out) if view is None]
        if todo:
            fresh = self.generate_views([sequences[i] for i in todo], [user_ids[i] for i in todo])
            for i, view in zip(todo, fresh):
                out[i] = view
                self.cache.store(user_ids[i], sequences[i], view)
            self.cache.save()
        return out

    def generate_views(self, sequences, user_ids):
        """Prompt the LLM for the tri-views of ``sequences`` (no cache)."""
        prompts = [self.prompt(k, seq) for seq in sequences for k in VIEW_KEYS]
        texts = self.text_generator.generate(prompts)
        out = []
        for i, (seq, uid) in enumerate(zip(sequences, user_ids)):
            future, paraphrase, counter = texts[3 * i:3 * i + 3]
            fallback = super().generate([seq], [uid])[0]
            f_items = self.map_to_items(future, exclude=seq)[:self.future_length]
            p_items = self.map_to_items(paraphrase, exclude=())
            n_items = self.map_to_items(counter, exclude=seq)
            views = {}
            for key, items, default in (("future", f_items, fallback.future),
                                        ("paraphrase", p_items, fallback.paraphrase),
                                        ("counterfactual", n_items, fallback.counterfactual)):
                if not items:
                    self.fallbacks[key] += 1
                    items = default
                elif key == "future":
                    items = list(seq[-max(self.max_len - len(items), 1):]) + items
                views[key] = items
            out.append(TriView(views["future"], views["paraphrase"], views["counterfactual"]))
        getLogger().info(f"LLM views for {len(sequences)} clients: {self.mapped_fraction:.1%} of "
                         f"{self.titles_generated} generated titles mapped to items so far; "
                         f"fallbacks to semantic views {self.fallbacks}")
        return out
