"""The server optimisers of :mod:`recbole_llm.federated.server_optimizers` as Flower's own strategies.

On the Flower engine the ServerApp aggregates the nodes' replies with Flower 1.42's
``FedAvg`` / ``FedAvgM`` / ``FedAdam`` / ``FedYogi`` (their ``aggregate_train``: the
weighted mean of the replies by their ``weight`` metric, then the server step).  A
node's reply holds the weighted mean of its clients and their total weight, so
Flower's weighted mean over nodes is exact per-client FedAvg.  The in-process engines
compute the same step with :class:`~recbole_llm.federated.server_optimizers.ServerOptimizer`
(tested equal).
"""
import numpy as np

from recbole_llm.federated.flower import require_flwr

WEIGHT_KEY = "weight"  # the MetricRecord entry that weighs a reply


def flower_strategy(spec):
    """The Flower strategy that performs ``spec``'s server step."""
    require_flwr()
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedYogi

    common = dict(weighted_by_key=WEIGHT_KEY, min_train_nodes=1, min_evaluate_nodes=0,
                  min_available_nodes=1, fraction_evaluate=0.0)
    if spec.is_plain_average:
        return FedAvg(**common)
    if spec.name in ("fedavg", "fedavgm"):
        return FedAvgM(server_learning_rate=spec.learning_rate,
                       server_momentum=spec.momentum if spec.name == "fedavgm" else 0.0, **common)
    cls = {"fedadam": FedAdam, "fedyogi": FedYogi}[spec.name]
    return cls(eta=spec.learning_rate, beta_1=spec.momentum, beta_2=spec.beta2, tau=spec.tau, **common)


def flower_server_step(strategy, current, replies, server_round):
    """θ^{(t+1)} as ``{name: float32 ndarray}``: ``strategy``'s aggregation of ``replies`` from ``current``.

    ``server_round`` is 1-based, as in Flower's own loop.  The strategy's notion of the
    current model is set here, as its ``configure_train`` would.
    """
    from flwr.app import Array, ArrayRecord
    from flwr.serverapp.strategy import FedAvgM

    if isinstance(strategy, FedAvgM):
        strategy.current_arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in current.items()})
    elif hasattr(strategy, "m_t"):  # FedOpt family
        strategy.current_arrays = {k: np.asarray(v) for k, v in current.items()}
    arrays, _ = strategy.aggregate_train(server_round, replies)
    if arrays is None:
        raise RuntimeError(f"round {server_round}: Flower's {type(strategy).__name__} aggregated no reply")
    return {k: a.numpy() for k, a in arrays.items()}
