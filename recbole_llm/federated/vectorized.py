"""Vectorised engine: many clients' local updates at once, exactly (LUMOS §3 at scale).

Clients of a round are sorted by their number of rows and cut into chunks; each
chunk trains every client's own copy of the parameters at once with
``torch.func.vmap`` over ``grad(functional_call(client_loss))``: per-client
parameters and Adam states are stacked along a leading client axis, rows are
padded (padding rows have no target, so they add nothing to loss or gradient),
gradients are clipped per client and Adam is applied per client with the same
formulas as ``torch.optim.Adam`` (L2 weight decay, bias correction).  The result
equals :class:`~recbole_llm.federated.client_update.SequentialEngine` up to float
rounding.  A chunk is sent to the server as one :class:`ParameterUpdate` holding
the weighted mean of its clients and their total weight, which keeps FedAvg exact.
"""
import math

import torch
from torch.func import functional_call, grad_and_value, vmap

from recbole_llm.federated.client_update import client_batch, trainable_parameters
from recbole_llm.federated.server import ParameterUpdate


class ClientObjective(torch.nn.Module):
    """``forward(batch) = model.client_loss(batch)`` so ``functional_call`` can run it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *batch):
        return self.model.client_loss(*batch)


def stack_client_batches(clients, use_views, max_len):
    """Pad every client's rows to the chunk's largest row count and stack them."""
    rows = max(c.num_rows for c in clients)
    n = len(clients)
    inputs = torch.zeros(n, rows, max_len, dtype=torch.long)
    targets = torch.zeros_like(inputs)
    lengths = torch.ones(n, rows, dtype=torch.long)  # padding rows: length 1, no target
    for i, c in enumerate(clients):
        inputs[i, :c.num_rows] = c.inputs
        targets[i, :c.num_rows] = c.targets
        lengths[i, :c.num_rows] = c.lengths
    batch = [inputs, targets, lengths]
    if use_views:
        views = [client_batch(c, True) for c in clients]
        batch += [torch.stack([v[3] for v in views]), torch.stack([v[4] for v in views])]
    return batch


class VectorizedEngine:
    """Exact batched client updates; see the module docstring."""

    name = "vectorized"

    def __init__(self, model, spec, chunk_elements=None):
        self.model, self.spec = model, spec
        self.objective = ClientObjective(model)
        if chunk_elements is None:  # CPU: small chunks keep stacked states in cache (measured)
            chunk_elements = 5e7 if next(model.parameters()).is_cuda else 2e6
        self.chunk_elements = float(chunk_elements)  # budget for C * rows * L * n_items logits

    def _chunks(self, clients):
        per_row = self.model.max_seq_length * self.model.n_items
        order = sorted(clients, key=lambda c: c.num_rows)
        chunk = []
        for c in order:
            if chunk and (len(chunk) + 1) * c.num_rows * per_row > self.chunk_elements:
                yield chunk
                chunk = []
            chunk.append(c)
        if chunk:
            yield chunk

    def run_round(self, global_params, clients):
        updates, loss_sum = [], 0.0
        for chunk in self._chunks(clients):
            update, losses = self.train_chunk(global_params, chunk)
            updates.append(update)
            loss_sum += float(losses.sum())
        return updates, loss_sum / max(len(clients), 1)

    def train_chunk(self, global_params, clients):
        spec, model = self.spec, self.model
        device = next(model.parameters()).device
        names = list(trainable_parameters(model))
        n = len(clients)
        params = {k: global_params[k].to(device).unsqueeze(0).repeat(n, *[1] * global_params[k].dim())
                  for k in names}
        exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        batch = [t.to(device) for t in stack_client_batches(clients, model.use_views, model.max_seq_length)]

        def loss_fn(p, *data):
            return functional_call(self.objective, {"model." + k: v for k, v in p.items()}, data)

        step_fn = vmap(grad_and_value(loss_fn), randomness="different")
        beta1, beta2 = spec.betas
        model.train()
        for step in range(1, spec.local_epochs + 1):
            grads, losses = step_fn(params, *batch)
            with torch.no_grad():
                sq = sum(g.pow(2).reshape(n, -1).sum(1) for g in grads.values())
                coef = (spec.clip_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
                bc1 = 1 - beta1 ** step
                bc2_sqrt = math.sqrt(1 - beta2 ** step)
                for k in names:
                    g = grads[k] * coef.view(n, *[1] * (grads[k].dim() - 1))
                    if spec.weight_decay:
                        g = g.add(params[k], alpha=spec.weight_decay)
                    exp_avg[k].lerp_(g, 1 - beta1)
                    exp_avg_sq[k].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denom = (exp_avg_sq[k].sqrt() / bc2_sqrt).add_(spec.eps)
                    params[k].addcdiv_(exp_avg[k], denom, value=-spec.learning_rate / bc1)
        weights = torch.tensor([spec.client_weight(c) for c in clients], dtype=torch.float64, device=device)
        share = weights / weights.sum()
        mean = {k: (params[k].double() * share.view(n, *[1] * (params[k].dim() - 1))).sum(0)
                .to(params[k].dtype) for k in names}
        return ParameterUpdate(mean, float(weights.sum()), n), losses.detach()
