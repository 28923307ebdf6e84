"""Trainers of recbole_llm: ``<Model>Trainer`` classes found by ``get_trainer``."""
from recbole_llm.trainer.l3rec_trainer import L3RecTrainer  # noqa: F401
