"""MLTFR layers, semantic consensus and model behaviour (issue 4, items 3-8)."""
import pytest
import torch
import torch.nn.functional as F

from mltfr_fixtures import build, first_batch, llm_cache, mltfr_config  # noqa: F401 (fixtures)
from recbole_llm.llm.loading import LLMNotFoundError
from recbole_llm.model.mltfr.consensus import consensus_parameters, fisher_importance, homogeneous_group
from recbole_llm.model.mltfr.layers import (DirectTokenExpert, ItemLevelGate, TokenFilterExpert,
                                            batched_token_attention, expert_queries, gated_expert_output, gather_rows,
                                            real_positions, scaled_dot_attention, scatter_rows, straight_through_top_k,
                                            table_projection, user_interest)
from recbole_llm.nn.rand_mask_dropout import RandMaskDropout


def _inputs(B=3, L=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(B, L, d, generator=g)
    item_seq = torch.tensor([[4, 7, 2, 0, 0], [5, 0, 0, 0, 0], [1, 2, 3, 4, 5]])[:B, :L]
    return E, item_seq != 0, item_seq


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


def test_expert_shapes_padding_and_gradient_to_w_align():
    E, mask, seq = _inputs()
    W_voc = torch.randn(40, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=0.5)
    out = expert(E, mask, seq, W_voc)
    assert out.shape == E.shape
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))  # nothing added at padding
    assert out[mask].abs().sum() > 0
    out.pow(2).sum().backward()
    assert expert.W_align.weight.grad.abs().sum() > 0 and expert.W_align.bias.grad.abs().sum() > 0


def test_no_gumbel_noise_at_evaluation():
    E, mask, seq = _inputs()
    W_voc = torch.randn(40, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=0.3).eval()
    index, _ = expert.select_tokens(E, mask, W_voc)
    assert torch.equal(index, expert.routing_logits(E, mask, W_voc).topk(6, -1).indices)
    assert torch.equal(expert(E, mask, seq, W_voc), expert(E, mask, seq, W_voc))
    expert.train()
    picks = {tuple(expert.select_tokens(E, mask, W_voc)[0][0].sort().values.tolist()) for _ in range(10)}
    assert len(picks) > 1  # Gumbel noise makes training selections vary


def test_frozen_router_takes_the_clean_top_k_without_a_selection_gradient():
    """The consensus expert's frozen router (Round 2): clean Top-K in training too, b = 1 without a
    gradient; E still gets its gradient through the queries. Batched and per-module paths agree."""
    E, mask, seq = _inputs()
    W_voc = torch.randn(40, 12)
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=4, tau=1.0).train()
    torch.nn.init.normal_(expert.W_o.weight)
    expert.requires_grad_(False)
    clean = expert.routing_logits(E, mask, W_voc).topk(6, -1).indices
    assert all(torch.equal(expert.select_tokens(E, mask, W_voc)[0], clean) for _ in range(5))
    outs = []
    for batched in (True, False):
        E_leaf = E.clone().requires_grad_()
        if batched:
            out = gated_expert_output(torch.ones(3, 5, 1), batched_token_attention([expert], E_leaf, mask, W_voc),
                                      [expert], mask)
        else:
            out = expert(E_leaf, mask, seq, W_voc)
        (grad,) = torch.autograd.grad(out.pow(2).sum(), E_leaf)
        outs.append((out.detach(), grad))
    (a, grad_a), (b, grad_b) = outs
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(grad_a, grad_b, atol=1e-5)
    assert grad_a[mask].abs().sum() > 0
    # a trainable router (same weights, no noise) also sends its straight-through gradient to E
    expert.W_align.requires_grad_(True)
    E_leaf = E.clone().requires_grad_()
    (grad_st,) = torch.autograd.grad(expert.eval()(E_leaf, mask, seq, W_voc).pow(2).sum(), E_leaf)
    assert not torch.allclose(grad_st, grad_a)


