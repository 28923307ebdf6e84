"""FMLPRec, LinRec, CL4SRec, BSARec: layers against hand/numpy computations, shapes,
padding, item_embedding lookup, bad config.  (End-to-end runs: test_backbones_e2e.py.)"""
import math

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.data.transform import construct_transform
from recbole.model.layers import MultiHeadAttention
from torch.utils.flop_counter import FlopCounterMode

from recbole_llm.config import Config
from recbole_llm.model.backbones.layers import (BeyondSelfAttention, FrequencyInductiveBias,
                                               L2NormLinearAttention, LearnableFilterLayer,
                                               l2_normalised_linear_attention)
from recbole_llm.model.backbones.cl4srec import info_nce
from recbole_llm.utils import get_model

N_ITEMS, MAX_LEN = 40, 10
TINY = {"hidden_size": 16, "inner_size": 32, "n_layers": 2, "n_heads": 2,
        "MAX_ITEM_LIST_LENGTH": MAX_LEN, "state": "WARNING", "bsarec_c": 3}
MODELS = ["FMLPRec", "LinRec", "CL4SRec", "BSARec"]


class _Items:
    """The one thing RecBole's sequential models ask of a dataset: the number of items."""

    def num(self, field):
        return N_ITEMS


def _build(name, **overrides):
    config = Config(model=name, dataset="ml-100k", config_dict=dict(TINY, **overrides))
    transform = construct_transform(config)  # BERT4Rec-style models read mask keys it sets
    torch.manual_seed(0)
    model = get_model(name)(config, _Items())
    return model.eval(), config, transform


