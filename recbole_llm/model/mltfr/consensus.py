"""MLTFR semantic-consensus expert (§2.2.2, eq. 13-14; Algorithm 1 lines 13-15).

Fisher importance (eq. 13): F_m = E_{x~D, y~p_theta(y|x)} ||grad_{theta_m} log p_theta(y|x)||^2,
summed over the entries of expert m's parameters (the trace of its diagonal
Fisher), so F_m is a positive scalar.  y is *sampled from the model's own
next-item distribution* (softmax over the backbone's full-ranking scores), as
the equation says -- not the observed next item (that would be the "empirical
Fisher").  Because the score function has zero mean under y ~ p_theta, the
cross terms of a mini-batch gradient vanish in expectation, so
||grad sum_{x in batch} log p||^2 / |batch| is an unbiased estimate of the
per-sample expectation; we average it over a few training batches.  In a distributed
run (RecBole DDP) each rank holds its own shard of those batches: the ranks average
their estimates (one all-reduce), so every rank builds the same consensus expert.

Consensus (eq. 14): theta_SC = sum_m F_m theta_m / sum_m F_m over the experts of
one homogeneous group (same class and d_llm, hence same parameter shapes).
"""
from collections import defaultdict
from logging import getLogger

import torch
import torch.distributed as dist


def homogeneous_group(experts):
    """Indices of the largest group of experts with identical architecture and d_llm.

    With mixed d_llm only that group is fused (§4.1.1); the choice is logged.
    """
    groups = defaultdict(list)
    for m, expert in enumerate(experts):
        groups[(type(expert).__name__, expert.d_llm)].append(m)
    (kind, d_llm), members = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[1][0]))
    if len(groups) > 1:
        getLogger().info(f"MLTFR: experts are heterogeneous ({dict(groups)}); the semantic "
                         f"consensus fuses the largest homogeneous group {members} ({kind}, d_llm={d_llm})")
    return members


def fisher_importance(model, batches, experts):
    """Eq. 13 for each expert in ``experts`` (a list of modules); returns a float tensor."""
    sums = torch.zeros(len(experts), dtype=torch.float64)
    count = 0
    was_training = model.training
    model.eval()  # no Gumbel noise, no dropout: the converged model's own distribution
    try:
        for interaction in batches:
            log_probs = model.item_log_probs(interaction)            # B x n_items
            with torch.no_grad():
                y = torch.multinomial(log_probs.exp(), 1)             # y ~ p_theta(y | x)
            log_likelihood = log_probs.gather(1, y).sum()
            params = [p for e in experts for p in e.parameters()]
            grads = torch.autograd.grad(log_likelihood, params, allow_unused=True)
            offset = 0
            for m, expert in enumerate(experts):
                n = len(list(expert.parameters()))
                sq = sum(float(g.pow(2).sum()) for g in grads[offset:offset + n] if g is not None)
                sums[m] += sq / log_probs.shape[0]
                offset += n
            count += 1
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized():  # DDP: the ranks' shards, one estimate
        totals = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64)])
        totals = totals.to(next(model.parameters()).device)
        dist.all_reduce(totals)
        sums, count = totals[:-1].cpu(), int(totals[-1])
    if count == 0:
        raise ValueError("MLTFR: no training batch to estimate Fisher importance on")
    return (sums / count).float() + 1e-12  # strictly positive weights


def consensus_parameters(experts, weights):
    """Eq. 14: Fisher-weighted average of the experts' parameters (a state dict)."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    states = [e.state_dict() for e in experts]
    total = weights.sum()
    return {name: sum(w * s[name].float() for w, s in zip(weights, states)) / total
            for name in states[0]}
