"""Client objective of LUMOS (§3, §4.3, §4.4): next-item CE + λ_CL · tri-view InfoNCE."""
import torch
import torch.nn.functional as F


def tri_view_infonce(anchor, positives, negatives, temperature=0.07):
    """Tri-view contrastive loss, eq. (1)-(3) of LUMOS.

    ``anchor`` h_u ``[..., d]``; ``positives`` ``[..., P, d]`` (future and paraphrase
    views); ``negatives`` ``[..., N, d]`` (counterfactual view).  With cosine
    similarity sim and temperature τ::

        pos(u) = Σ_p exp(sim(h_u, h_p) / τ),   neg(u) = Σ_n exp(sim(h_u, h_n) / τ)
        L_CL   = -log(pos(u) / (pos(u) + neg(u)))

    computed in log space.  With no negative view (the Table 2 ablation) neg(u)
    counts one orthogonal view, exp(0 / τ) = 1, so the positives are still pulled in.
    Returns the loss per anchor (shape ``[...]``).
    """
    a = F.normalize(anchor, dim=-1).unsqueeze(-2)
    pos = (a * F.normalize(positives, dim=-1)).sum(-1) / temperature
    if negatives.shape[-2] == 0:
        neg = torch.zeros(pos.shape[:-1] + (1,), dtype=pos.dtype, device=pos.device)
    else:
        neg = (a * F.normalize(negatives, dim=-1)).sum(-1) / temperature
    log_pos = torch.logsumexp(pos, dim=-1)
    return torch.logsumexp(torch.cat([pos, neg], dim=-1), dim=-1) - log_pos


def masked_next_item_ce(seq_output, item_embeddings, targets):
    """Mean cross-entropy over the positions whose target is a real item (id > 0).

    ``seq_output`` ``[..., d]`` and ``targets`` ``[...]``; logits are the dot
    products with every item embedding, as RecBole's CE loss computes them.
    """
    logits = seq_output @ item_embeddings.t()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    mask = (targets.reshape(-1) > 0).to(ce.dtype)
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)