def _batch(config, lengths=(1, 4, MAX_LEN, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    seq = torch.randint(1, N_ITEMS, (len(lengths), MAX_LEN), generator=g)
    seq[torch.arange(MAX_LEN) >= lengths[:, None]] = 0
    item = config["ITEM_ID_FIELD"]
    return Interaction({item + config["LIST_SUFFIX"]: seq, config["ITEM_LIST_LENGTH_FIELD"]: lengths,
                        item: torch.randint(1, N_ITEMS, (len(lengths),), generator=g)})


# ---------------------------------------------------------------- FMLPRec's filter


def _direct_dft_filter(x, weight):
    """irfft(W * rfft(x)) written as explicit DFT sums (orthonormal), numpy, x: [B, L, H]."""
    length = x.shape[1]
    n = np.arange(length)
    bins = np.arange(length // 2 + 1)
    forward = np.exp(-2j * np.pi * np.outer(bins, n) / length) / np.sqrt(length)  # [K, L]
    spectrum = np.einsum("kl,blh->bkh", forward, x) * weight[None]
    # inverse of a Hermitian spectrum: DC and Nyquist once, the other bins twice
    counts = np.where((bins == 0) | (2 * bins == length), 1.0, 2.0)
    inverse = np.exp(2j * np.pi * np.outer(n, bins) / length) / np.sqrt(length)  # [L, K]
    return np.einsum("lk,bkh->blh", inverse * counts, spectrum).real


@pytest.mark.parametrize("length", [8, 7])
def test_fmlp_filter_matches_a_direct_numpy_dft(length):
    torch.manual_seed(0)
    layer = LearnableFilterLayer(length, 3, 0.0, 1e-12).eval()
    with torch.no_grad():
        layer.complex_weight.normal_()
    x = torch.randn(2, length, 3, dtype=torch.float64)
    weight = torch.view_as_complex(layer.complex_weight.detach().double()).numpy()[0]
    expected = _direct_dft_filter(x.numpy(), weight)
    got = layer.filter(x.to(torch.float32)).detach().double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected - x.numpy()).max() > 0.1  # the filter does something


def test_fmlp_filter_layer_zeroes_padding_then_adds_residual_and_norm():
    torch.manual_seed(0)
    layer = LearnableFilterLayer(6, 4, 0.0, 1e-12).eval()
    x = torch.randn(1, 6, 4)
    mask = torch.where(torch.arange(6) < 4, 0.0, -10000.0).view(1, 1, 1, 6)
    masked = x.clone()
    masked[:, 4:] = 0
    expected = layer.LayerNorm(x + layer.filter(masked))
    torch.testing.assert_close(layer(x, mask), expected)
    with pytest.raises(ValueError, match="sequence length 5 differs from MAX_ITEM_LIST_LENGTH 6"):
        layer(x[:, :5], mask[..., :5])


# ---------------------------------------------------------------- LinRec's attention


def test_linrec_attention_matches_a_hand_computed_case():
    q = torch.tensor([[3.0, 4.0], [-1.0, 0.0]])
    k = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # rho(Q) = rows of ELU(Q) / L2 norm = [[.6, .8], [-1, 0]]; sigma(K) = [[0, 1], [1, 0]]
    # sigma(K)^T V = [[3, 4], [1, 2]]  ->  rho(Q) sigma(K)^T V = [[2.6, 4.0], [-3, -4]]
    expected = torch.tensor([[2.6, 4.0], [-3.0, -4.0]]) / math.sqrt(2)
    torch.testing.assert_close(l2_normalised_linear_attention(q, k, v), expected)
    # masking the second key leaves sigma(K)^T V = [[0, 0], [1, 2]]
    masked = l2_normalised_linear_attention(q, k, v, key_mask=torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(masked, torch.tensor([[0.8, 1.6], [0.0, 0.0]]) / math.sqrt(2))


def _attention_flops(layer, length, batch=4, hidden=32):
    x = torch.randn(batch, length, hidden)
    mask = torch.zeros(batch, 1, 1, length)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer(x, mask)
    return counter.get_total_flops()


def test_linrec_attention_cost_is_linear_in_sequence_length():
    linear = L2NormLinearAttention(2, 32, 0.0, 0.0, 1e-12).eval()
    softmax = MultiHeadAttention(2, 32, 0.0, 0.0, 1e-12).eval()
    linear_ratio = _attention_flops(linear, 512) / _attention_flops(linear, 256)
    softmax_ratio = _attention_flops(softmax, 512) / _attention_flops(softmax, 256)
    assert linear_ratio == pytest.approx(2.0, rel=0.01)
    assert softmax_ratio > 2.5  # the quadratic QK^T term dominates RecBole's attention


# ---------------------------------------------------------------- BSARec's layer


def test_bsarec_low_pass_keeps_low_and_drops_high_frequencies():
    branch = FrequencyInductiveBias(8, 1, cutoff=3, hidden_dropout_prob=0.0, layer_norm_eps=1e-12)
    assert branch.kept_frequencies == 2  # c // 2 + 1 rfft bins, as in the authors' code
    t = torch.arange(8.0)
    slow = (1.0 + torch.cos(2 * math.pi * t / 8)).view(1, 8, 1)  # bins 0 and 1
    fast = torch.cos(math.pi * t).view(1, 8, 1)  # Nyquist bin 4
    torch.testing.assert_close(branch.low_pass(slow + fast), slow, atol=1e-5, rtol=0)


def test_bsarec_mixes_inductive_bias_and_attention_by_alpha():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4)
    mask = torch.where(torch.arange(8) < 6, 0.0, -10000.0).view(1, 1, 1, 8).expand(2, 1, 1, 8)
    mixer = BeyondSelfAttention(0.3, 8, 5, 2, 4, 0.0, 0.0, 1e-12).eval()
    expected = 0.3 * mixer.inductive_bias(x, mask) + 0.7 * mixer.self_attention(x, mask)
    torch.testing.assert_close(mixer(x, mask), expected)
    with torch.no_grad():  # beta = 1: low + beta * high gives back the (padding-zeroed) input
        mixer.inductive_bias.sqrt_beta.fill_(1.0)
    items = x * (torch.arange(8) < 6).view(1, 8, 1)
    torch.testing.assert_close(mixer.inductive_bias(x, mask),
                               mixer.inductive_bias.LayerNorm(x + items), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- CL4SRec's loss


def test_info_nce_rewards_matching_views_and_punishes_swapped_ones():
    z = 10 * torch.eye(4, 8)
    assert info_nce(z, z).item() < 1e-3
    assert info_nce(z, z.roll(1, dims=0)).item() > 10
    # uniform similarities: every one of the 2B - 1 candidates equally likely
    ones = torch.ones(3, 2)
    assert info_nce(ones, ones, similarity="cos").item() == pytest.approx(math.log(5), rel=1e-5)


def test_cl4srec_adds_weighted_contrastive_loss_to_next_item_loss(monkeypatch):
    model, config, _ = _build("CL4SRec", cl_weight=0.5)
    batch = _batch(config)
    monkeypatch.setattr(type(model), "contrastive_loss", lambda self, seq, length: torch.tensor(2.0))
    logits = model.full_sort_predict(batch)
    assert logits.shape == (4, N_ITEMS)  # the mask token (id n_items) is never scored
    main = torch.nn.functional.cross_entropy(logits, batch[model.POS_ITEM_ID])
    torch.testing.assert_close(model.calculate_loss(batch), main + 0.5 * 2.0)


def test_cl4srec_views_use_the_mask_token_through_item_embedding():
    model, config, _ = _build("CL4SRec", crop_eta=1.0, reorder_beta=0.0, mask_gamma=1.0)
    seen = []
    model.item_embedding.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    batch = _batch(config)
    torch.manual_seed(3)
    loss = model.contrastive_loss(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert torch.isfinite(loss)
    assert len(seen) == 2 and any((s == N_ITEMS).any() for s in seen)  # masked views seen
    assert model.item_embedding.num_embeddings == N_ITEMS + 1


# ---------------------------------------------------------------- every model


def _variants():
    return [("FMLPRec", {}), ("LinRec", {}), ("LinRec", {"train_style": "sasrec", "transform": None}),
            ("CL4SRec", {}), ("BSARec", {})]


@pytest.mark.parametrize("name, overrides", _variants())
def test_shapes_loss_and_gradients(name, overrides):
    model, config, transform = _build(name, **overrides)
    batch = _batch(config)
    assert model.full_sort_predict(batch).shape == (4, N_ITEMS)
    assert model.predict(batch).shape == (4,)
    model.train()
    loss = model.calculate_loss(transform(_Items(), batch))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name, overrides", _variants())
def test_input_goes_through_item_embedding_and_padding_is_ignored(name, overrides):
    """A hook on item_embedding sees the sequence and may change it: changes at padded
    positions leave the scores unchanged, a change at a real item moves them."""
    model, config, _ = _build(name, **overrides)
    batch = _batch(config)
    calls, noise_at = [], {"padding": False, "item": False}

    def hook(module, inputs, output):
        calls.append(inputs[0])
        ids = inputs[0]
        noise = torch.zeros_like(output)
        bump = torch.linspace(-5, 5, output.shape[-1])  # not constant: LayerNorm would erase that
        if noise_at["padding"]:
            noise[ids == 0] = bump
        if noise_at["item"]:
            noise[:, 0] = bump
        return output + noise

    model.item_embedding.register_forward_hook(hook)
    with torch.no_grad():
        clean = model.full_sort_predict(batch)
        seq, length = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
        if getattr(model, "train_style", None) == "bert4rec":  # RecBole appends the mask token
            seq = model.reconstruct_test_data(seq, length)
        assert len(calls) == 1 and torch.equal(calls[0], seq)
        noise_at["padding"] = True
        torch.testing.assert_close(model.full_sort_predict(batch), clean, atol=1e-4, rtol=1e-4)
        noise_at["item"] = True
        assert (model.full_sort_predict(batch) - clean).abs().max() > 1e-3


@pytest.mark.parametrize("name, overrides, message", [
    ("FMLPRec", {"MAX_ITEM_LIST_LENGTH": 0}, "MAX_ITEM_LIST_LENGTH must be an integer >= 1"),
    ("BSARec", {"bsarec_alpha": 1.5}, r"bsarec_alpha must be a finite number in \[0.0, 1.0\]"),
    ("BSARec", {"bsarec_c": 11}, r"bsarec_c \(low-pass cutoff\) must be an integer in \[1, 10\]"),
    ("CL4SRec", {"crop_eta": -0.1}, r"crop_eta must be a finite number in \[0.0, 1.0\]"),
    ("CL4SRec", {"cl_temperature": 0}, r"cl_temperature must be a finite number in \(0, 100\]"),
    ("LinRec", {"train_style": "gpt"}, "LinRec train_style must be one of"),
    ("LinRec", {"transform": None}, "train_style 'bert4rec' needs transform: mask_itemseq"),
    ("LinRec", {"train_style": "sasrec"}, "train_style 'sasrec' needs transform: ~"),
    ("LinRec", {"mask_ratio": 0.05}, "masks no item"),
])
def test_bad_lengths_and_rates_raise_one_clear_error(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        _build(name, **overrides)
