"""Vectorised engine: many clients' local updates at once, exactly (LUMOS §3 at scale).

Clients of a round are sorted by their number of rows (then row length) and cut
into chunks; each chunk trains every client's own copy of the parameters at once
with ``torch.func.vmap`` over ``grad(functional_call(client_loss))``.  Per-client
parameters live as the rows of one ``[clients, P]`` buffer; rows are padded
(padding rows have no target, so they add nothing to loss or gradient);
gradients are clipped per client and the client optimiser
(:func:`~recbole_llm.federated.client_update.client_optimizer`: SGD, Adam or AdamW)
steps the whole buffer at once -- each is elementwise, so that is every client's own
step.  The result equals
:class:`~recbole_llm.federated.client_update.SequentialEngine` up to float
rounding.  A chunk is sent to the server as one :class:`ParameterUpdate` holding
the weighted mean of its clients and their total weight, which keeps FedAvg exact.

Work removed rather than parallelised (profiled on CPU, see docs/lumos.md):

* one optimiser call per step on the flat buffer instead of ~10 ops per tensor;
* for causal backbones, a chunk's inputs are cut after its longest row: outputs
  at earlier positions do not depend on the right padding, so this is exact;
* dropout masks drawn with ``torch.rand`` (same Bernoulli(1 - p) keep mask and
  1/(1 - p) scaling as ``nn.Dropout``; ``bernoulli_`` is ~3x slower on CPU).
"""
from contextlib import contextmanager

import torch
from torch.func import functional_call, grad_and_value, vmap

from recbole_llm.federated.client_update import (client_batch, client_optimizer, flatten_parameters,
                                                 parameter_views, trainable_parameters)
from recbole_llm.federated.server import ParameterUpdate
from recbole_llm.nn.rand_mask_dropout import RandMaskDropout


class ClientObjective(torch.nn.Module):
    """``forward(batch) = model.client_loss(batch)`` so ``functional_call`` can run it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *batch):
        return self.model.client_loss(*batch)


def stack_client_batches(clients, use_views, max_len, trim=False):
    """Pad every client's rows to the chunk's largest row count and stack them.

    ``trim`` (causal backbones only) cuts the right padding shared by all rows:
    ``[..., :longest row]`` for the rows and, apart, for the views.
    """
    rows = max(c.num_rows for c in clients)
    n = len(clients)
    width = max(int(c.lengths.max()) for c in clients) if trim else max_len
    inputs = torch.zeros(n, rows, width, dtype=torch.long)
    targets = torch.zeros_like(inputs)
    lengths = torch.ones(n, rows, dtype=torch.long)  # padding rows: length 1, no target
    for i, c in enumerate(clients):
        inputs[i, :c.num_rows] = c.inputs[:, :width]
        targets[i, :c.num_rows] = c.targets[:, :width]
        lengths[i, :c.num_rows] = c.lengths
    batch = [inputs, targets, lengths]
    if use_views:
        views = [client_batch(c, True) for c in clients]
        view_lengths = torch.stack([v[4] for v in views])
        view_width = int(view_lengths.max()) if trim else max_len
        batch += [torch.stack([v[3][:, :view_width] for v in views]), view_lengths]
    return batch


@contextmanager
def rand_mask_dropout_layers(model):
    """Within the block, the model's ``nn.Dropout`` layers draw their masks with ``torch.rand``."""
    layers = [m for m in model.modules() if type(m) is torch.nn.Dropout and m.p > 0]
    for layer in layers:
        layer.forward = RandMaskDropout.forward.__get__(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


class VectorizedEngine:
    """Exact batched client updates; see the module docstring."""

    name = "vectorized"

    def __init__(self, model, spec, chunk_elements=None):
        self.model, self.spec = model, spec
        self.objective = ClientObjective(model)
        if chunk_elements is None:  # CPU: small chunks keep stacked states in cache (measured)
            chunk_elements = 5e7 if next(model.parameters()).is_cuda else 2e6
        self.chunk_elements = float(chunk_elements)  # budget for C * rows * L * n_items logits

    def chunks(self, clients):
        """The clients in groups trained together: similar row counts, within ``chunk_elements``."""
        per_row = self.model.max_seq_length * self.model.n_items
        order = sorted(clients, key=lambda c: (c.num_rows, int(c.lengths.max())))
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
        for chunk in self.chunks(clients):
            update, losses = self.train_chunk(global_params, chunk)
            updates.append(update)
            loss_sum += float(losses.sum())
        return updates, loss_sum / max(len(clients), 1)

    def train_chunk(self, global_params, clients):
        """Every client of ``clients`` from ``global_params``; their weighted mean as one update."""
        shapes = {k: global_params[k].shape for k in trainable_parameters(self.model)}
        device = next(self.model.parameters()).device
        flat = flatten_parameters(global_params, shapes, device).repeat(len(clients), 1)
        losses = self.train_rows(flat, shapes, clients)
        weights = torch.tensor([self.spec.client_weight(c) for c in clients], dtype=torch.float64, device=device)
        mean = ((flat.double() * (weights / weights.sum()).unsqueeze(1)).sum(0)).to(flat.dtype)
        tensors = {k: v[0].clone() for k, v in parameter_views(mean.unsqueeze(0), shapes).items()}
        users = [c.user_id for c in clients]
        source = f"users {users}" if len(users) <= 4 else f"{len(users)} users {users[:3]}..."
        return ParameterUpdate(tensors, float(weights.sum()), len(clients), source=source), losses

    def train_rows(self, flat, shapes, clients):
        """Train client i's model, row i of ``flat`` ([n, P], updated in place); returns the last losses."""
        spec, model = self.spec, self.model
        device, n = flat.device, len(clients)
        flat.requires_grad_(False)
        params = parameter_views(flat, shapes)
        optimizer = client_optimizer(spec, [flat])
        batch = [t.to(device) for t in stack_client_batches(clients, model.use_views, model.max_seq_length,
                                                            trim=model.causal)]

        def loss_fn(p, *data):
            return functional_call(self.objective, {"model." + k: v for k, v in p.items()}, data)

        step_fn = vmap(grad_and_value(loss_fn), randomness="different")
        model.train()
        with rand_mask_dropout_layers(model):
            for _ in range(spec.local_epochs):
                grads, losses = step_fn(params, *batch)
                with torch.no_grad():
                    g = torch.cat([grads[k].reshape(n, -1) for k in shapes], 1)
                    # clip_grad_norm_ of each client: g * min(1, max_norm / (||g|| + 1e-6))
                    coef = (spec.clip_norm / (torch.linalg.vector_norm(g, dim=1) + 1e-6)).clamp_(max=1.0)
                    flat.grad = g.mul_(coef.unsqueeze(1))
                optimizer.step()  # elementwise: one step on [n, P] is every client's own step
        flat.grad = None
        return losses.detach()
