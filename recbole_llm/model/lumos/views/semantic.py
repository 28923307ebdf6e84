"""``semantic`` views (offline default of LUMOS §4.2): MiniLM item-title neighbourhoods.

Stands in for the on-device LLM with the shipped MiniLM text encoder and only
public catalogue text plus the client's own sequence:

* future S_F: S_u followed by ``future_length`` unseen items nearest the user's
  recent interest (mean embedding of the last ``recent_window`` items);
* paraphrase S_P: each item swapped, with probability ``swap_prob``, for one of its
  close semantic neighbours, then mild reordering (adjacent swaps with
  probability ``reorder_prob``);
* counterfactual S_N: items drawn from those least similar to the user's profile
  (mean embedding of all of S_u), as long as S_u (capped at ``max_len``).
"""
import numpy as np

from recbole_llm.model.lumos.views.base import TriView, ViewGenerator


class SemanticViewGenerator(ViewGenerator):
    name = "semantic"

    def __init__(self, item_embeddings, max_len, seed=2020, future_length=5, recent_window=5,
                 swap_prob=0.3, reorder_prob=0.1, neighbours=5, far_pool=0.1):
        super().__init__(item_embeddings.shape[0], max_len, seed)
        emb = np.asarray(item_embeddings, dtype=np.float32).copy()
        emb[0] = 0.0  # padding item
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self.emb = emb / np.maximum(norms, 1e-12)
        self.valid = norms[:, 0] > 0  # items with text (never the padding item)
        self.future_length, self.recent_window = int(future_length), int(recent_window)
        self.swap_prob, self.reorder_prob = float(swap_prob), float(reorder_prob)
        self.neighbours, self.far_pool = int(neighbours), float(far_pool)
        self._nn = None

    def nearest_neighbours(self):
        """``[n_items, neighbours]`` most similar other items (cached)."""
        if self._nn is None:
            sims = self.emb @ self.emb.T
            sims[:, ~self.valid] = -np.inf
            np.fill_diagonal(sims, -np.inf)
            k = min(self.neighbours, int(self.valid.sum()) - 1)
            self._nn = np.argsort(-sims, axis=1)[:, :max(k, 1)]
        return self._nn

    def _scores(self, query, seen):
        scores = self.emb @ query
        scores[~self.valid] = np.nan
        scores[list(seen)] = np.nan
        return scores

    def future(self, seq, rng):
        query = self.emb[seq[-self.recent_window:]].mean(0)
        scores = self._scores(query, set(seq))
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf))
        k = min(self.future_length, int(np.isfinite(scores).sum())) or 1
        tail = max(self.max_len - k, 1)
        return list(seq[-tail:]) + order[:k].tolist()

    def paraphrase(self, seq, rng):
        nn = self.nearest_neighbours()
        out = [int(nn[v, rng.integers(nn.shape[1])]) if rng.random() < self.swap_prob else v
               for v in seq[-self.max_len:]]
        for i in range(len(out) - 1):
            if rng.random() < self.reorder_prob:
                out[i], out[i + 1] = out[i + 1], out[i]
        return out

    def counterfactual(self, seq, rng):
        scores = self._scores(self.emb[seq].mean(0), set(seq))
        finite = np.flatnonzero(np.isfinite(scores))
        pool_size = max(min(len(seq), self.max_len), int(self.far_pool * len(finite)))
        pool = finite[np.argsort(scores[finite])[:pool_size]]
        k = min(len(seq), self.max_len, len(pool))
        return rng.choice(pool, size=k, replace=False).tolist()

    def generate(self, sequences, user_ids):
        out = []
        for seq, uid in zip(sequences, user_ids):
            rng = self.rng(uid)
            out.append(TriView(self.future(seq, rng), self.paraphrase(seq, rng), self.counterfactual(seq, rng)))
        return out
