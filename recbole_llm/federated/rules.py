"""Config rules of the federated keys (one :class:`~recbole_llm.validation.Rule` per key).

Checked once, when a federated model is built (before training); the trainer and
the engines read the keys without checking them again.
"""
from recbole_llm.validation import boolean, integer, number, one_of

ENGINES = ("vectorized", "sequential", "flower")
WEIGHTINGS = ("uniform", "samples")

FEDERATED_RULES = {
    "rounds": integer(low=1),
    "local_epochs": integer(low=1),
    "eval_step": integer(low=1),
    "client_fraction": number(low=0, high=1, low_open=True),
    "fed_engine": one_of(ENGINES),
    "fed_weighting": one_of(WEIGHTINGS),
    "individual_learning": boolean(),
    "local_clip_norm": number(low=0, low_open=True),
}
