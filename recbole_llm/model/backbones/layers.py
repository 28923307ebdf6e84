"""Token mixers of the FMLPRec, LinRec and BSARec backbones, for RecBole's ``TransformerEncoder``.

Each backbone is RecBole's Transformer block with its self-attention replaced
(:func:`replace_token_mixers` swaps ``layer.multi_head_attention`` of every
layer; RecBole's point-wise ``FeedForward`` stays):

* :class:`LearnableFilterLayer` -- FMLP-Rec (Zhou et al., WWW 2022, filter layer):
  FFT over the sequence axis, element-wise product with a learnable complex
  filter, inverse FFT, then dropout, residual and LayerNorm.
* :class:`L2NormLinearAttention` -- LinRec (Liu et al., SIGIR 2023, L2-normalised linear attention):
  ``rho(Q) (sigma(K)^T V) / sqrt(d)`` with ELU then L2 normalisation of every
  query and key vector; ``K^T V`` first makes the cost linear in sequence length.
* :class:`BeyondSelfAttention` -- BSARec (Shin et al., AAAI 2024, BSA layer):
  ``alpha * (LowPass(X) + beta * HighPass(X)) + (1 - alpha) * SelfAttention(X)``,
  where the low pass keeps the ``c // 2 + 1`` lowest rfft bins and ``beta`` is learnt.

Every mixer takes ``(hidden_states, attention_mask)`` with RecBole's extended
additive mask (``SequentialRecommender.get_attention_mask``) and zeroes padded
positions before mixing, so padding never reaches a real item.  RecBole pads on
the right; on zero-padded input a circular (FFT) filter gives the same output at
the last item as the papers' left-padded layout, because circular filters
commute with rolling the sequence.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.layers import MultiHeadAttention

from recbole_llm.validation import integer


def item_positions(attention_mask):
    """``[B, L]`` bool, True at real items, from RecBole's ``[B, 1, 1 or L, L]`` additive mask.

    The last query row of both the causal and the bidirectional mask allows
    exactly the non-padding keys.
    """
    return attention_mask[:, 0, -1, :] >= 0


def check_length(name, value, low, high=None):
    """Raise ``ValueError`` unless ``value`` is an int in ``[low, high]`` (no upper bound if None)."""
    return integer(low=low, high=high).check(name, value)


def replace_token_mixers(encoder, make_mixer):
    """Swap the self-attention of every layer of a RecBole ``TransformerEncoder`` for ``make_mixer()``."""
    for layer in encoder.layer:
        layer.multi_head_attention = make_mixer()
    return encoder


def _check_seq_len(x, max_seq_length):
    if x.shape[1] != max_seq_length:
        raise ValueError(f"sequence length {x.shape[1]} differs from MAX_ITEM_LIST_LENGTH "
                         f"{max_seq_length} the frequency filters were built for")


class LearnableFilterLayer(nn.Module):
    """FMLP-Rec's filter layer: ``LayerNorm(X + Dropout(IFFT(W * FFT(X))))``."""

    def __init__(self, max_seq_length, hidden_size, hidden_dropout_prob, layer_norm_eps):
        super().__init__()
        self.max_seq_length = max_seq_length
        # one complex weight per (frequency, channel); 0.02 * N(0, 1) as in the authors' code
        self.complex_weight = nn.Parameter(
            torch.randn(1, max_seq_length // 2 + 1, hidden_size, 2) * 0.02)
        self.out_dropout = nn.Dropout(hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def filter(self, x):
        """The learnable frequency-domain filter alone: ``irfft(W * rfft(x))`` over dim 1."""
        _check_seq_len(x, self.max_seq_length)
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
        spectrum = spectrum * torch.view_as_complex(self.complex_weight)
        return torch.fft.irfft(spectrum, n=x.shape[1], dim=1, norm="ortho")

    def forward(self, hidden_states, attention_mask):
        items = hidden_states * item_positions(attention_mask).unsqueeze(-1)
        return self.LayerNorm(self.out_dropout(self.filter(items)) + hidden_states)


def l2_normalised_linear_attention(query, key, value, key_mask=None):
    """LinRec's attention for ``[..., L, d]`` tensors, in O(L d^2).

    ``rho(Q) = ELU(Q)`` with every row (query vector) L2-normalised,
    ``sigma(K) = ELU(K)`` with every key vector L2-normalised; the result is
    ``rho(Q) (sigma(K)^T V) / sqrt(d)``.  ``key_mask`` (``[..., L, 1]``, 1 at real
    items) removes padded keys.
    """
    q = F.normalize(F.elu(query), p=2, dim=-1)
    k = F.normalize(F.elu(key), p=2, dim=-1)
    if key_mask is not None:
        k = k * key_mask
    return q @ (k.transpose(-2, -1) @ value) / math.sqrt(query.shape[-1])


class L2NormLinearAttention(MultiHeadAttention):
    """RecBole's multi-head attention block with LinRec's linear attention in place of softmax."""

    def forward(self, input_tensor, attention_mask):
        def heads(x):
            return self.transpose_for_scores(x).permute(0, 2, 1, 3)  # [B, h, L, d]

        key_mask = item_positions(attention_mask)[:, None, :, None].to(input_tensor.dtype)
        context = l2_normalised_linear_attention(
            heads(self.query(input_tensor)), heads(self.key(input_tensor)),
            heads(self.value(input_tensor)), key_mask)
        context = self.attn_dropout(context)
        context = context.permute(0, 2, 1, 3).reshape(input_tensor.shape[0], input_tensor.shape[1], -1)
        hidden_states = self.out_dropout(self.dense(context))
        return self.LayerNorm(hidden_states + input_tensor)


class FrequencyInductiveBias(nn.Module):
    """BSARec's inductive-bias branch: ``LayerNorm(X + Dropout(LPF(X) + beta * HPF(X)))``."""

    def __init__(self, max_seq_length, hidden_size, cutoff, hidden_dropout_prob, layer_norm_eps):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.kept_frequencies = cutoff // 2 + 1  # as in the authors' code: c // 2 + 1 rfft bins
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, hidden_size))
        self.out_dropout = nn.Dropout(hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def low_pass(self, x):
        """Keep the lowest ``kept_frequencies`` rfft bins of ``x`` over dim 1."""
        _check_seq_len(x, self.max_seq_length)
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
        keep = torch.arange(spectrum.shape[1], device=x.device) < self.kept_frequencies
        return torch.fft.irfft(spectrum * keep[None, :, None], n=x.shape[1], dim=1, norm="ortho")

    def forward(self, hidden_states, attention_mask):
        items = hidden_states * item_positions(attention_mask).unsqueeze(-1)
        low = self.low_pass(items)
        rescaled = low + self.sqrt_beta ** 2 * (items - low)
        return self.LayerNorm(self.out_dropout(rescaled) + hidden_states)


class BeyondSelfAttention(nn.Module):
    """BSARec's mixer: ``alpha * inductive_bias(X) + (1 - alpha) * self_attention(X)``."""

    def __init__(self, alpha, max_seq_length, cutoff, n_heads, hidden_size, hidden_dropout_prob,
                 attn_dropout_prob, layer_norm_eps):
        super().__init__()
        self.alpha = alpha
        self.inductive_bias = FrequencyInductiveBias(
            max_seq_length, hidden_size, cutoff, hidden_dropout_prob, layer_norm_eps)
        self.self_attention = MultiHeadAttention(
            n_heads, hidden_size, hidden_dropout_prob, attn_dropout_prob, layer_norm_eps)

    def forward(self, hidden_states, attention_mask):
        return (self.alpha * self.inductive_bias(hidden_states, attention_mask)
                + (1 - self.alpha) * self.self_attention(hidden_states, attention_mask))
