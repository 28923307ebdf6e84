"""Each backbone trains and is scored end to end on ml-100k through run_recbole_llm
(tiny config: 1 epoch, hidden 16, length 10, users with at most 40 interactions)."""
import pytest

from recbole_llm.quick_start import run_recbole_llm

VARIANTS = [
    ("FMLPRec", {}),
    ("LinRec", {}),  # BERT4Rec-style masked-item training (default)
    ("LinRec", {"train_style": "sasrec", "transform": None}),
    ("CL4SRec", {}),
    ("BSARec", {"bsarec_c": 3}),
]


@pytest.mark.parametrize("model, overrides", VARIANTS)
def test_backbone_trains_and_is_evaluated_on_ml100k(model, overrides, tiny_seq_config):
    config = dict(tiny_seq_config, user_inter_num_interval="[0,40]", **overrides)
    result = run_recbole_llm(model=model, dataset="ml-100k", config_dict=config)
    test = result["test_result"]
    assert set(test) == {"hit@20", "ndcg@20"}
    assert 0 <= test["ndcg@20"] <= test["hit@20"] <= 1
    # one epoch already learns item popularity: well above a random ranking (20 / ~1600 items)
    assert test["hit@20"] > 2 * 20 / 1600
