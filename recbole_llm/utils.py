"""Public lookup API of the plug-in: ``get_model`` / ``get_trainer`` (RecBole's names).

They live in :mod:`recbole_llm.registry` (the ground layer, so that method packages
can find other models by name); this module is where a RecBole user looks for them.
"""
from recbole_llm.registry import (build_sequential_backbone, get_model, get_trainer,  # noqa: F401
                                  plugin_model_names, recbole_model_names)

__all__ = ["get_model", "get_trainer", "plugin_model_names", "recbole_model_names",
           "build_sequential_backbone"]