@pytest.mark.parametrize("token_filter", ["random", "all"])
def test_filter_ablations(token_filter):
    E, mask, seq = _inputs()
    expert = TokenFilterExpert(8, 12, num_tokens=6, n_heads=2, token_filter=token_filter)
    out = expert(E, mask, seq, torch.randn(40, 12))
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
def test_batched_experts_equal_the_per_expert_loop(token_filter, n_tokens):
    """MLTFR's batched path (stacked GEMMs, gated W_o) == gate(E, [expert(...) for expert]), values and grads."""
    E, mask, seq = _inputs()
    W_voc = torch.randn(n_tokens, 12)  # B x K = 18 selections per expert: 10 rows -> whole-table branch
    experts = [TokenFilterExpert(8, 12, num_tokens=6, n_heads=2, tau=0.5, token_filter=token_filter).eval()
               for _ in range(3)]
    gate = ItemLevelGate(8, 3, max_len=10)
    for module in [gate.W] + [e.W_o for e in experts]:
        torch.nn.init.normal_(module.weight)
    torch.manual_seed(1)  # the random filter draws the same tokens in both paths
    loop, _ = gate(E, [e(E, mask, seq, W_voc) for e in experts])
    loop.pow(2).sum().backward()
    loop_grads = [p.grad.clone() for e in experts for p in e.parameters() if p.grad is not None]
    for e in experts:
        e.zero_grad()
    torch.manual_seed(1)
    batched = gated_expert_output(gate.weights(E), batched_token_attention(experts, E, mask, W_voc), experts, mask)
    assert torch.allclose(batched, loop, atol=1e-5)
    batched.pow(2).sum().backward()
    grads = [p.grad for e in experts for p in e.parameters() if p.grad is not None]
    assert len(grads) == len(loop_grads) and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads, loop_grads))


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
    W_voc = torch.randn(30, 12)
    layers = [torch.nn.Linear(12, 8), torch.nn.Linear(12, 8)]
    expected = F.linear(W_voc, torch.cat([layers[0].weight, layers[1].weight]))
    assert torch.allclose(table_projection(W_voc, layers), expected)        # trainable: computed every call
    assert table_projection(W_voc, layers).requires_grad
    for layer in layers:
        layer.requires_grad_(False)
    first = table_projection(W_voc, layers)
    assert torch.allclose(first, expected) and table_projection(W_voc, layers) is first  # frozen: reused
    with torch.no_grad():
        layers[1].weight.mul_(2.0)                                           # e.g. load_state_dict
    changed = table_projection(W_voc, layers)
    assert changed is not first and torch.allclose(changed, F.linear(W_voc, torch.cat([layers[0].weight,
                                                                                       layers[1].weight])))
    other = torch.randn(30, 12)
    assert torch.allclose(table_projection(other, layers), F.linear(other, torch.cat([l.weight for l in layers])))


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
        out = gated_expert_output(gate, batched_token_attention(experts, E, mask, W_voc, **kwargs), experts, mask)
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
    """gated_expert_output computes only at real items; == the dense eq. 8 + 11-12 masked afterwards."""
    E, mask, _ = _inputs()
    experts = [TokenFilterExpert(8, 12, num_tokens=4, n_heads=2) for _ in range(3)]
    for e in experts:
        torch.nn.init.normal_(e.W_o.weight), torch.nn.init.normal_(e.W_o.bias)
    gate = torch.softmax(torch.randn(3, 5, 3), -1)
    attended = torch.randn(3, 5, 3, 8, requires_grad=True)
    dense = sum(gate[..., m:m + 1] * e.W_o(attended[:, :, m]) for m, e in enumerate(experts))
    dense = dense * mask.unsqueeze(-1)
    out = gated_expert_output(gate, attended, experts, mask)
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


@pytest.mark.parametrize("two_vocabularies", [False, True])
def test_round_2_augmentation_is_eq_15(mltfr_config, two_vocabularies):
    """Round 2's augmentation (batched experts + frozen consensus expert) is eq. 15,
    gate(E, [expert_m(E)]) + alpha * W_SC(E) from the per-module experts; values and gradients."""
    from recbole_llm.llm.loading import minilm_path

    experts = ["minilm", minilm_path(), "minilm"] if two_vocabularies else ["minilm"] * 3
    config, model, train, _ = build(dict(mltfr_config, llm_experts=experts, sc_alpha=0.3))
    assert len(set(model.expert_vocab)) == (2 if two_vocabularies else 1)
    for module in [model.gate.W, model.sc_expert.W_o] + [e.W_o for e in model.experts]:
        torch.nn.init.normal_(module.weight)
    model.sc_vocab.fill_(model.expert_vocab[1])  # the second vocabulary when there are two
    model.sc_active.fill_(True)
    model.eval()  # no Gumbel noise, no dropout: both paths are deterministic
    seq = first_batch(train)[model.ITEM_SEQ][:16]
    table = model.backbone.item_embedding.weight
    results = []
    for batched in (True, False):
        E = table[seq]
        if batched:
            out = model.semantic_augmentation(seq, E, item_table=table)
        else:
            mask = seq != 0
            outputs = [e(E, mask, seq, model._vocab(v)) for e, v in zip(model.experts, model.expert_vocab)]
            out = model.gate(E, outputs)[0] + 0.3 * model.sc_expert(E, mask, seq, model._vocab(model.sc_vocab))
        model.zero_grad()
        out.pow(2).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a, grads_a), (b, grads_b) = results
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
    from recbole.model.sequential_recommender import SASRec

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
    from recbole_llm.model.mltfr.mltfr import build_backbone

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
    with pytest.raises(ValueError, match="needs one sampled negative"):
        build(dict(mltfr_config, loss_type="CE"))


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
