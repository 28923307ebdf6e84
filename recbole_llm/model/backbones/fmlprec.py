"""FMLPRec: Filter-enhanced MLP for sequential recommendation (Zhou et al., WWW 2022).

SASRec's architecture (item + position embedding, stacked blocks with RecBole's
point-wise feed-forward, last-item read-out, CE or BPR loss) with every
self-attention replaced by a learnable frequency-domain filter
(:class:`~recbole_llm.model.backbones.layers.LearnableFilterLayer`).
Padded positions are zeroed before each filter.  Config: ``properties/model/FMLPRec.yaml``.
"""
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llm.model.backbones.layers import LearnableFilterLayer, check_length, replace_token_mixers


class FMLPRec(SASRec):
    """SASRec with FMLP-Rec's learnable filters in place of self-attention."""

    def __init__(self, config, dataset):
        check_length("MAX_ITEM_LIST_LENGTH", config["MAX_ITEM_LIST_LENGTH"], 1)
        super().__init__(config, dataset)
        replace_token_mixers(self.trm_encoder, lambda: LearnableFilterLayer(
            self.max_seq_length, self.hidden_size, self.hidden_dropout_prob, self.layer_norm_eps))
        self.apply(self._init_weights)
