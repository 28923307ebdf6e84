"""The client update of LUMOS §3/§5.1 and the sequential (reference) engine.

A sampled client copies the global parameters θ^{(t)}, runs ``local_epochs``
optimiser steps with gradient clipping at norm ``local_clip_norm`` on its own data
-- one step per local epoch: a client holds one sequence, whose rows form one
batch -- and returns θ_u^{(t)} as a :class:`ParameterUpdate`.

The client optimiser is configuration (:func:`client_optimizer`):

* ``sgd`` (shipped default, lr 1.0): FedAvg as McMahan et al. define it, plain
  client SGD, optional momentum, *decoupled* weight decay (θ ← θ(1 − lr·wd) before
  the step, the same as L2 when momentum is 0);
* ``adam``: the paper's §5.1 setting (lr 1e-3, L2 weight decay 1e-5 added to the
  gradient), a fresh Adam per client per round;
* ``adamw``: Adam with decoupled weight decay.

Why the default departs from the paper (measured on ml-100k, docs/lumos.md): a fresh
Adam's first steps move every coordinate by ≈ lr·sign(g) whatever |g| is, so under
the full-softmax loss a client moves the rows of items it never saw as much as
those it saw, and the average of a round is a global push plus popularity;
FedSeq(SASRec) with client Adam ends exactly at RecBole ``Pop``.  SGD moves a row in
proportion to its gradient.  ``properties/lumos_paper_adam.yaml`` restores the
paper's Adam.
"""
import math
from dataclasses import dataclass

import torch

from recbole_llm.federated.server import ParameterUpdate


CLIENT_OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class LocalTrainingSpec:
    """The local optimisation of one client."""

    local_epochs: int = 5
    optimizer: str = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.0       # sgd only
    weight_decay: float = 0.0   # decoupled for sgd/adamw, L2 for adam (the paper's)
    clip_norm: float = 5.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weighting: str = "uniform"  # or "samples": FedAvg weight = number of training targets

    @classmethod
    def from_config(cls, config):
        return cls(local_epochs=int(config["local_epochs"]), optimizer=config["local_optimizer"],
                   learning_rate=float(config["local_learning_rate"]),
                   momentum=float(config["local_momentum"] or 0.0),
                   weight_decay=float(config["local_weight_decay"] or 0.0),
                   clip_norm=float(config["local_clip_norm"]), weighting=config["fed_weighting"])

    def client_weight(self, client):
        return float(client.num_targets) if self.weighting == "samples" else 1.0


class DecoupledSGD(torch.optim.SGD):
    """SGD (with momentum) whose weight decay shrinks θ by lr·wd before the step (Loshchilov & Hutter)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum)
        self.decoupled_weight_decay = float(weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        if self.decoupled_weight_decay:
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(1.0 - group["lr"] * self.decoupled_weight_decay)
        return super().step(closure)


def client_optimizer(spec, params):
    """A fresh optimiser of ``spec`` over ``params`` (a client's parameters, or the ``[clients, P]``
    buffer of the vectorised engine: every optimiser here is elementwise, so one step on the buffer
    is each client's own step)."""
    params = list(params)
    fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {}
    if spec.optimizer == "sgd":
        return DecoupledSGD(params, lr=spec.learning_rate, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps,
                                weight_decay=spec.weight_decay, **fused)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps,
                                 weight_decay=spec.weight_decay, **fused)
    raise ValueError(f"local_optimizer must be one of {CLIENT_OPTIMIZERS}, got {spec.optimizer!r}")


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
    """θ_u: ``spec.local_epochs`` steps of the client optimiser on ``client_loss`` from ``global_params``."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(global_params[name])
    optimizer = client_optimizer(spec, params)
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
            updates.append(ParameterUpdate(params, self.spec.client_weight(client),
                                           source=f"user {client.user_id}"))
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
