"""MLTFR layers, semantic consensus and model behaviour (issue 4, items 3-8).

The token-filtering experts are tested through what MLTFR runs (``semantic_integration``,
``gated_expert_rows``, ``scatter_rows``) against an oracle written out below from the paper's
equations (eq. 1-12, one expert at a time, dense softmax attention): the test's reference, not
a second implementation in the package.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender import SASRec

from mltfr_fixtures import build, first_batch, llm_cache, mltfr_config  # noqa: F401 (fixtures)
from recbole_llm.llm.loading import LLMNotFoundError, minilm_path
from recbole_llm.model.mltfr import mltfr as mltfr_module
from recbole_llm.model.mltfr.consensus import consensus_parameters, fisher_importance, homogeneous_group
from recbole_llm.model.mltfr.layers import (DirectTokenExpert, ItemLevelGate, ProjectionCache, TokenFilterExpert,
                                            expert_queries, filter_tokens, gated_expert_rows, gather_rows,
                                            real_positions, scaled_dot_attention, scatter_rows, semantic_integration,
                                            straight_through_top_k, table_projection, user_interest)
from recbole_llm.model.mltfr.mltfr import build_backbone
from recbole_llm.model.mltfr.trainer import MLTFRTrainer
from recbole_llm.nn.rand_mask_dropout import RandMaskDropout
from recbole_llm.validation import ConfigError


def _inputs(B=3, L=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(B, L, d, generator=g)
    item_seq = torch.tensor([[4, 7, 2, 0, 0], [5, 0, 0, 0, 0], [1, 2, 3, 4, 5]])[:B, :L]
    return E, item_seq != 0, item_seq


def _knowledge(gate, experts, E, mask, W_voc, **kwargs):
    """What MLTFR.semantic_augmentation computes for the experts of one vocabulary (before dropout):
    eq. 1-10 (semantic_integration), eq. 8 and 11-12 at the real items, padding re-inserted."""
    attended = semantic_integration(experts, E, mask, W_voc, **kwargs)
    return scatter_rows(gated_expert_rows(gate, attended, experts, mask), mask)


# ----- the oracle: the paper's equations for one expert, written out densely -------------------
def _clean_selection(expert, E, mask, W_voc):
    """Eq. 1-6 without Gumbel noise (evaluation): Top-K of the cosine routing logits, and the
    straight-through weights b_st = (b - p).detach() + p at the selected tokens."""
    real = mask.unsqueeze(-1).to(E.dtype)
    interest = (E * real).sum(1) / real.sum(1)                                          # eq. 1
    s = F.cosine_similarity(interest[:, None, :], expert.W_align(W_voc)[None], dim=-1)  # eq. 2-3, B x N
    p = torch.softmax(s / expert.tau, dim=-1)                                           # eq. 4, g = 0
    index = s.topk(expert.num_tokens, dim=-1).indices                                   # eq. 5
    b = torch.zeros_like(p).scatter(-1, index, 1.0)
    return index, ((b - p).detach() + p).gather(-1, index)                              # eq. 6


def _dense_expert(expert, E, mask, W_voc, index, b_st=None):
    """Eq. 7-10 for one expert: W_expert = MultiHead(E W_q, W_domain W_k, W_domain W_v) W_O,
    W_domain = W_voc[I_topK] (times b_st when given), zero at padding (B x L x d)."""
    W_domain = W_voc[index]                                                             # eq. 7
    if b_st is not None:
        W_domain = W_domain * b_st.unsqueeze(-1)
    (B, L, d), H = E.shape, expert.n_heads

    def split(x):
        return x.view(B, -1, H, d // H).transpose(1, 2)

    q, k, v = split(expert.W_q(E)), split(expert.W_k(W_domain)), split(expert.W_v(W_domain))  # eq. 9
    heads = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // H), dim=-1) @ v            # eq. 10
    return expert.W_o(heads.transpose(1, 2).reshape(B, L, d)) * mask.unsqueeze(-1)           # eq. 8


def _dense_gate(gate, E):
    """Eq. 11 as written: softmax over experts of E W^T + b at each position (B x L x n)."""
    return torch.softmax(gate.W(E) + gate.b[:, :E.shape[1]].T, dim=-1)



def test_user_interest_excludes_padding():
    E, mask, _ = _inputs()
    interest = user_interest(E, mask)
    assert interest.shape == (3, 8)
    assert torch.allclose(interest[0], E[0, :3].mean(0)) and torch.allclose(interest[1], E[1, 0])
    E2 = E.clone()
    E2[0, 3:] = 100.0  # padding positions never count
    assert torch.allclose(user_interest(E2, mask), interest)


def test_top_k_selects_exactly_k_with_straight_through_weights():
    scores = torch.randn(4, 50, requires_grad=True)
    index, weight = straight_through_top_k(scores, 7, tau=0.5, noisy=False)
    assert index.shape == (4, 7) and all(len(set(row.tolist())) == 7 for row in index)
    assert torch.equal(index.sort(-1).values, scores.topk(7, -1).indices.sort(-1).values)
    assert torch.allclose(weight, torch.ones_like(weight))  # hard selection in the forward pass
    weight.pow(2).mul(torch.arange(7.0)).sum().backward()
    assert scores.grad.abs().sum() > 0                       # soft gradient in the backward pass


@pytest.mark.parametrize("n_tokens", [10, 40])  # B K = 18 selections: whole-table / per-expert routing
def test_expert_shapes_padding_and_gradient_to_w_align(n_tokens):
    E, mask, _ = _inputs()
    W_voc = torch.randn(n_tokens, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=0.5)
    out = _knowledge(torch.ones(3, 5, 1), [expert], E, mask, W_voc)
    assert out.shape == E.shape
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))  # nothing added at padding
    assert out[mask].abs().sum() > 0
    out.pow(2).sum().backward()
    assert expert.W_align.weight.grad.abs().sum() > 0 and expert.W_align.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("n_tokens", [10, 40])
def test_no_gumbel_noise_at_evaluation(n_tokens):
    E, mask, _ = _inputs()
    W_voc = torch.randn(n_tokens, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=0.3).eval()
    index, _ = filter_tokens([expert], E, mask, W_voc)
    assert torch.equal(index[0], _clean_selection(expert, E, mask, W_voc)[0])
    gate = torch.ones(3, 5, 1)
    assert torch.equal(_knowledge(gate, [expert], E, mask, W_voc), _knowledge(gate, [expert], E, mask, W_voc))
    expert.train()
    picks = {tuple(filter_tokens([expert], E, mask, W_voc)[0][0, 0].sort().values.tolist()) for _ in range(10)}
    assert len(picks) > 1  # Gumbel noise makes training selections vary


@pytest.mark.parametrize("n_tokens", [10, 40])
def test_routing_scale_switch(n_tokens):
    """paper: eq. 4 as written (no parameter); learnable: the cosines times a trained scale."""
    from recbole_llm.model.mltfr.layers import routing_logits, scaled_routing_logits, user_interest

    E, mask, _ = _inputs()
    W_voc = torch.randn(n_tokens, 12)
    paper = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4)
    assert paper.log_routing_scale is None
    torch.manual_seed(0)
    scaled = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, routing_scale="learnable", routing_scale_init=8.0)
    assert float(scaled.log_routing_scale.detach().exp()) == pytest.approx(8.0)
    interest = torch.nn.functional.normalize(user_interest(E, mask), dim=-1)
    cosines = routing_logits(interest, W_voc, [scaled.W_align, paper.W_align])
    out = scaled_routing_logits(cosines, [scaled, paper])
    torch.testing.assert_close(out[0], 8.0 * cosines[0])
    torch.testing.assert_close(out[1], cosines[1])  # an expert without the switch keeps eq. 4
    assert cosines.abs().max() <= 1.0 + 1e-6
    _knowledge(torch.ones(3, 5, 1), [scaled], E, mask, W_voc).pow(2).sum().backward()
    assert scaled.log_routing_scale.grad is not None and scaled.log_routing_scale.grad != 0  # it is trained
    scaled.eval()  # a larger scale with no noise selects the same tokens as eq. 3's clean Top-K
    assert torch.equal(filter_tokens([scaled], E, mask, W_voc)[0][0], _clean_selection(scaled, E, mask, W_voc)[0])


@pytest.mark.parametrize("n_tokens", [10, 40])
def test_frozen_router_takes_the_clean_top_k_without_a_selection_gradient(n_tokens):
    """The consensus expert's frozen router (Round 2): clean Top-K in training too, b = 1 without a
    gradient; E still gets its gradient through the queries. MLTFR's path (with its projection
    cache) equals eq. 7-10 at the clean Top-K, values and gradients."""
    E, mask, _ = _inputs()
    W_voc = torch.randn(n_tokens, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=1.0).train()
    torch.nn.init.normal_(expert.W_o.weight)
    expert.requires_grad_(False)
    clean, _ = _clean_selection(expert, E, mask, W_voc)
    cache = ProjectionCache()
    for _ in range(5):
        index, weight = filter_tokens([expert], E, mask, W_voc, cache)
        assert torch.equal(index[0], clean) and weight is None
    outs = []
    for real_path in (True, False):
        E_leaf = E.clone().requires_grad_()
        if real_path:
            out = _knowledge(torch.ones(3, 5, 1), [expert], E_leaf, mask, W_voc, cache=cache)
        else:
            out = _dense_expert(expert, E_leaf, mask, W_voc, clean)
        (grad,) = torch.autograd.grad(out.pow(2).sum(), E_leaf)
        outs.append((out.detach(), grad))
    (a, grad_a), (b, grad_b) = outs
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(grad_a, grad_b, atol=1e-5)
    assert grad_a[mask].abs().sum() > 0
    # a trainable router (same weights, no noise) also sends its straight-through gradient to E
    expert.W_align.requires_grad_(True)
    E_leaf = E.clone().requires_grad_()
    out = _knowledge(torch.ones(3, 5, 1), [expert.eval()], E_leaf, mask, W_voc, cache=cache)
    (grad_st,) = torch.autograd.grad(out.pow(2).sum(), E_leaf)
    assert not torch.allclose(grad_st, grad_a)


@pytest.mark.parametrize("token_filter", ["random", "all"])
def test_filter_ablations(token_filter):
    E, mask, _ = _inputs()
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=2, token_filter=token_filter)
    out = _knowledge(torch.ones(3, 5, 1), [expert], E, mask, torch.randn(40, 12))
    assert out.shape == E.shape and torch.equal(out[~mask], torch.zeros_like(out[~mask]))


def test_direct_token_expert_adds_projected_token_of_each_item():
    E, mask, seq = _inputs()
    W_voc = torch.randn(4, 12)
    expert = DirectTokenExpert(8, 12)
    out = expert(E, mask, seq, W_voc)
    assert torch.allclose(out[0, 1], expert.W_align(W_voc[7 % 4]))
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))


def test_item_level_gate():
    E, mask, _ = _inputs()
    gate = ItemLevelGate(8, 3, max_len=10)
    outputs = [torch.randn_like(E) for _ in range(3)]
    torch.nn.init.normal_(gate.b)
    base, weights = gate(E, outputs)
    assert weights.shape == (3, 5, 3) and torch.allclose(weights.sum(-1), torch.ones(3, 5))
    manual = sum(weights[..., m:m + 1] * outputs[m] for m in range(3))
    assert torch.allclose(base, manual)
    # eq. 11 as written (softmax over the last dim of E W^T + b), values and gradients
    plain = torch.softmax(gate.W(E) + gate.b[:, :5].T, dim=-1)
    assert torch.allclose(weights, plain, atol=1e-6)
    g = torch.randn(3, 5, 3)
    grads = torch.autograd.grad((weights * g).sum(), (gate.W.weight, gate.b))
    plain_grads = torch.autograd.grad((plain * g).sum(), (gate.W.weight, gate.b))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, plain_grads))


@pytest.mark.parametrize("token_filter,n_tokens", [("user", 10), ("user", 400), ("random", 40), ("all", 40)])
def test_token_filtering_experts_equal_the_dense_equations(token_filter, n_tokens):
    """MLTFR's path (stacked GEMMs, gated W_o at the real items) == eq. 1-12 written out one expert
    at a time (dense attention), values and gradients of the experts and the gate."""
    E, mask, _ = _inputs()
    W_voc = torch.randn(n_tokens, 12)  # B x K = 18 selections per expert: 10 rows -> whole-table branch
    experts = [TokenFilterExpert(8, 12, num_tokens=6, n_heads=2, tau=0.5, token_filter=token_filter).eval()
               for _ in range(3)]
    gate = ItemLevelGate(8, 3, max_len=10)
    torch.nn.init.normal_(gate.b)
    for module in [gate.W] + [e.W_o for e in experts]:
        torch.nn.init.normal_(module.weight)
    params = [p for module in experts + [gate] for p in module.parameters()]
    torch.manual_seed(1)  # the random filter: K random tokens per user and expert, drawn n x B x N
    if token_filter == "user":
        selections = [_clean_selection(e, E, mask, W_voc) for e in experts]
    elif token_filter == "random":
        selections = [(index, None) for index in torch.rand(3, 3, n_tokens).topk(6, dim=-1).indices]
    else:
        selections = [(torch.arange(n_tokens).expand(3, -1), None)] * 3
    G = _dense_gate(gate, E)
    dense = sum(G[..., m:m + 1] * _dense_expert(e, E, mask, W_voc, *selection)           # eq. 12
                for m, (e, selection) in enumerate(zip(experts, selections)))
    dense_grads = torch.autograd.grad(dense.pow(2).sum(), params, allow_unused=True)
    torch.manual_seed(1)
    out = _knowledge(gate.weights(E), experts, E, mask, W_voc)
    assert torch.allclose(out, dense, atol=1e-5)
    grads = torch.autograd.grad(out.pow(2).sum(), params, allow_unused=True)
    assert [g is None for g in grads] == [g is None for g in dense_grads]
    # W_q, W_k, W_v, W_o (weights, biases) of the 3 experts and the gate's W, b; W_align through b_st
    assert sum(g is not None for g in grads) == 3 * 8 + 2 + (3 * 2 if token_filter == "user" else 0)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads, dense_grads) if a is not None)


@pytest.mark.parametrize("n_keys", [5, 8, 16, 17])
def test_scaled_dot_attention_equals_the_fused_kernel(n_keys):
    """Eq. 10 by batched matmuls (K <= 16 keys per head; transposed scores below 16) or the fused kernel:
    same values and gradients."""
    g = torch.Generator().manual_seed(n_keys)
    q, k, v = (torch.randn(3, 4, T, 8, generator=g).requires_grad_() for T in (7, n_keys, n_keys))
    outs = []
    for attend in (scaled_dot_attention, F.scaled_dot_product_attention):
        out = attend(q, k, v)
        grads = torch.autograd.grad(out.pow(2).sum(), (q, k, v))
        outs.append((out, grads))
    (a, grads_a), (b, grads_b) = outs
    assert torch.allclose(a, b, atol=1e-5) and all(torch.allclose(x, y, atol=1e-4) for x, y in zip(grads_a, grads_b))


def test_frozen_table_projection_is_reused_until_the_weights_change():
    """The explicit ProjectionCache: trainable layers are projected every call; frozen ones once per
    change of the weights, the biases or the table; without a cache every call computes."""
    W_voc = torch.randn(30, 12)
    layers = [torch.nn.Linear(12, 8), torch.nn.Linear(12, 8)]
    cache = ProjectionCache()

    def expected(table, bias=False):
        return F.linear(table, torch.cat([l.weight for l in layers]),
                        torch.cat([l.bias for l in layers]) if bias else None)

    assert torch.allclose(table_projection(W_voc, layers, cache), expected(W_voc))  # trainable: every call
    assert table_projection(W_voc, layers, cache).requires_grad and len(cache) == 0
    for layer in layers:
        layer.requires_grad_(False)
    first = table_projection(W_voc, layers, cache)
    assert torch.allclose(first, expected(W_voc)) and table_projection(W_voc, layers, cache) is first  # reused
    assert table_projection(W_voc, layers) is not first                       # no cache: computed
    biased = table_projection(W_voc, layers, cache, bias=True)
    assert torch.allclose(biased, expected(W_voc, bias=True), atol=1e-6)
    assert table_projection(W_voc, layers, cache, bias=True) is biased and len(cache) == 2
    with torch.no_grad():
        layers[1].weight.mul_(2.0)                                           # an in-place change
    changed = table_projection(W_voc, layers, cache)
    assert changed is not first and torch.allclose(changed, expected(W_voc))
    layers[0].load_state_dict({"weight": torch.randn(8, 12), "bias": torch.randn(8)})
    assert torch.allclose(table_projection(W_voc, layers, cache), expected(W_voc))
    assert torch.allclose(table_projection(W_voc, layers, cache, bias=True), expected(W_voc, bias=True), atol=1e-6)
    other = torch.randn(30, 12)
    assert torch.allclose(table_projection(other, layers, cache), expected(other))
    assert len(cache) == 2  # one entry per layer stack and bias flag, replaced when stale


@pytest.mark.parametrize("n_items", [8, 40])
def test_queries_projected_per_item_equal_the_per_position_path(n_items):
    """E = table[item_seq]: queries from the projected item table (8 items < 15 positions) give the
    same expert output and gradients (experts and item table) as projecting every position."""
    _, mask, seq = _inputs()
    table = torch.randn(n_items, 8, requires_grad=True)
    W_voc = torch.randn(30, 12)
    experts = [TokenFilterExpert(8, 12, num_tokens=4, n_heads=2).eval() for _ in range(3)]
    for e in experts:
        torch.nn.init.normal_(e.W_o.weight)
    gate = torch.softmax(torch.randn(3, 5, 3), -1)
    outs, grads = [], []
    for kwargs in ({}, {"item_seq": seq, "item_table": table}):
        E = table[seq]
        out = _knowledge(gate, experts, E, mask, W_voc, **kwargs)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append([table.grad.clone()] + [p.grad.clone() for e in experts for p in e.parameters()
                                             if p.grad is not None])
        table.grad = None
        for e in experts:
            e.zero_grad()
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert len(grads[0]) == len(grads[1]) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
    weight, bias = torch.randn(24, 8), torch.randn(24)
    from_table = expert_queries(torch.zeros(3, 5, 8), weight, bias, seq, table)  # ignores E iff table path
    assert torch.allclose(from_table, F.linear(table[seq], weight, bias), atol=1e-5) == (n_items < seq.numel())


def test_gated_output_at_real_items_equals_the_dense_computation():
    """gated_expert_rows computes only at real items; == the dense eq. 8 + 11-12 masked afterwards."""
    E, mask, _ = _inputs()
    experts = [TokenFilterExpert(8, 12, num_tokens=4, n_heads=2) for _ in range(3)]
    for e in experts:
        torch.nn.init.normal_(e.W_o.weight), torch.nn.init.normal_(e.W_o.bias)
    gate = torch.softmax(torch.randn(3, 5, 3), -1)
    attended = torch.randn(3, 5, 3, 8, requires_grad=True)
    dense = sum(gate[..., m:m + 1] * e.W_o(attended[:, :, m]) for m, e in enumerate(experts))
    dense = dense * mask.unsqueeze(-1)
    out = scatter_rows(gated_expert_rows(gate, attended, experts, mask), mask)
    assert torch.allclose(out, dense, atol=1e-5) and torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    out.sum().backward()
    assert torch.equal(attended.grad[~mask], torch.zeros_like(attended.grad[~mask]))
    assert attended.grad[mask].abs().sum() > 0


def test_consensus_is_the_fisher_weighted_average():
    experts = [TokenFilterExpert(8, 12, num_tokens=4, n_heads=2) for _ in range(3)]
    weights = torch.tensor([0.5, 2.0, 1.5])
    sc = consensus_parameters(experts, weights)
    for name, value in sc.items():
        manual = sum(w * e.state_dict()[name] for w, e in zip(weights, experts)) / weights.sum()
        assert torch.allclose(value, manual, atol=1e-6)
    mixed = experts[:2] + [TokenFilterExpert(8, 6, num_tokens=4, n_heads=2)] * 3
    assert homogeneous_group(mixed) == [2, 3, 4]


def test_fisher_weights_positive_and_consensus_frozen_in_round_2(mltfr_config):
    config, model, train, _ = build(dict(mltfr_config, llm_experts=["minilm", "minilm", "minilm"]))
    batches = [first_batch(train).to(model.device)]
    weights = model.build_semantic_consensus(batches)
    assert weights.shape == (3,) and (weights > 0).all()
    assert torch.allclose(model.fisher_weights, weights)
    for name, value in model.sc_expert.state_dict().items():
        manual = sum(w * e.state_dict()[name] for w, e in zip(weights, model.experts)) / weights.sum()
        assert torch.allclose(value, manual, atol=1e-6)
    assert bool(model.sc_active) and not any(p.requires_grad for p in model.sc_expert.parameters())

    frozen = {k: v.clone() for k, v in model.sc_expert.state_dict().items()}
    before = model.experts[0].W_align.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for batch in batches * 2:
        opt.zero_grad()
        model.calculate_loss(batch).backward()
        opt.step()
    assert all(torch.equal(v, model.sc_expert.state_dict()[k]) for k, v in frozen.items())
    assert not torch.equal(before, model.experts[0].W_align.weight)
    assert model.training  # the estimate runs in eval mode and restores the training mode
    assert (fisher_importance(model, batches, list(model.experts)) > 0).all() and model.training


def test_round_2_starts_a_fresh_optimizer_over_what_algorithm_1_updates(mltfr_config, monkeypatch):
    from recbole_llm.model.mltfr.trainer import MLTFRTrainer
    from recbole_llm.utils import get_trainer

    config, model, train, valid = build(dict(mltfr_config, epochs=1, round1_epochs=1))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert isinstance(trainer, MLTFRTrainer)
    seen = []
    real = MLTFRTrainer._train_epoch

    def spy(self, *args, **kwargs):
        params = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        seen.append((self.optimizer, len(self.optimizer.state), params))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MLTFRTrainer, "_train_epoch", spy)
    trainer.fit(train, valid, saved=True, show_progress=False, verbose=False)
    (opt1, state1, params1), (opt2, state2, params2) = seen
    sc = {id(p) for p in model.sc_expert.parameters()}
    assert opt2 is not opt1 and state2 == 0  # a fresh optimiser, no Round-1 moments
    assert sc <= params1 and not sc & params2  # θ_SC is not updated in Round 2 (line 25)
    assert {id(p) for p in model.parameters() if p.requires_grad} == params2


def test_experts_of_different_llm_dimensions(mltfr_config):
    """Distinct LLMs (MiniLM d=384, WordLlama d=256, MiniLM again): every expert trains, the
    consensus fuses the largest group of one architecture and d_llm (§4.1.1), here the two MiniLMs."""
    pytest.importorskip("wordllama", reason="wordllama: pip install wordllama==0.3.3.post0")
    config, model, train, _ = build(dict(mltfr_config, llm_experts=["minilm", "wordllama", "minilm"]))
    assert [e.d_llm for e in model.experts] == [384, 256, 384]
    batch = first_batch(train).to(model.device)
    model.calculate_loss(batch).backward()
    for expert in model.experts:
        assert expert.W_align.weight.grad.abs().sum() > 0 and expert.W_k.weight.grad.abs().sum() > 0
    weights = model.build_semantic_consensus([batch])
    assert model.sc_expert.d_llm == 384 and weights.shape == (2,)  # the two MiniLM experts
    model.eval()
    scores = model.full_sort_predict(batch)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("two_vocabularies", [False, True])
def test_round_2_augmentation_is_eq_15(mltfr_config, two_vocabularies):
    """Round 2's augmentation (batched experts + frozen consensus expert) is eq. 15,
    sum_m G_m W_expert_m + alpha * W_SC with every term written out from eq. 1-12; values and gradients."""
    experts = ["minilm", minilm_path(), "minilm"] if two_vocabularies else ["minilm"] * 3
    config, model, train, _ = build(dict(mltfr_config, llm_experts=experts, sc_alpha=0.3))
    assert len(set(model.expert_vocab)) == (2 if two_vocabularies else 1)
    for module in [model.gate.W, model.sc_expert.W_o] + [e.W_o for e in model.experts]:
        torch.nn.init.normal_(module.weight)
    model.sc_vocab.fill_(model.expert_vocab[1])  # the second vocabulary when there are two
    model.sc_active.fill_(True)
    model.eval()  # no Gumbel noise, no dropout: both are deterministic
    seq = first_batch(train)[model.ITEM_SEQ][:16]
    table = model.backbone.item_embedding.weight
    results = []
    for real_path in (True, True, False):  # twice: the second call reuses the consensus projections
        E = table[seq]
        if real_path:
            out = model.semantic_augmentation(seq, E, item_table=table)
        else:
            mask = seq != 0
            G = _dense_gate(model.gate, E)                                                  # eq. 11
            W_base = sum(G[..., m:m + 1] * _dense_expert(e, E, mask, model._vocab(v),
                                                         *_clean_selection(e, E, mask, model._vocab(v)))
                         for m, (e, v) in enumerate(zip(model.experts, model.expert_vocab)))  # eq. 12
            sc_vocab = model._vocab(model.sc_vocab)
            with torch.no_grad():  # the frozen router: clean Top-K, b = 1 without a gradient
                sc_index, _ = _clean_selection(model.sc_expert, E, mask, sc_vocab)
            out = W_base + 0.3 * _dense_expert(model.sc_expert, E, mask, sc_vocab, sc_index)  # eq. 15
        model.zero_grad()
        out.pow(2).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert len(model.projection_cache) > 0
    (a, grads_a), (again, grads_again), (b, grads_b) = results
    assert torch.equal(a, again) and len(grads_a) == len(grads_again)
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_again))
    assert a.abs().sum() > 0 and torch.allclose(a, b, atol=1e-5)
    assert len(grads_a) == len(grads_b) and all(torch.allclose(x, y, atol=1e-4) for x, y in zip(grads_a, grads_b))
    assert all(p.grad is None for p in model.sc_expert.parameters())  # frozen: no gradient reaches it


def test_real_positions_gather_and_scatter_like_boolean_indexing():
    """gather_rows at real_positions == x[mask] (row order and gradient); scatter_rows inverts it."""
    torch.manual_seed(0)
    mask = torch.rand(6, 7) < 0.6
    x = torch.randn(6, 7, 3, 2, requires_grad=True).permute(0, 1, 3, 2)  # a non-contiguous view, as in MLTFR
    rows = gather_rows(x, real_positions(mask)).flatten(1)
    assert torch.equal(rows, x[mask].reshape(rows.shape))
    g = torch.randn(rows.shape)
    (grad_new,) = torch.autograd.grad(rows, x, g)
    (grad_ref,) = torch.autograd.grad(x[mask].reshape(rows.shape), x, g)
    assert torch.equal(grad_new, grad_ref)
    out = scatter_rows(rows, mask)
    assert torch.equal(out[mask], rows) and not out[~mask].any()


def test_rand_mask_dropout_has_dropout_semantics():
    """Keep-mask Bernoulli(1 - p), kept entries scaled by 1 / (1 - p), gradient through the same mask."""
    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    layer = RandMaskDropout(0.3).train()
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(1 / 0.7)) and abs(float(kept.float().mean()) - 0.7) < 0.01
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, y.detach())  # d(x * mask)/dx = mask, at x = 1 equal to y
    assert torch.equal(layer.eval()(x), x) and torch.equal(RandMaskDropout(0.0).train()(x), x)
    assert not RandMaskDropout(1.0).train()(x).any()


def test_dropout_acts_on_real_items_only(mltfr_config):
    """expert_dropout zeroes about that share of W_output at real items; padding stays exactly zero."""
    config, model, train, _ = build(dict(mltfr_config, expert_dropout=0.5))
    model.train()
    seq = first_batch(train)[model.ITEM_SEQ]
    mask = seq != 0
    out = model.semantic_augmentation(seq, model.backbone.item_embedding(seq)).detach()
    assert mask.any() and (~mask).any()
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    dropped = float((out[mask] == 0).float().mean())
    assert 0.45 < dropped < 0.55, dropped


def test_augmentation_off_scores_exactly_like_the_bare_backbone(mltfr_config):
    config, model, train, valid = build(dict(mltfr_config, sc_alpha=0.0))
    bare = SASRec(config, train._dataset)
    bare.load_state_dict(model.backbone.state_dict())
    for expert in list(model.experts) + [model.sc_expert]:
        torch.nn.init.zeros_(expert.W_o.weight)
        torch.nn.init.zeros_(expert.W_o.bias)
    model.sc_active.fill_(True)
    model.eval(), bare.eval()
    batch = first_batch(valid).to(model.device)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), bare.full_sort_predict(batch))
        assert torch.equal(model.predict(batch), bare.predict(batch))
        model.sc_expert.W_o.bias.fill_(1.0)
        model.sc_alpha = 0.2  # switching the consensus back on changes the scores
        assert not torch.allclose(model.full_sort_predict(batch), bare.full_sort_predict(batch))


def test_no_experts_is_the_bare_backbone_under_eq_16(mltfr_config):
    """llm_experts: [] -- the paper's baseline: the bare backbone, trained by eq. 16 in one round."""
    config, model, train, valid = build(dict(mltfr_config, llm_experts=[]))
    assert len(model.experts) == 0 and not model.use_sc and sum(1 for _ in model.parameters()) == sum(
        1 for _ in model.backbone.parameters())
    bare = SASRec(config, train._dataset)
    bare.load_state_dict(model.backbone.state_dict())
    model.eval(), bare.eval()
    batch = first_batch(train).to(model.device)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), bare.full_sort_predict(batch))
        scores = bare.full_sort_predict(batch)
        pos, neg = scores.gather(1, batch[model.ITEM_ID][:, None]), scores.gather(1, batch[model.NEG_ITEM_ID][:, None])
        assert torch.allclose(model.calculate_loss(batch), -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean())
    trainer = MLTFRTrainer(config, model)
    trainer.fit(train, valid, saved=False)  # one round: no consensus to build
    assert not model.use_sc and trainer.epochs == config["epochs"]


