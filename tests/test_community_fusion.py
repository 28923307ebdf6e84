"""Fusion formulas of L3Rec (paper §4.3.2 eq. 5-7, Table 6) on hand-made rank lists."""
import math

import pytest
import torch

from recbole_llm.community.fusion import (count_fusion, fuse, rrf, validation_softmax_weights,
                                          weighted_rrf, with_global_fallback)

# one user, two local models: model 0 ranks [1, 2, 3], model 1 ranks [2, 4, 1]
RANKED = torch.tensor([[[1, 2, 3], [2, 4, 1]]])
BOTH = torch.tensor([[1.0, 1.0]])


def test_rrf_equation_5():
    s = rrf(RANKED, BOTH, num_items=6, k=0)[0]
    assert s.tolist() == pytest.approx([0, 1 + 1 / 3, 1 / 2 + 1, 1 / 3, 1 / 2, 0])
    s = rrf(RANKED, BOTH, num_items=6, k=1)[0]
    assert s.tolist() == pytest.approx([0, 1 / 2 + 1 / 4, 1 / 3 + 1 / 2, 1 / 4, 1 / 3, 0])


def test_rrf_uses_only_the_users_communities():
    s = rrf(RANKED, torch.tensor([[1.0, 0.0]]), num_items=6)[0]
    assert s.tolist() == pytest.approx([0, 1, 1 / 2, 1 / 3, 0, 0])


def test_weighted_rrf_equation_6():
    s = weighted_rrf(RANKED, torch.tensor([[0.3, 0.1]]), num_items=6, k=0)[0]
    w0, w1 = 0.75, 0.25  # divided by the sum of weights, as LOCA does
    assert s.tolist() == pytest.approx([0, w0 + w1 / 3, w0 / 2 + w1, w0 / 3, w1 / 2, 0])
    raw = weighted_rrf(RANKED, torch.tensor([[0.3, 0.1]]), num_items=6, normalize=False)[0]
    assert raw[1].item() == pytest.approx(0.3 + 0.1 / 3)


def test_count_fusion_counts_and_breaks_ties_by_rrf():
    s = count_fusion(RANKED, BOTH, num_items=6)[0]
    assert torch.floor(s).tolist() == [0, 2, 2, 1, 1, 0]
    assert s[2] > s[1] > s[4] > s[3] > 0  # RRF orders items with equal counts
    plain = count_fusion(RANKED, BOTH, num_items=6, tie_break=False)[0]
    assert plain.tolist() == [0, 2, 2, 1, 1, 0]


def test_empty_slots_are_ignored():
    ranked = torch.tensor([[[3, -1, -1], [-1, -1, -1]]])
    assert rrf(ranked, BOTH, num_items=5)[0].tolist() == pytest.approx([0, 0, 0, 1, 0])


def test_validation_softmax_weights_wrrf_llm():
    ndcg = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    member = torch.tensor([[0.2, 0.4], [0.0, 0.4], [0.0, 0.0]])
    w = validation_softmax_weights(ndcg, member)
    e = math.e
    assert w[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)])
    assert w[1].tolist() == pytest.approx([0.0, 1.0])  # only its own community
    assert w[2].tolist() == [0.0, 0.0]  # in no community
    s = fuse("wrrf_valid", RANKED, member[:1], 6, valid_ndcg=ndcg[:1])[0]
    assert s[1].item() == pytest.approx(e / (e + 1) + 1 / (e + 1) / 3)


def test_fuse_dispatch_and_global_fallback():
    for method in ("count", "rrf", "wrrf_cf"):
        assert fuse(method, RANKED, BOTH, 6).shape == (1, 6)
    with pytest.raises(ValueError, match="fusion"):
        fuse("borda", RANKED, BOTH, 6)
    fused = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    global_scores = torch.tensor([[9.0, 8.0], [7.0, 6.0]])
    out = with_global_fallback(fused, global_scores, torch.tensor([True, False]))
    assert out.tolist() == [[1.0, 2.0], [7.0, 6.0]]
