"""Trainers of recbole_llm: ``<Model>Trainer`` classes found by ``get_trainer``."""
from recbole_llm.trainer.mltfr_trainer import MLTFRTrainer
