"""Client sampling of synchronous FedAvg (LUMOS §3, §5.1: 10 % of clients per round)."""
import torch

from recbole_llm.federated.rules import FEDERATED_RULES


def num_sampled(num_clients, fraction):
    """How many clients a round samples: ``round(fraction * num_clients)``."""
    return int(round(float(fraction) * num_clients))


def check_client_fraction(fraction, num_clients):
    """Raise ``ValueError`` unless ``fraction`` selects between 1 and all clients."""
    FEDERATED_RULES["client_fraction"].check("client_fraction", fraction)
    if num_sampled(num_clients, fraction) < 1:
        raise ValueError(
            f"client_fraction={fraction} selects no client out of {num_clients} "
            f"(round({fraction} * {num_clients}) = 0); raise it to at least {0.5 / num_clients:.4g}")


def sample_clients(num_clients, fraction, generator):
    """Sorted indices of this round's clients, drawn without replacement."""
    k = num_sampled(num_clients, fraction)
    return sorted(torch.randperm(num_clients, generator=generator)[:k].tolist())
