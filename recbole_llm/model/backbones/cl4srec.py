"""CL4SRec: contrastive learning for sequential recommendation (Xie et al., ICDE 2022).

SASRec (RecBole's, subclassed) trained with ``L = L_main + cl_weight * L_cl``:
``L_cl`` is the InfoNCE / NT-Xent loss between the encodings
of two augmented views of every sequence of the batch, each view drawn per
sequence from item crop / mask / reorder (:mod:`recbole_llm.augmentation`,
rates ``crop_eta``, ``mask_gamma``, ``reorder_beta``).  The mask token is the
extra item id ``n_items``, so ``item_embedding`` has ``n_items + 1`` rows; the
mask row is never scored.  Config: ``properties/model/CL4SRec.yaml``.
"""
import torch
import torch.nn.functional as F
from torch import nn
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llm.augmentation import check_rate, random_augmentation
from recbole_llm.model.backbones.layers import check_length
from recbole_llm.validation import SHARED_RULES, one_of, validate

SIMILARITIES = ("dot", "cos")
CL4SREC_RULES = {"cl_weight": SHARED_RULES["cl_weight"], "cl_temperature": SHARED_RULES["cl_temperature"],
                 "cl_similarity": one_of(SIMILARITIES)}


def info_nce(z1, z2, temperature=1.0, similarity="dot"):
    """NT-Xent over a batch of view pairs ``z1[i] <-> z2[i]`` ([B, H] each).

    Each of the 2B views has its partner as positive and the other 2B - 2 views
    of the batch as negatives (CL4SRec's contrastive loss).
    """
    z = torch.cat([z1, z2], dim=0)
    if similarity == "cos":
        z = F.normalize(z, dim=-1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


class CL4SRec(SASRec):
    """SASRec plus CL4SRec's sequence-level contrastive loss between augmented views."""

    def __init__(self, config, dataset):
        check_length("MAX_ITEM_LIST_LENGTH", config["MAX_ITEM_LIST_LENGTH"], 1)
        rates = {key: check_rate(key, config[key]) for key in ("crop_eta", "mask_gamma", "reorder_beta")}
        validate(config, CL4SREC_RULES)
        cl_weight, temperature = float(config["cl_weight"]), config["cl_temperature"]
        super().__init__(config, dataset)
        self.crop_eta, self.mask_gamma, self.reorder_beta = rates.values()
        self.cl_weight, self.cl_temperature = cl_weight, float(temperature)
        self.cl_similarity = config["cl_similarity"]
        self.mask_token = self.n_items
        self.item_embedding = nn.Embedding(self.n_items + 1, self.hidden_size, padding_idx=0)
        self.apply(self._init_weights)

    def augmented_view(self, item_seq, item_seq_len):
        """One CL4SRec view of each sequence (crop, mask or reorder, drawn per sequence)."""
        return random_augmentation(item_seq, item_seq_len, self.crop_eta, self.mask_gamma,
                                   self.reorder_beta, self.mask_token)

    def contrastive_loss(self, item_seq, item_seq_len):
        z1 = self.forward(*self.augmented_view(item_seq, item_seq_len))
        z2 = self.forward(*self.augmented_view(item_seq, item_seq_len))
        return info_nce(z1, z2, self.cl_temperature, self.cl_similarity)

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        if self.loss_type == "CE":  # SASRec's CE, without the mask token as a class
            logits = self.full_sort_predict(interaction)
            main_loss = self.loss_fct(logits, interaction[self.POS_ITEM_ID])
        else:
            main_loss = super().calculate_loss(interaction)
        return main_loss + self.cl_weight * self.contrastive_loss(item_seq, item_seq_len)

    def full_sort_predict(self, interaction):
        return super().full_sort_predict(interaction)[:, : self.n_items]


def check_config_before_data(config):
    """CL4SRec's rules (the other backbones of this package add no keys)."""
    if config["model"] == "CL4SRec":
        validate(config, CL4SREC_RULES)
