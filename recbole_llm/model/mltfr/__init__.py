"""MLTFR: multi-LLM token filtering and routing over any RecBole sequential model.

* :mod:`.mltfr` -- the wrapper model (user interest, eq. 2-4; augmentation, eq. 13/15);
* :mod:`.layers` -- user-guided token filter, cross-attention experts, item-level gate (§2.1);
* :mod:`.consensus` -- Fisher importance and the semantic-consensus expert (§2.2);
* :mod:`.trainer` -- the two training rounds (Algorithm 1).
"""
from recbole_llm.model.mltfr.mltfr import MLTFR  # noqa: F401
from recbole_llm.model.mltfr.trainer import MLTFRTrainer  # noqa: F401
