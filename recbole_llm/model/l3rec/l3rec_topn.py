"""L3RecTopN: L³Rec for top-N recommendation with general local models (paper §4.1, §5.3, Table 4).

Same framework as :class:`~recbole_llm.model.l3rec.l3rec.L3Rec` (shared in
:class:`~recbole_llm.model.l3rec.l3rec.L3RecBase`) on RecBole's general
(unordered) data: local models are general recommenders (BPR by default), their
lists skip the user's training items, and the user-and-item assignment
(``item_communities: True``, paper's "UI" variant) is allowed: local model j
then trains only on its users' interactions with items within
``item_bandwidth`` of its anchor in the CF space, and ranks only those.
"""
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import ModelType

from recbole_llm.model.l3rec.l3rec import L3RecBase
from recbole_llm.validation import ConfigError


class L3RecTopN(L3RecBase, GeneralRecommender):
    r"""L³Rec on top-N data: general local models, optional item communities."""

    type = ModelType.GENERAL

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        history, _, _ = dataset.history_item_matrix()  # training items, never recommended again
        self.register_buffer("history_item_id", history.long(), persistent=False)

    def _check_sub_models(self, config):
        local_type = self.local_config["MODEL_TYPE"]
        if local_type != ModelType.GENERAL:
            raise ConfigError("local_model", config["local_model"], "a general (top-N) model such as BPR",
                              f"it is {local_type.name}; use L3Rec for sequential local models")
        super()._check_sub_models(config)

    def exclude_from_local_lists(self, scores, interaction):
        """The padding item and the user's training items."""
        super().exclude_from_local_lists(scores, interaction)
        scores.scatter_(1, self.history_item_id[interaction[self.USER_ID]], float("-inf"))
