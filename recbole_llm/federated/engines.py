"""The in-process federated engines by name (config ``fed_engine``).

``sequential`` (:class:`~.client_update.SequentialEngine`, the reference) and
``vectorized`` (:class:`~.vectorized.VectorizedEngine`, exact, many clients at
once).  ``flower`` is not an engine object: the trainer hands the whole run to a
Flower federation (:mod:`.flower`).
"""
from recbole_llm.federated.client_update import SequentialEngine
from recbole_llm.federated.rules import ENGINES
from recbole_llm.federated.vectorized import VectorizedEngine


def make_engine(name, model, spec):
    """The engine named by ``fed_engine`` (vectorized, sequential)."""
    if name == "sequential":
        return SequentialEngine(model, spec)
    if name == "vectorized":
        return VectorizedEngine(model, spec)
    raise ValueError(f"fed_engine must be one of {ENGINES} (in-process: vectorized, sequential), got {name!r}")
