"""LUMOS (federated sequential recommendation with LLM views) and its baselines.

* :mod:`.models` -- LUMOS, FedSeq, ConFedSRS;
* :mod:`.recommender` -- the backbone wrapper and the client objective (§4.4);
* :mod:`.losses` -- next-item CE and the tri-view InfoNCE (eq. 1-3);
* :mod:`.views` -- client-side view generators (llm, semantic, augment, none);
* :mod:`.trainer` -- the trainers: FedAvg rounds (``recbole_llm.federated``) with views.
"""
from recbole_llm.model.lumos.models import LUMOS, ConFedSRS, FedSeq  # noqa: F401
from recbole_llm.model.lumos.recommender import check_config_before_data  # noqa: F401
from recbole_llm.model.lumos.trainer import ConFedSRSTrainer, FedSeqTrainer, LUMOSTrainer  # noqa: F401