def test_bce_loss_is_eq_16(mltfr_config):
    config, model, train, _ = build(mltfr_config)
    assert model.mltfr_loss == "bce"
    batch = first_batch(train).to(model.device)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        pos = scores.gather(1, batch[model.ITEM_ID][:, None])
        neg = scores.gather(1, batch[model.NEG_ITEM_ID][:, None])
        manual = -(torch.log(torch.sigmoid(pos)) + torch.log(1 - torch.sigmoid(neg))).mean()
        assert torch.allclose(model.calculate_loss(batch), manual, atol=1e-5)


def test_bad_backbones_are_refused_before_training(mltfr_config):
    config, _, train, _ = build(mltfr_config)
    for backbone, message in [("NoSuchRec", "unknown backbone 'NoSuchRec'"),
                              ("SRGNN", "cannot wrap backbone 'SRGNN'"),
                              ("GCSAN", "cannot wrap backbone 'GCSAN'"),
                              ("RepeatNet", "cannot wrap backbone 'RepeatNet'"),
                              ("S3Rec", "cannot wrap backbone 'S3Rec'"),
                              ("BPR", "'BPR' is not a sequential recommender")]:
        config["backbone"] = backbone
        with pytest.raises(ValueError, match=message):
            build_backbone(config, train._dataset)


