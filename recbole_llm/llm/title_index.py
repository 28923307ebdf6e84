"""Map free text to catalogue items by title: text encoder + FAISS inner-product index.

Used wherever generated text must become item ids (LUMOS's ``llm`` views, §4.2):
each generated title is mapped to the item whose title embedding is nearest.
"""
import numpy as np

from recbole_llm.knn import build_index


class TitleIndex:
    """Nearest catalogue title of a free-text title: text encoder + FAISS ``IndexFlatIP``."""

    def __init__(self, encoder, titles):
        self.encoder = encoder
        emb = encoder.encode(list(titles))  # unit rows
        emb[0] = 0.0  # never map to the padding item
        self.index = build_index(np.ascontiguousarray(emb, dtype=np.float32))

    def lookup(self, texts):
        """``(item ids, similarities)`` of the nearest title to each text."""
        if not texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        sims, ids = self.index.search(self.encoder.encode(texts), 1)
        return ids[:, 0], sims[:, 0]
