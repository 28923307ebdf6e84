"""The client update of LUMOS §3/§5.1 and the sequential (reference) engine.

A sampled client copies the global parameters θ^{(t)}, runs ``local_epochs``
steps of Adam (lr 1e-3, weight decay 1e-5) with gradient clipping at norm 5.0 on
its own data -- one step per local epoch: a client holds one sequence, whose
rows form one batch -- and returns θ_u^{(t)} as a :class:`ParameterUpdate`.
"""
import math
from dataclasses import dataclass

import torch

from recbole_llm.federated.server import ParameterUpdate


@dataclass(frozen=True)
class LocalTrainingSpec:
    """The local optimisation of one client (paper defaults)."""

    local_epochs: int = 5
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    clip_norm: float = 5.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weighting: str = "uniform"  # or "samples": FedAvg weight = number of training targets

    @classmethod
    def from_config(cls, config):
        return cls(local_epochs=int(config["local_epochs"]), learning_rate=float(config["learning_rate"]),
                   weight_decay=float(config["weight_decay"] or 0.0),
                   clip_norm=float(config["local_clip_norm"]), weighting=config["fed_weighting"])

    def client_weight(self, client):
        return float(client.num_targets) if self.weighting == "samples" else 1.0


def client_batch(client, use_views):
    """The tensors :meth:`client_loss` takes for ``client`` (views only when used)."""
    batch = (client.inputs, client.targets, client.lengths)
    if use_views:
        if client.views is None:
            raise RuntimeError(f"client {client.user_id} has no views; generate them first")
        batch = batch + (client.views, client.view_lengths)
    return batch


def trainable_parameters(model):
    """``{name: tensor}`` of the model's trainable parameters (what FedAvg exchanges)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def flatten_parameters(params, shapes, device):
    """``[1, P]``: the tensors of ``params`` named in ``shapes``, flattened and concatenated."""
    return torch.cat([params[k].to(device).reshape(1, -1) for k in shapes], 1)


def parameter_views(flat, shapes):
    """``{name: [n, *shape] view}`` into the rows of a ``[n, P]`` buffer (the inverse of flattening)."""
    views, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        views[name] = flat[:, offset:offset + size].view(flat.shape[0], *shape)
        offset += size
    return views


def local_update(model, global_params, client, spec):
    """θ_u: ``spec.local_epochs`` Adam steps of ``client_loss`` from ``global_params``."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(global_params[name])
    optimizer = torch.optim.Adam(params, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps,
                                 weight_decay=spec.weight_decay)
    batch = [t.to(device) for t in client_batch(client, model.use_views)]
    model.train()
    for _ in range(spec.local_epochs):
        optimizer.zero_grad(set_to_none=True)
        loss = model.client_loss(*batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.clip_norm)
        optimizer.step()
    return {n: t.clone() for n, t in trainable_parameters(model).items()}, float(loss.detach())


class SequentialEngine:
    """Reference engine: one client after another through :func:`local_update`."""

    name = "sequential"

    def __init__(self, model, spec):
        self.model, self.spec = model, spec

    def run_round(self, global_params, clients):
        """``(updates, mean local loss)`` of one round over ``clients``."""
        updates, losses = [], []
        for client in clients:
            params, loss = local_update(self.model, global_params, client, self.spec)
            updates.append(ParameterUpdate(params, self.spec.client_weight(client)))
            losses.append(loss)
        return updates, sum(losses) / max(len(losses), 1)

    def chunks(self, clients):
        """One client at a time."""
        return ([c] for c in clients)

    def train_rows(self, flat, shapes, clients):
        """Train client i's model, row i of ``flat`` ([n, P], updated in place); returns the last losses."""
        views, losses = parameter_views(flat, shapes), []
        for i, client in enumerate(clients):
            params, loss = local_update(self.model, {k: v[i] for k, v in views.items()}, client, self.spec)
            flat[i] = flatten_parameters(params, shapes, flat.device)[0]
            losses.append(loss)
        return torch.tensor(losses)