def test_bad_llm_and_k_are_refused(mltfr_config, tmp_path):
    with pytest.raises(LLMNotFoundError, match="does not exist"):
        build(dict(mltfr_config, llm_experts=[str(tmp_path / "missing_llm")]))
    with pytest.raises(ValueError, match="K=300 exceeds the 128 pooled tokens"):
        build(dict(mltfr_config, num_tokens=300))
    with pytest.raises(ConfigError, match="mltfr_loss must be 'backbone' when no negative is sampled, got 'bce' "
                                          r"\(eq. 16 needs one sampled negative"):
        build(dict(mltfr_config, loss_type="CE"))


BAD_KEYS = [  # key, value, the one message of MLTFR_RULES
    ("gumbel_tau", 0.2, r"gumbel_tau must be a finite number in \[0.3, 1.0\], got 0.2"),
    ("gumbel_tau", 1.5, r"gumbel_tau must be a finite number in \[0.3, 1.0\], got 1.5"),
    ("token_filter", "users", r"token_filter must be one of \('user', 'random', 'all'\), got 'users'"),
    ("expert_mode", "moe", r"expert_mode must be one of \('filter', 'te', 're'\), got 'moe'"),
    ("mltfr_loss", "hinge", r"mltfr_loss must be one of \('backbone', 'bce'\), got 'hinge'"),
    ("num_tokens", 0, r"num_tokens must be an integer >= 1, got 0"),
    ("llm_experts", ["minilm", ""], r"llm_experts must be a list of LLM names or directories, one per expert "
                                     r"\(\[\] = the bare backbone\), got \['minilm', ''\]"),
    ("expert_heads", 0, r"expert_heads must be an integer >= 1, got 0"),
    ("expert_dropout", 1.5, r"expert_dropout must be a finite number in \[0.0, 1.0\], got 1.5"),
    ("use_sc", "yes", r"use_sc must be True or False, got 'yes'"),
    ("fisher_batches", 0, r"fisher_batches must be an integer >= 1, got 0"),
]


