"""FedAvg server of LUMOS §3 (eq. θ^{t+1} = mean of client models), parameters only.

The server's whole interface is :class:`ParameterUpdate`: named float tensors and
an aggregation weight.  It never receives sequences, prompts or generated views;
:meth:`FedAvgServer.aggregate` refuses anything that is not a
:class:`ParameterUpdate` of float tensors with the global model's names and shapes.
"""
from dataclasses import dataclass
from typing import Dict, Sequence

import torch


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


@torch.no_grad()
def weighted_mean(updates: Sequence[ParameterUpdate]) -> ParameterUpdate:
    """One :class:`ParameterUpdate` standing for ``updates``: Σ w_i θ_i / Σ w_i with weight Σ w_i."""
    updates = list(updates)
    if not updates:
        raise ValueError("no client updates to aggregate")
    total = float(sum(u.weight for u in updates))
    mean = {}
    for name, ref in updates[0].tensors.items():
        acc = torch.zeros_like(ref, dtype=torch.float64)
        for u in updates:
            acc += u.tensors[name].to(device=ref.device, dtype=torch.float64) * (u.weight / total)
        mean[name] = acc.to(ref.dtype)
    return ParameterUpdate(mean, total, sum(u.num_clients for u in updates))


class FedAvgServer:
    """Holds the global parameters and averages :class:`ParameterUpdate` s."""

    def __init__(self, global_params: Dict[str, torch.Tensor]):
        self.global_params = {k: v.detach().clone() for k, v in global_params.items()}

    def broadcast(self) -> Dict[str, torch.Tensor]:
        """The global model θ^{(t)} sent to this round's clients (a copy)."""
        return {k: v.clone() for k, v in self.global_params.items()}

    def _check(self, update):
        if not isinstance(update, ParameterUpdate):
            raise TypeError(f"the server accepts only ParameterUpdate objects, got {type(update).__name__}")
        if set(update.tensors) != set(self.global_params):
            raise ValueError("update parameter names differ from the global model's")
        for name, tensor in update.tensors.items():
            ref = self.global_params[name]
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() \
                    or tensor.shape != ref.shape:
                raise TypeError(f"update '{name}' is not a float tensor of shape {tuple(ref.shape)}")
        if not update.weight > 0:
            raise ValueError(f"update weight must be positive, got {update.weight}")

    @torch.no_grad()
    def aggregate(self, updates: Sequence[ParameterUpdate]) -> Dict[str, torch.Tensor]:
        """θ^{(t+1)} = Σ w_i θ_i / Σ w_i; becomes (and returns) the new global model."""
        updates = list(updates)
        if not updates:
            raise ValueError("no client updates to aggregate")
        for update in updates:
            self._check(update)
        mean = weighted_mean(updates).tensors
        self.global_params = {k: mean[k].to(v.device, v.dtype) for k, v in self.global_params.items()}
        return self.broadcast()
