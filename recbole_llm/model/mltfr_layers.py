"""MLTFR building blocks: one token-filtering expert (§2.1, eq. 1-10), the LLM-TE/RE
experts of Fig. 1, the item-level gate over experts (§2.2.1, eq. 11-12), and the
batched form of all three that MLTFR trains with (same maths, fewer and larger GEMMs).

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
    if noisy:  # + Gumbel(0, 1) = -log(-log(U)), in place (exponential_ is ~4x slower on CPU)
        gumbel = torch.rand_like(scores).clamp_(1e-10, 1.0 - 1e-10).log_().neg_().log_()
        scores = scores - gumbel
    p = torch.softmax(scores / tau, dim=-1)
    index = torch.topk(scores, k, dim=-1).indices  # softmax is monotonic: the Top-K of p
    # b_st = (hard - p).detach() + p, read only at the K selected entries (where hard = 1):
    # same value and gradient without building the dense B x N one-hot.
    p_top = p.gather(-1, index)
    return index, (1.0 - p_top).detach() + p_top


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
        gate = self.weights(E)
        stacked = torch.stack(expert_outputs, dim=-1)            # B x L x d x n
        return (stacked * gate.unsqueeze(2)).sum(-1), gate

    def weights(self, E):
        """Eq. 11: G (B x L x n), softmax over experts at each position."""
        L = E.shape[1]
        if L > self.b.shape[1]:
            raise ValueError(f"MLTFR gate: sequence length {L} > MAX_ITEM_LIST_LENGTH {self.b.shape[1]}")
        return torch.softmax(self.W(E) + self.b[:, :L].T, dim=-1)


# ----- batched experts: the loop over TokenFilterExpert modules as stacked GEMMs ----------
def _stacked(layers, dim=0):
    """Weights and biases of same-shaped nn.Linear layers concatenated: one GEMM serves them all."""
    return torch.cat([layer.weight for layer in layers], dim), torch.cat([layer.bias for layer in layers])


def batched_token_attention(experts, E, mask, W_voc):
    """Eq. 1-10 of TokenFilterExpert for ``experts`` that read the same W_voc (N x d_llm).

    Same maths as calling each expert (before its W_o), with the experts' weights
    concatenated: the table is projected once by [W_align_1..n] (routing) and the
    selected tokens once by [W_k_1, W_v_1, ..., W_k_n, W_v_n].  Returns the attended
    values (B x L x n x d), the input of the gated W_o of :func:`gated_expert_output`.
    """
    first, n = experts[0], len(experts)
    (B, L, d), N, K, H = E.shape, W_voc.shape[0], first.num_tokens, first.n_heads
    kv_weight, kv_bias = _stacked([layer for e in experts for layer in (e.W_k, e.W_v)])
    kv_bias = kv_bias.view(n, 1, 1, 2 * d)
    if first.token_filter == "all":  # keys/values of the whole table, shared by the batch: n x 1 x N x 2d
        kv = F.linear(W_voc, kv_weight).view(N, n, 2 * d).transpose(0, 1).unsqueeze(1) + kv_bias
    else:
        if first.token_filter == "user" and B * K >= N:  # eq. 2-6, all experts' logits n x B x N at once
            align_weight, align_bias = _stacked([e.W_align for e in experts])
            voc_align = (F.linear(W_voc, align_weight) + align_bias).view(N, n, d).transpose(0, 1)
            interest = F.normalize(user_interest(E, mask), dim=-1)
            logits = interest @ F.normalize(voc_align, dim=-1).transpose(1, 2)
            index, weight = straight_through_top_k(logits, K, first.tau, noisy=first.training)
        elif first.token_filter == "user":  # large table: one expert's B x N logits at a time (cache)
            index, weight = (torch.stack(t) for t in zip(*(e.select_tokens(E, mask, W_voc) for e in experts)))
        else:  # random: K random tokens per user and expert
            index = torch.rand(n, B, N, device=E.device).topk(K, dim=-1).indices
            weight = torch.ones(index.shape, device=E.device, dtype=E.dtype)
        # (b_st * W_voc[I]) W_k + c == b_st * (W_voc[I] W_k) + c.  When an expert's B K selections
        # cover the table, project the whole table once by all experts' stacked [W_k, W_v];
        # otherwise (large table, no pool) each expert projects only its own selected rows.
        if B * K >= N:
            projected = F.linear(W_voc, kv_weight).view(N, n, 2 * d)    # N x n x 2d
            expert_id = torch.arange(n, device=E.device).view(n, 1, 1)
            kv = projected[index, expert_id]                             # n x B x K x 2d
        else:
            rows = W_voc[index.view(n, -1)]                              # n x B K x d_llm
            kv = torch.bmm(rows, kv_weight.view(n, 2 * d, -1).transpose(1, 2)).view(n, B, K, 2 * d)
        kv = kv * weight.unsqueeze(-1) + kv_bias
    keys, values = kv.split(d, dim=-1)
    # 1/sqrt(d/H) of eq. 10 folded into W_q (n d x d entries) instead of the n B H L K scores
    scale = 1.0 / math.sqrt(d // H)
    q_weight, q_bias = _stacked([e.W_q for e in experts])
    q = F.linear(E, q_weight * scale, q_bias * scale)                    # B x L x n d
    # Queries are independent rows of eq. 10: with keys shared by the batch ("all") the B users'
    # queries stack into one n x H x (B L) block instead of copying the keys B times.
    users, rows = (B, L) if kv.shape[1] == B else (1, B * L)
    q = q.view(B, L, n, H, d // H).permute(2, 0, 1, 3, 4).reshape(n, users, rows, H, d // H)
    q = q.transpose(2, 3).contiguous()                                   # n x users x H x rows x d/H

    def heads(x):  # contiguous per (expert, user, head): the batched matmuls stay on plain GEMMs
        return x.reshape(n, users, -1, H, d // H).transpose(2, 3).contiguous()  # n x users x H x T x d/H

    k, v = heads(keys), heads(values)
    attended = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v        # eq. 10 (q pre-scaled)
    return attended.transpose(2, 3).reshape(n, B, L, d).permute(1, 2, 0, 3)


def gated_expert_output(gate, attended, experts, mask):
    """Eq. 8 and 11-12 together: sum_m G_m (W_o_m(attended_m)) at real items, as one GEMM.

    sum_m G_m (a_m W_o_m^T + c_m) = [G_1 a_1, ..., G_n a_n] [W_o_1, ..., W_o_n]^T + G [c_1; ...; c_n].
    """
    B, L, n, d = attended.shape
    weight, bias = _stacked([e.W_o for e in experts], dim=1)             # d x n d, n d
    gated = (attended * gate.unsqueeze(-1)).reshape(B, L, n * d)
    out = F.linear(gated, weight) + gate @ bias.view(n, d)
    return out * mask.unsqueeze(-1).to(out.dtype)