def test_mltfr_keys_are_checked_once_before_anything_is_built(mltfr_config, monkeypatch):
    """Every MLTFR key by its rule in MLTFR_RULES, in MLTFR.__init__ before the backbone or an LLM
    is loaded; the head count against the backbone's hidden size once the backbone is built."""
    config, _, train, _ = build(mltfr_config)

    def built(*args, **kwargs):
        raise AssertionError("MLTFR built something before checking its config")

    with monkeypatch.context() as patch:
        patch.setattr(mltfr_module, "build_backbone", built)
        patch.setattr(mltfr_module, "load_token_embeddings", built)
        for key, value, message in BAD_KEYS:
            good, config[key] = config[key], value
            with pytest.raises(ConfigError, match=message):
                mltfr_module.MLTFR(config, train._dataset)
            config[key] = good
    config["expert_heads"] = 3
    with pytest.raises(ConfigError, match="expert_heads must be a divisor of the backbone's hidden size 16, got 3"):
        mltfr_module.MLTFR(config, train._dataset)


def test_llm_te_and_re_ablations(mltfr_config):
    """Fig. 1 ablations: LLM-TE adds projected real token rows; LLM-RE a random table of the same shape."""
    _, te_model, train, _ = build(dict(mltfr_config, expert_mode="te", llm_experts=["minilm"]))
    _, re_model, _, _ = build(dict(mltfr_config, expert_mode="re", llm_experts=["minilm"]))
    assert isinstance(te_model.experts[0], DirectTokenExpert)
    assert te_model.vocab_0.shape == re_model.vocab_0.shape
    assert not torch.allclose(te_model.vocab_0, re_model.vocab_0)
    batch = first_batch(train).to(te_model.device)
    for model in (te_model, re_model):
        loss = model.calculate_loss(batch)
        loss.backward()
        assert torch.isfinite(loss) and model.experts[0].W_align.weight.grad.abs().sum() > 0
