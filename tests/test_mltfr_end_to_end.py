"""MLTFR end to end on (a slice of) ml-100k through run_recbole_llm, both rounds (issue 4, items 5, 8, 10)."""
import os

import pytest
import torch

from mltfr_fixtures import llm_cache, mltfr_config  # noqa: F401 (fixtures)
from recbole_llm.compat import load_checkpoint
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm
from recbole_llm.utils import get_trainer


@pytest.mark.parametrize("backbone,extra", [
    ("SASRec", {}),                                                      # paper: BCE + 1 negative, with SC
    ("GRU4Rec", {"mltfr_loss": "backbone", "loss_type": "CE"}),          # backbone's CE, with SC
    ("BERT4Rec", {"mltfr_loss": "backbone", "loss_type": "CE", "use_sc": False}),  # "w/o SC" ablation
])
def test_end_to_end(backbone, extra, mltfr_config):
    cfg = dict(mltfr_config, backbone=backbone, **extra)
    result = run_recbole_llm(model="MLTFR", dataset="ml-100k", config_dict=cfg, saved=True)
    test = result["test_result"]
    assert 0.0 < test["ndcg@20"] <= test["hit@20"] <= 1.0
    final = load_checkpoint(result["saved_model_file"])["state_dict"]
    round1_file = result["saved_model_file"].replace(".pth", "-round1.pth")
    use_sc = extra.get("use_sc", True)
    assert bool(final["sc_active"]) == use_sc and os.path.isfile(round1_file) == use_sc
    if use_sc:
        round1 = load_checkpoint(round1_file)["state_dict"]
        assert (final["fisher_weights"] > 0).all()
        sc_keys = [k for k in final if k.startswith("sc_expert.")]
        assert sc_keys and all(torch.equal(final[k], round1[k]) for k in sc_keys)  # frozen in round 2
        assert not torch.equal(final["gate.b"], round1["gate.b"])                  # the rest trained on

    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    again = get_trainer(config["MODEL_TYPE"], "MLTFR")(config, model).evaluate(test_data, load_best_model=False)
    assert dict(again) == pytest.approx(dict(test), abs=1e-4)
