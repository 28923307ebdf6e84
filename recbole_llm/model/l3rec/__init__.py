"""L3Rec: local models on collaborative communities, fused by rank (paper §4).

* :mod:`.l3rec` -- ``L3RecBase`` (parameters, community weights, fused full-ranking
  scores; the key rules ``L3REC_RULES``) and ``L3Rec``, its sequential form;
* :mod:`.l3rec_topn` -- ``L3RecTopN``, its top-N (general) form;
* :mod:`.global_data` -- the global CF model's data: the view the model builds it on,
  the loaders the trainer trains it on;
* :mod:`.trainer` -- the training procedure (global model, communities, local models).

The registry finds a model's trainer as ``<Model>Trainer`` in this package:
``L3RecTrainer`` and ``L3RecTopNTrainer`` (the same procedure).
"""
from recbole_llm.model.l3rec.l3rec import L3Rec, L3RecBase, check_config_before_data  # noqa: F401
from recbole_llm.model.l3rec.l3rec_topn import L3RecTopN  # noqa: F401
from recbole_llm.model.l3rec.trainer import L3RecTopNTrainer, L3RecTrainer  # noqa: F401
