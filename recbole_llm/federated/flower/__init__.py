"""Flower deployment engine for LUMOS/FedSeq/ConFedSRS (optional extra ``federated``).

The same client update (:func:`~recbole_llm.federated.client_update.local_update`
or the vectorized engine) and the same FedAvg aggregation run on Flower's
deployment engine: a SuperLink, SuperNodes that each hold a partition of the
users (``--node-config "partition-id=K num-partitions=N"``), and the
ServerApp / ClientApp pair of :mod:`.apps` speaking Flower's Message API.
:mod:`.local` starts such a federation on 127.0.0.1 for ``fed_engine: flower``.
"""


def require_flwr():
    """Import flwr or raise one clear error naming the extra to install."""
    try:
        import flwr  # noqa: F401
    except ImportError as err:
        raise ImportError("fed_engine=flower needs Flower: pip install 'recbole_llm[federated]' "
                          "(flwr==1.42.*)") from err
