"""The three federated models of LUMOS Table 1: LUMOS and its baselines FedSeq and ConFedSRS.

They share one wrapper (:class:`~.recommender.FederatedSequentialRecommender`) and
differ only in their client objective's views (config ``view_generator``):

* **LUMOS** (§3-§4): next-item CE + λ_CL · tri-view InfoNCE between the user's
  sequence, a predicted-future view, an intent-preserving paraphrase (positives) and a
  counterfactual (negative), generated on the client (``semantic`` offline default, or
  ``llm``). Table 2 ablations: drop a view from ``lumos_views``.
* **FedSeq**: vanilla FedAvg of a sequential backbone (``view_generator: none``).
* **ConFedSRS**: FedAvg + sequence-level CL on CL4SRec's crop/mask/reorder
  (``view_generator: augment``), through the same InfoNCE.

Defaults: ``properties/federated.yaml`` plus ``properties/model/<Model>.yaml``.
"""
from recbole_llm.model.lumos.recommender import FederatedSequentialRecommender


class LUMOS(FederatedSequentialRecommender):
    """LUMOS; Table 2 ablations: drop a view from config ``lumos_views``."""


class FedSeq(FederatedSequentialRecommender):
    """FedSeq(SASRec) / FedSeq(GRU4Rec): config ``backbone``; ``view_generator: none``."""


class ConFedSRS(FederatedSequentialRecommender):
    """ConFedSRS(SASRec) / ConFedSRS(GRU4Rec): config ``backbone``; ``view_generator: augment``."""
