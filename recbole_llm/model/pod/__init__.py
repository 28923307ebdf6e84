"""POD: prompt distillation over T5 for generative sequential recommendation (L3Rec's local LLM).

* :mod:`.pod` -- the model (continuous prompts, whole-word embedding, token CE);
* :mod:`.indexing` -- item ids written as text (sequential / collaborative indexing);
* :mod:`.decoding` -- the item trie and constrained beam search.
"""
from recbole_llm.model.pod.pod import POD, check_config_before_data  # noqa: F401
