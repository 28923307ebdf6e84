"""MLTFR: multi-LLM token filtering and routing over any RecBole sequential model.

* :mod:`.mltfr` -- the wrapper model: W_output (eq. 15) added to E before the backbone
  (eq. 18), the eq. 16 loss (§2, §2.3);
* :mod:`.layers` -- token filtering (eq. 1-7), semantic integration layer (eq. 8-10),
  item-level gate (eq. 11-12) (§2.1, §2.2.1);
* :mod:`.consensus` -- Fisher importance and the semantic-consensus expert (§2.2.2, eq. 13-14);
* :mod:`.rules` -- the config rules of MLTFR's keys, checked once when the model is built;
* :mod:`.trainer` -- the two training rounds (Algorithm 1).
"""
from recbole_llm.model.mltfr.mltfr import MLTFR, check_config_before_data  # noqa: F401
from recbole_llm.model.mltfr.trainer import MLTFRTrainer  # noqa: F401
