"""L3RecTopN: L³Rec for top-N recommendation with general local models (paper §4.1, §5.3, Table 4).

Same framework as :class:`~recbole_llm.model.l3rec.L3Rec` on RecBole's general
(unordered) data: local models are general recommenders (BPR by default) and the
user-and-item assignment (``item_communities: True``, paper's "UI" variant) is
allowed: local model j then trains only on its users' interactions with items
within ``item_bandwidth`` of its anchor in the CF space, and ranks only those.
"""
from recbole.utils import ModelType

from recbole_llm.model.l3rec.l3rec import L3Rec


class L3RecTopN(L3Rec):
    r"""L³Rec on top-N data: general local models, optional item communities."""

    type = ModelType.GENERAL
