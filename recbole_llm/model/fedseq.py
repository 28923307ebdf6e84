"""FedSeq baseline of LUMOS Table 1: vanilla FedAvg of a sequential backbone (no views, no CL)."""
from recbole_llm.federated.recommender import FederatedSequentialRecommender


class FedSeq(FederatedSequentialRecommender):
    """FedSeq(SASRec) / FedSeq(GRU4Rec): config ``backbone``; ``view_generator: none``."""
