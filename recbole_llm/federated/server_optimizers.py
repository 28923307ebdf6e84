"""Server optimisers of FedAvg (Reddi et al., "Adaptive Federated Optimization", ICLR 2021).

The server treats Δ_t = mean_t − θ_t (the weighted mean of the round's client models
minus the global model) as a pseudo-gradient and steps θ with it:

* ``fedavg``: θ ← θ + η·Δ (η = ``server_learning_rate``; η = 1 is McMahan's average);
* ``fedavgm``: v ← β·v + (−Δ) (v starts at the first −Δ), θ ← θ − η·v (Hsu et al. 2019);
* ``fedadam``: m ← β1·m + (1−β1)·Δ, v ← β2·v + (1−β2)·Δ², θ ← θ + η_t·m / (√v + τ)
  with η_t = η·√(1−β2^(t+1)) / (1−β1^(t+1)), t the 1-based round;
* ``fedyogi``: m as FedAdam, v ← v − (1−β2)·Δ²·sign(v − Δ²), θ ← θ + η·m / (√v + τ).

m and v start at zero.  These are exactly the updates of Flower 1.42's ``FedAvgM``,
``FedAdam`` and ``FedYogi`` strategies (bias correction with t + 1 included), which the
Flower engine uses itself (:mod:`recbole_llm.federated.flower.strategies`); the
in-process engines get the same result from this one implementation, through
:class:`~recbole_llm.federated.server.FedAvgServer` (tested against Flower's code).
"""
from dataclasses import dataclass

import torch

SERVER_OPTIMIZERS = ("fedavg", "fedavgm", "fedadam", "fedyogi")


@dataclass(frozen=True)
class ServerOptimizerSpec:
    name: str = "fedavg"
    learning_rate: float = 1.0
    momentum: float = 0.9   # FedAvgM's β, FedAdam/FedYogi's β1
    beta2: float = 0.99
    tau: float = 1e-3

    @classmethod
    def from_config(cls, config):
        def get(key, default):
            value = config[key] if key in config else None
            return default if value is None else value

        return cls(name=get("server_optimizer", "fedavg"), learning_rate=float(get("server_learning_rate", 1.0)),
                   momentum=float(get("server_momentum", 0.9)), beta2=float(get("server_beta2", 0.99)),
                   tau=float(get("server_tau", 1e-3)))

    @property
    def is_plain_average(self):
        return self.name == "fedavg" and self.learning_rate == 1.0


class ServerOptimizer:
    """``step(global, mean) -> new global`` of one round; keeps the optimiser's state across rounds."""

    def __init__(self, spec=None):
        self.spec = spec or ServerOptimizerSpec()
        if self.spec.name not in SERVER_OPTIMIZERS:
            raise ValueError(f"server_optimizer must be one of {SERVER_OPTIMIZERS}, got {self.spec.name!r}")
        self.round = 0
        self.m = self.v = None

    @torch.no_grad()
    def step(self, current, mean):
        self.round += 1
        spec = self.spec
        if spec.is_plain_average:
            return {k: mean[k].clone() for k in current}
        delta = {k: mean[k].to(current[k].dtype) - current[k] for k in current}
        if spec.name == "fedavg":
            return {k: current[k] + spec.learning_rate * delta[k] for k in current}
        if spec.name == "fedavgm":
            pseudo = {k: -d for k, d in delta.items()}
            if spec.momentum > 0:
                self.m = pseudo if self.m is None else {k: spec.momentum * self.m[k] + pseudo[k] for k in pseudo}
                pseudo = self.m
            return {k: current[k] - spec.learning_rate * pseudo[k] for k in current}
        if self.m is None:
            self.m = {k: torch.zeros_like(d) for k, d in delta.items()}
            self.v = {k: torch.zeros_like(d) for k, d in delta.items()}
        b1, b2 = spec.momentum, spec.beta2
        self.m = {k: b1 * self.m[k] + (1 - b1) * delta[k] for k in delta}
        if spec.name == "fedadam":
            self.v = {k: b2 * self.v[k] + (1 - b2) * delta[k] ** 2 for k in delta}
            t = self.round + 1.0
            eta = spec.learning_rate * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        else:  # fedyogi
            self.v = {k: self.v[k] - (1 - b2) * delta[k] ** 2 * torch.sign(self.v[k] - delta[k] ** 2)
                      for k in delta}
            eta = spec.learning_rate
        return {k: current[k] + eta * self.m[k] / (self.v[k].sqrt() + spec.tau) for k in current}
