"""BSARec: Beyond Self-Attention for sequential recommendation (Shin et al., AAAI 2024).

SASRec's architecture with every self-attention replaced by
:class:`~recbole_llm.model.backbones.layers.BeyondSelfAttention`: causal
self-attention mixed, by ``bsarec_alpha``, with a Fourier inductive bias that keeps
the low frequencies (the lowest ``bsarec_c // 2 + 1`` rfft bins) and rescales the
high ones by a learnt ``beta``.  Config: ``properties/model/BSARec.yaml``.
"""
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llm.augmentation import check_rate
from recbole_llm.model.backbones.layers import BeyondSelfAttention, check_length, replace_token_mixers


class BSARec(SASRec):
    """SASRec whose attention layers are BSARec's attentive-inductive-bias layers."""

    def __init__(self, config, dataset):
        max_len = check_length("MAX_ITEM_LIST_LENGTH", config["MAX_ITEM_LIST_LENGTH"], 1)
        alpha = check_rate("bsarec_alpha", config["bsarec_alpha"])
        cutoff = check_length("bsarec_c (low-pass cutoff)", config["bsarec_c"], 1, max_len)
        super().__init__(config, dataset)
        self.alpha, self.cutoff = alpha, cutoff
        replace_token_mixers(self.trm_encoder, lambda: BeyondSelfAttention(
            self.alpha, self.max_seq_length, self.cutoff, self.n_heads, self.hidden_size,
            self.hidden_dropout_prob, self.attn_dropout_prob, self.layer_norm_eps))
        self.apply(self._init_weights)
