"""LUMOS (Nguyen et al.): federated sequential recommendation with tri-view contrastive views.

Paper §3-§4: FedAvg over clients that each minimise next-item CE + λ_CL · tri-view
InfoNCE between their sequence, a predicted-future view, an intent-preserving
paraphrase (positives) and a counterfactual (negative), generated on the client
(config ``view_generator``: ``semantic`` offline default, or ``llm``).  Trained
by :class:`recbole_llm.trainer.LUMOSTrainer`; defaults in properties/model/LUMOS.yaml.
"""
from recbole_llm.federated.recommender import FederatedSequentialRecommender


class LUMOS(FederatedSequentialRecommender):
    """LUMOS; Table 2 ablations: drop a view from config ``lumos_views``."""
