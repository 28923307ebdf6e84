"""LinRec: L2-normalised linear attention for sequential recommendation (Liu et al., SIGIR 2023).

RecBole's BERT4Rec with every dot-product attention replaced by LinRec's
:class:`~recbole_llm.model.backbones.layers.L2NormLinearAttention`, whose cost is
linear in the sequence length.  Config key ``train_style`` picks the objective:

* ``bert4rec`` (default, as the MLTFR paper pairs LinRec with BERT4Rec's
  masked-item prediction): RecBole's BERT4Rec training and scoring, unchanged;
  needs ``transform: mask_itemseq`` (set by ``LinRec.yaml``).
* ``sasrec``: next-item CE loss on the last position of the un-masked sequence,
  as SASRec trains; needs ``transform: ~`` and ``loss_type: CE``.

Config: ``properties/model/LinRec.yaml``.
"""
from torch import nn
from recbole.model.sequential_recommender.bert4rec import BERT4Rec

from recbole_llm.augmentation import check_rate
from recbole_llm.model.backbones.layers import L2NormLinearAttention, check_length, replace_token_mixers

TRAIN_STYLES = ("bert4rec", "sasrec")


def _check_train_style(config):
    style = config["train_style"]
    if style not in TRAIN_STYLES:
        raise ValueError(f"LinRec train_style must be one of {TRAIN_STYLES}, got {style!r}")
    if style == "bert4rec" and config["transform"] != "mask_itemseq":
        raise ValueError("LinRec train_style 'bert4rec' needs transform: mask_itemseq "
                         f"(RecBole's masked-item batches), got transform: {config['transform']!r}")
    if style == "sasrec" and (config["transform"] is not None or config["loss_type"] != "CE"):
        raise ValueError("LinRec train_style 'sasrec' needs transform: ~ and loss_type: CE, got "
                         f"transform: {config['transform']!r}, loss_type: {config['loss_type']!r}")
    return style


class LinRec(BERT4Rec):
    """BERT4Rec (or SASRec-style next-item training) with LinRec's linear attention."""

    def __init__(self, config, dataset):
        max_len = check_length("MAX_ITEM_LIST_LENGTH", config["MAX_ITEM_LIST_LENGTH"], 1)
        style = _check_train_style(config)
        if style == "bert4rec":
            ratio = check_rate("mask_ratio", config["mask_ratio"])
            if int(ratio * max_len) < 1:
                raise ValueError(f"mask_ratio * MAX_ITEM_LIST_LENGTH = {ratio} * {max_len} masks "
                                 "no item; raise mask_ratio or MAX_ITEM_LIST_LENGTH")
        super().__init__(config, dataset)
        self.train_style = style
        replace_token_mixers(self.trm_encoder, lambda: L2NormLinearAttention(
            self.n_heads, self.hidden_size, self.hidden_dropout_prob, self.attn_dropout_prob,
            self.layer_norm_eps))
        self.apply(self._init_weights)

    def _last_item_output(self, interaction):
        """SASRec-style read-out: the encoder output at each sequence's last item. [B, H]"""
        output = self.forward(interaction[self.ITEM_SEQ])
        return self.gather_indexes(output, interaction[self.ITEM_SEQ_LEN] - 1)

    def _all_item_scores(self, seq_output):
        return seq_output @ self.item_embedding.weight[: self.n_items].T + self.output_bias

    def calculate_loss(self, interaction):
        if self.train_style == "bert4rec":
            return super().calculate_loss(interaction)
        logits = self._all_item_scores(self._last_item_output(interaction))
        return nn.functional.cross_entropy(logits, interaction[self.POS_ITEM_ID])

    def predict(self, interaction):
        if self.train_style == "bert4rec":
            return super().predict(interaction)
        test_item = interaction[self.ITEM_ID]
        seq_output = self._last_item_output(interaction)
        return (seq_output * self.item_embedding(test_item)).sum(-1) + self.output_bias[test_item]

    def full_sort_predict(self, interaction):
        if self.train_style == "bert4rec":
            return super().full_sort_predict(interaction)
        return self._all_item_scores(self._last_item_output(interaction))
