"""Config rules of the federated keys (one :class:`~recbole_llm.validation.Rule` per key).

Checked once, when a federated model is built (before training); the trainer and
the engines read the keys without checking them again.
"""
from recbole_llm.federated.client_update import CLIENT_OPTIMIZERS
from recbole_llm.federated.server_optimizers import SERVER_OPTIMIZERS
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
    "local_optimizer": one_of(CLIENT_OPTIMIZERS),
    "local_learning_rate": number(low=0, low_open=True),
    "local_momentum": number(low=0, high=1, high_open=True),
    "local_weight_decay": number(low=0),
    "server_optimizer": one_of(SERVER_OPTIMIZERS),
    "server_learning_rate": number(low=0, low_open=True),
    "server_momentum": number(low=0, high=1, high_open=True),
    "server_beta2": number(low=0, high=1, high_open=True),
    "server_tau": number(low=0, low_open=True),
}
