"""Trainers of recbole_llm: ``<Model>Trainer`` classes found by ``get_trainer``."""
