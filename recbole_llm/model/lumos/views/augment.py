"""``augment`` views of the ConFedSRS baseline (LUMOS §5.1): CL4SRec-style augmentations.

Built on the shared :mod:`recbole_llm.augmentation` (crop / mask / reorder of
CL4SRec).  The two positives are two independently drawn augmentations of S_u;
a lone client has no other users' sequences to use as in-batch negatives, so the
negative is a sequence of uniformly random catalogue items of the same length.
The backbones' item tables have no extra mask row, so a masked item is left out
of the view (the view never contains the padding id).

CL4SRec draws new augmentations at every step, so this generator ``redraw`` s: a
client's views are drawn again each time it trains, from a stream seeded by
(seed, user, round) -- the same draw on every engine, whoever else trains that round.
"""
import torch

from recbole_llm.augmentation import check_rate, random_augmentation
from recbole_llm.federated.client_data import left_align
from recbole_llm.model.lumos.views.base import TriView, ViewGenerator


class AugmentViewGenerator(ViewGenerator):
    name = "augment"
    redraw = True  # new views every time a client trains (prepare_views)

    def __init__(self, n_items, max_len, seed=2020, eta=0.6, gamma=0.3, beta=0.6):
        super().__init__(n_items, max_len, seed)
        self.eta, self.gamma, self.beta = (check_rate("eta", eta), check_rate("gamma", gamma),
                                           check_rate("beta", beta))

    def _augment(self, seq, lengths, generator):
        view, view_len = random_augmentation(seq, lengths, self.eta, self.gamma, self.beta,
                                             mask_token=self.n_items, generator=generator)
        items = view[0, :int(view_len[0])].tolist()
        return [v for v in items if v != self.n_items]  # masked items are left out

    def generate(self, sequences, user_ids):
        out = []
        for seq, uid in zip(sequences, user_ids):
            g = torch.Generator().manual_seed(hash((self.seed, int(uid), int(self.round))) % (2 ** 62))
            x, lengths = left_align([seq], self.max_len)
            first, second = self._augment(x, lengths, g), self._augment(x, lengths, g)
            first = first or [seq[-1]]
            second = second or [seq[-1]]
            negative = torch.randint(1, self.n_items, (int(lengths[0]),), generator=g).tolist()
            out.append(TriView(first, second, negative))
        return out
