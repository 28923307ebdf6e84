"""Fusion of local models' ranked lists into one ranking (L³Rec paper §4.3.2, Table 6).

All functions work on a batch of users at once.  ``ranked`` is a LongTensor
``(B, q, N)``: for user ``b`` and local model ``j``, the item ids that model
ranked best first (``-1`` marks an empty slot).  ``weights`` is ``(B, q)``,
zero where user ``b`` is not in community ``j`` (``j ∉ C(u)``).  Each function
returns ``(B, num_items)`` scores; items that no model listed score 0.

* :func:`count_fusion` -- the number of relevant local models listing the item
  (ties broken by RRF, which never outweighs one more vote);
* :func:`rrf` -- eq. 5, ``Σ_j 1 / (k + rank_j(u, i))``, ``k = 0`` by default;
* :func:`weighted_rrf` -- eq. 6, ``Σ_j w_u^(j) / (k + rank_j(u, i))``, with the
  weights divided by their sum per user as LOCA does (same ranking);
* :func:`validation_softmax_weights` -- Table 6 "wRRF(LLM)": per user, a softmax
  over the relevant local models of each model's NDCG@5 on that user's
  held-out validation item;
* :func:`with_global_fallback` -- eq. 7, the global model's scores for users in
  no community.
"""
import torch


def _scatter_rank_contributions(ranked, per_rank, num_items):
    """Sum ``per_rank`` (B, q, N) into item scores (B, num_items), skipping empty slots."""
    batch = ranked.shape[0]
    per_rank = per_rank * (ranked >= 0)
    scores = torch.zeros(batch, num_items, dtype=per_rank.dtype, device=ranked.device)
    scores.scatter_add_(1, ranked.clamp_min(0).reshape(batch, -1), per_rank.reshape(batch, -1))
    return scores


def _reciprocal_ranks(ranked, k):
    """``1 / (k + rank)`` for ranks 1..N, shaped to broadcast over (B, q, N)."""
    ranks = torch.arange(1, ranked.shape[-1] + 1, device=ranked.device, dtype=torch.float32)
    return 1.0 / (float(k) + ranks)


def weighted_rrf(ranked, weights, num_items, k=0, normalize=True):
    """Eq. 6: ``Σ_j w_u^(j) / (k + rank_j(u, i))`` over the user's communities."""
    weights = weights.to(torch.float32)
    if normalize:
        total = weights.sum(1, keepdim=True)
        weights = torch.where(total > 0, weights / total.clamp_min(1e-12), weights)
    per_rank = weights[:, :, None] * _reciprocal_ranks(ranked, k)
    return _scatter_rank_contributions(ranked, per_rank, num_items)


def rrf(ranked, member, num_items, k=0):
    """Eq. 5: ``Σ_{j ∈ C(u)} 1 / (k + rank_j(u, i))`` (reciprocal rank fusion)."""
    return weighted_rrf(ranked, (member > 0).to(torch.float32), num_items, k, normalize=False)


def count_fusion(ranked, member, num_items, tie_break=True):
    """Number of the user's local models that list the item ("Count" of Table 6).

    With ``tie_break``, RRF (k = 0) scaled below one vote orders items with the
    same count, so the ranking is deterministic; the integer part is the count.
    """
    member = (member > 0).to(torch.float32)
    votes = member[:, :, None].expand(ranked.shape)
    counts = _scatter_rank_contributions(ranked, votes, num_items)
    if tie_break:
        q = ranked.shape[1]
        counts = counts + rrf(ranked, member, num_items, k=0) / (q + 1.0)
    return counts


def validation_softmax_weights(valid_ndcg, member, temperature=1.0):
    """Per-user softmax of each relevant local model's validation NDCG@5 ("wRRF(LLM)").

    ``valid_ndcg`` is ``(B, q)``; models outside the user's communities get
    weight 0, and users in no community get all-zero rows.
    """
    member = member > 0
    logits = valid_ndcg.to(torch.float32) / float(temperature)
    logits = logits.masked_fill(~member, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    return torch.nan_to_num(weights, nan=0.0) * member


def fuse(method, ranked, affinity, num_items, k=0, valid_ndcg=None, temperature=1.0):
    """Dispatch on ``method`` in count | rrf | wrrf_cf | wrrf_valid."""
    if method == "count":
        return count_fusion(ranked, affinity, num_items)
    if method == "rrf":
        return rrf(ranked, affinity, num_items, k)
    if method == "wrrf_cf":
        return weighted_rrf(ranked, affinity, num_items, k)
    if method == "wrrf_valid":
        if valid_ndcg is None:
            raise ValueError("fusion 'wrrf_valid' needs per-user validation NDCG of each local model")
        return weighted_rrf(ranked, validation_softmax_weights(valid_ndcg, affinity, temperature),
                            num_items, k)
    raise ValueError(f"fusion must be one of {FUSIONS}, got {method!r}")


FUSIONS = ("count", "rrf", "wrrf_cf", "wrrf_valid")


def with_global_fallback(fused, global_scores, in_community):
    """Eq. 7: the global model's scores for users in no community (``in_community`` (B,) bool)."""
    return torch.where(in_community[:, None], fused, global_scores.to(fused.dtype))
