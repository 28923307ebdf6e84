"""L3Rec: local models on collaborative communities, fused by rank.

* :mod:`.l3rec` -- L3Rec (sequential local models) and L3RecTopN (general ones):
  parameters, community weights and the fused full-ranking scores;
* :mod:`.trainer` -- the training procedure (global model, communities, local models).
"""
from recbole_llm.model.l3rec.l3rec import L3Rec  # noqa: F401
from recbole_llm.model.l3rec.l3rec_topn import L3RecTopN  # noqa: F401
from recbole_llm.model.l3rec.trainer import L3RecTrainer  # noqa: F401
