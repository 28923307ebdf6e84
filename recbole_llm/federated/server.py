"""FedAvg server of LUMOS §3 (eq. θ^{t+1} = mean of client models), parameters only.

The server's whole interface is :class:`ParameterUpdate`: named float tensors and
an aggregation weight.  It never receives sequences, prompts or generated views;
:meth:`FedAvgServer.aggregate` refuses, naming the sender, anything that is not a
:class:`ParameterUpdate` of finite float tensors with the global model's names and
shapes and a finite positive numeric weight.  The new global model is the server
optimiser's step from the weighted mean (:mod:`.server_optimizers`; plain FedAvg by
default).
"""
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Dict, Sequence

import torch

from recbole_llm.federated.server_optimizers import ServerOptimizer


@dataclass(frozen=True)
class ParameterUpdate:
    """What a client (or a node holding several clients) sends to the server.

    ``tensors`` is the client's model, or the ``weight``-weighted mean of the
    models of ``num_clients`` clients; ``weight`` is their total FedAvg weight
    (1 per client for the paper's uniform average, the number of training targets
    for the sample-weighted option).  Averaging such updates by weight is exactly
    per-client FedAvg.
    """

    tensors: Dict[str, torch.Tensor]
    weight: float
    num_clients: int = 1
    source: Any = None  # who sent it (a user id, a chunk of users, a Flower node): named in errors


@torch.no_grad()
def weighted_mean(updates: Sequence[ParameterUpdate]) -> ParameterUpdate:
    """One :class:`ParameterUpdate` standing for ``updates``: Σ w_i θ_i / Σ w_i with weight Σ w_i."""
    updates = list(updates)
    if not updates:
        raise ValueError("no client updates to aggregate")
    total = float(sum(float(u.weight) for u in updates))
    mean = {}
    for name, ref in updates[0].tensors.items():
        acc = torch.zeros_like(ref, dtype=torch.float64)
        for u in updates:
            acc += u.tensors[name].to(device=ref.device, dtype=torch.float64) * (float(u.weight) / total)
        mean[name] = acc.to(ref.dtype)
    return ParameterUpdate(mean, total, sum(u.num_clients for u in updates))


class FedAvgServer:
    """Holds the global parameters, checks and averages :class:`ParameterUpdate` s, steps the server optimiser."""

    def __init__(self, global_params: Dict[str, torch.Tensor], optimizer: ServerOptimizer = None):
        self.global_params = {k: v.detach().clone() for k, v in global_params.items()}
        self.optimizer = optimizer or ServerOptimizer()

    def broadcast(self) -> Dict[str, torch.Tensor]:
        """The global model θ^{(t)} sent to this round's clients (a copy)."""
        return {k: v.clone() for k, v in self.global_params.items()}

    def check(self, update, index=0):
        """Raise, naming the sender, unless ``update`` is a well-formed :class:`ParameterUpdate`."""
        if not isinstance(update, ParameterUpdate):
            raise TypeError(f"update {index}: the server accepts only ParameterUpdate objects, "
                            f"got {type(update).__name__}")
        sender = f"update {index} (from {update.source})" if update.source is not None else f"update {index}"
        weight = update.weight
        if isinstance(weight, bool) or not isinstance(weight, (Real, torch.Tensor)) \
                or (isinstance(weight, torch.Tensor) and weight.numel() != 1):
            raise TypeError(f"{sender}: weight must be a number, got {type(weight).__name__} {weight!r}")
        weight = float(weight)
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"{sender}: weight must be a finite positive number, got {weight}")
        if set(update.tensors) != set(self.global_params):
            raise ValueError(f"{sender}: parameter names differ from the global model's")
        for name, tensor in update.tensors.items():
            ref = self.global_params[name]
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() \
                    or tensor.shape != ref.shape:
                raise TypeError(f"{sender}: '{name}' is not a float tensor of shape {tuple(ref.shape)}")
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{sender}: '{name}' holds non-finite values (NaN or inf)")

    @torch.no_grad()
    def aggregate(self, updates: Sequence[ParameterUpdate]) -> Dict[str, torch.Tensor]:
        """θ^{(t+1)}: the server optimiser's step from Σ w_i θ_i / Σ w_i; becomes (and returns) the global model."""
        updates = list(updates)
        if not updates:
            raise ValueError("no client updates to aggregate")
        for i, update in enumerate(updates):
            self.check(update, i)
        mean = weighted_mean(updates).tensors
        mean = {k: mean[k].to(v.device, v.dtype) for k, v in self.global_params.items()}
        self.global_params = self.optimizer.step(self.global_params, mean)
        return self.broadcast()
