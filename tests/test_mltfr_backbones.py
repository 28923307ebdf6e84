"""MLTFR wraps RecBole sequential backbones whatever their forward signature (issue 4, item 2)."""
import pytest
import torch

from mltfr_fixtures import build, first_batch, llm_cache, mltfr_config  # noqa: F401 (fixtures)

BACKBONES = ["SASRec", "GRU4Rec", "BERT4Rec", "NARM", "Caser", "NextItNet", "LightSANs", "FEARec", "CORE",
             "FMLPRec", "LinRec", "CL4SRec", "BSARec"]  # the last four: recbole_llm's own (issue 8)
NEEDS = {"FEARec": {"n_layers": 2},  # FEARec divides by n_layers - 1
         "BSARec": {"bsarec_c": 3}}  # low-pass bins must fit MAX_ITEM_LIST_LENGTH 10


def _zero_augmentation(model):
    for expert in model.experts:
        torch.nn.init.zeros_(expert.W_o.weight)
        torch.nn.init.zeros_(expert.W_o.bias)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mltfr_wraps_backbone(backbone, mltfr_config):
    cfg = dict(mltfr_config, backbone=backbone, mltfr_loss="backbone", loss_type="CE",
               llm_experts=["minilm"], token_pool=64, num_tokens=4, **NEEDS.get(backbone, {}))
    config, model, train, valid = build(cfg)
    assert type(model.backbone).__name__ == backbone

    seen = []
    original = model.semantic_augmentation
    model.semantic_augmentation = lambda seq, E, **kw: seen.append(tuple(seq.shape)) or original(seq, E, **kw)
    batch = first_batch(train).to(model.device)
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    L = batch[model.ITEM_SEQ].shape
    assert seen and all(s == tuple(L) for s in seen)          # only input-sequence lookups
    assert model.experts[0].W_align.weight.grad.abs().sum() > 0  # straight-through reaches W_align

    model.eval()
    vbatch = first_batch(valid).to(model.device)
    with torch.no_grad():
        scores = model.full_sort_predict(vbatch).view(vbatch[model.ITEM_SEQ].shape[0], -1)
        bare = model.backbone.full_sort_predict(vbatch).view_as(scores)  # hook idle outside MLTFR calls
        assert scores.shape[1] == model.n_items
        assert not torch.allclose(scores, bare)                # the augmentation reached the encoder
        _zero_augmentation(model)
        assert torch.allclose(model.full_sort_predict(vbatch).view_as(scores), bare, atol=1e-5)
