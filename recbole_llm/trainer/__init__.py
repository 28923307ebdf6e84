"""Trainers of recbole_llm: ``<Model>Trainer`` classes found by ``get_trainer``."""
from recbole_llm.trainer.federated_trainer import (ConFedSRSTrainer, FedSeqTrainer,  # noqa: F401
                                                    FederatedTrainer, LUMOSTrainer)
from recbole_llm.trainer.l3rec_trainer import L3RecTrainer  # noqa: F401
from recbole_llm.trainer.mltfr_trainer import MLTFRTrainer  # noqa: F401
