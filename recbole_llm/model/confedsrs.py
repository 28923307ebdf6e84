"""ConFedSRS baseline of LUMOS Table 1: FedAvg + sequence-level CL on local augmentations.

The views come from CL4SRec's crop/mask/reorder (``view_generator: augment``) and
enter the same tri-view InfoNCE as LUMOS.
"""
from recbole_llm.federated.recommender import FederatedSequentialRecommender


class ConFedSRS(FederatedSequentialRecommender):
    """ConFedSRS(SASRec) / ConFedSRS(GRU4Rec): config ``backbone``; ``view_generator: augment``."""
