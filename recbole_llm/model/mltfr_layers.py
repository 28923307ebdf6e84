"""MLTFR building blocks: one token-filtering expert (§2.1, eq. 1-10), the LLM-TE/RE
experts of Fig. 1, and the item-level gate over experts (§2.2.1, eq. 11-12).

Shapes: E is the backbone's input-sequence embedding (B x L x d_emb), ``mask`` is
True at real items (padding False), W_voc is an LLM's (pooled) token-embedding
table (N x d_llm).  Every expert returns a knowledge matrix W_expert (B x L x d_emb)
that is zero at padding positions.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

TOKEN_FILTERS = ("user", "random", "all")
EXPERT_MODES = ("filter", "te", "re")


def user_interest(E, mask):
    """Eq. 1: mean of the sequence embeddings over real (non-padding) items."""
    m = mask.unsqueeze(-1).to(E.dtype)
    return (E * m).sum(1) / m.sum(1).clamp(min=1.0)


def init_small(linear, std=0.02):
    """Initialise a layer that writes into E like RecBole initialises item embeddings (N(0, 0.02))."""
    nn.init.normal_(linear.weight, std=std)
    nn.init.zeros_(linear.bias)


def straight_through_top_k(scores, k, tau, noisy):
    """Eq. 4-6: Gumbel-softmax routing, hard Top-K, straight-through weights.

    ``scores`` (B x N) are routing logits.  Returns the Top-K indices (B x K) and
    the straight-through weights b_st at those indices (B x K): exactly 1 in the
    forward pass, with the gradient of the soft distribution p.
    """
    if noisy:
        uniform = torch.rand_like(scores).clamp_(1e-10, 1.0 - 1e-10)
        scores = scores - torch.log(-torch.log(uniform))  # + Gumbel(0, 1)
    p = torch.softmax(scores / tau, dim=-1)
    index = torch.topk(p, k, dim=-1).indices
    hard = torch.zeros_like(p).scatter_(-1, index, 1.0)
    b_st = (hard - p).detach() + p
    return index, b_st.gather(-1, index)


class TokenFilterExpert(nn.Module):
    """One MLTFR expert: user-guided token filtering + semantic integration layer.

    Eq. 2-3: aligned vocabulary W_voc W_align + b_align and cosine routing logits
    against the user interest; eq. 4-7: Top-K original token embeddings W_domain
    (scaled by the straight-through weights so gradients reach W_align); eq. 8-10:
    multi-head cross-attention with Q from E and K/V from W_domain.

    ``token_filter``: ``user`` (the paper), ``random`` (K random tokens, ablation),
    ``all`` (attend over the whole pool, ablation).
    """

    def __init__(self, d_emb, d_llm, num_tokens, n_heads=4, tau=1.0, token_filter="user"):
        super().__init__()
        if d_emb % n_heads:
            raise ValueError(f"MLTFR: hidden size {d_emb} is not divisible by {n_heads} heads")
        if not 0.3 <= tau <= 1.0:
            raise ValueError(f"MLTFR: gumbel_tau must lie in [0.3, 1] (paper §2.1.1), got {tau}")
        if token_filter not in TOKEN_FILTERS:
            raise ValueError(f"MLTFR: token_filter must be one of {TOKEN_FILTERS}, got {token_filter!r}")
        self.d_llm, self.num_tokens, self.n_heads = d_llm, num_tokens, n_heads
        self.tau, self.token_filter = tau, token_filter
        self.W_align = nn.Linear(d_llm, d_emb)      # eq. 2 (weight^T = W_align, bias = b_align)
        self.W_q = nn.Linear(d_emb, d_emb)          # eq. 9
        self.W_k = nn.Linear(d_llm, d_emb)
        self.W_v = nn.Linear(d_llm, d_emb)
        self.W_o = nn.Linear(d_emb, d_emb)          # eq. 8
        init_small(self.W_o)  # start near the bare backbone: ID embeddings are ~N(0, 0.02)

    def routing_logits(self, E, mask, W_voc):
        """Eq. 1-3: cosine similarity of every aligned token to the user interest (B x N)."""
        voc_align = self.W_align(W_voc)
        interest = user_interest(E, mask)
        return F.normalize(interest, dim=-1) @ F.normalize(voc_align, dim=-1).T

    def select_tokens(self, E, mask, W_voc):
        """Indices (B x K) of the selected tokens and their straight-through weights (B x K)."""
        B, N = E.shape[0], W_voc.shape[0]
        if self.token_filter == "user":
            return straight_through_top_k(self.routing_logits(E, mask, W_voc), self.num_tokens,
                                          self.tau, noisy=self.training)
        index = torch.rand(B, N, device=E.device).topk(self.num_tokens, dim=-1).indices
        return index, torch.ones(index.shape, device=E.device, dtype=E.dtype)

    def _heads(self, x):
        B, T, d = x.shape
        return x.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, E, mask, item_seq, W_voc):
        if self.token_filter == "all":  # keys/values shared by the batch, no selection
            keys = self.W_k(W_voc).unsqueeze(0).expand(E.shape[0], -1, -1)
            values = self.W_v(W_voc).unsqueeze(0).expand(E.shape[0], -1, -1)
        else:
            index, weight = self.select_tokens(E, mask, W_voc)
            # (b_st * W_voc[I]) W_k + c == b_st * (W_voc[I] W_k) + c: project each selected token once.
            tokens, inverse = torch.unique(index, return_inverse=True)
            kv = F.linear(W_voc[tokens], torch.cat([self.W_k.weight, self.W_v.weight]))
            keys, values = (kv[inverse] * weight.unsqueeze(-1)).split(E.shape[-1], dim=-1)
            keys, values = keys + self.W_k.bias, values + self.W_v.bias
        q, k, v = self._heads(self.W_q(E)), self._heads(keys), self._heads(values)
        attended = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v  # eq. 10
        out = attended.transpose(1, 2).reshape(E.shape)
        return self.W_o(out) * mask.unsqueeze(-1).to(E.dtype)


class DirectTokenExpert(nn.Module):
    """LLM-TE / LLM-RE of Fig. 1: projected token embeddings added to E directly.

    Our reading of the paper's one-sentence description: item i of the sequence
    gets the pooled token row ``i mod N``, projected by W_align (no filtering, no
    attention).  LLM-RE passes a random table of the same shape instead of W_voc.
    """

    def __init__(self, d_emb, d_llm, **_):
        super().__init__()
        self.d_llm = d_llm
        self.W_align = nn.Linear(d_llm, d_emb)
        init_small(self.W_align)

    def forward(self, E, mask, item_seq, W_voc):
        rows = W_voc[item_seq.remainder(W_voc.shape[0])]
        return self.W_align(rows) * mask.unsqueeze(-1).to(E.dtype)


def build_expert(mode, d_emb, d_llm, **kwargs):
    if mode not in EXPERT_MODES:
        raise ValueError(f"MLTFR: expert_mode must be one of {EXPERT_MODES}, got {mode!r}")
    if mode == "filter":
        return TokenFilterExpert(d_emb, d_llm, **kwargs)
    return DirectTokenExpert(d_emb, d_llm, **kwargs)


class ItemLevelGate(nn.Module):
    """Eq. 11-12: per-position softmax over experts, W_base = sum_m G_m * W_expert_m."""

    def __init__(self, d_emb, n_experts, max_len):
        super().__init__()
        self.W = nn.Linear(d_emb, n_experts, bias=False)         # rows W_m (1 x d_emb)
        self.b = nn.Parameter(torch.zeros(n_experts, max_len))   # b_m (1 x k)

    def forward(self, E, expert_outputs):
        """``expert_outputs``: list of B x L x d; returns (W_base, gate weights B x L x n)."""
        L = E.shape[1]
        if L > self.b.shape[1]:
            raise ValueError(f"MLTFR gate: sequence length {L} > MAX_ITEM_LIST_LENGTH {self.b.shape[1]}")
        gate = torch.softmax(self.W(E) + self.b[:, :L].T, dim=-1)
        stacked = torch.stack(expert_outputs, dim=-1)            # B x L x d x n
        return (stacked * gate.unsqueeze(2)).sum(-1), gate
