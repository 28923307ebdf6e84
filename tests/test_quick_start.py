"""End to end through run_recbole_llm on ml-100k (tiny configs), and the reload."""
import pytest
import torch
from recbole.trainer import Trainer

from recbole_llm.quick_start import load_data_and_model, run_recbole_llm


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_sequential_end_to_end_and_reload(model, tiny_seq_config):
    result = run_recbole_llm(model=model, dataset="ml-100k", config_dict=tiny_seq_config, saved=True)
    test = result["test_result"]
    assert set(test) == {"hit@20", "ndcg@20"}
    assert 0.0 < test["ndcg@20"] <= test["hit@20"] <= 1.0
    assert result["valid_score_bigger"] is True
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@20"]

    config, loaded, dataset, train, valid, test_data = load_data_and_model(result["saved_model_file"])
    assert config["model"] == model and config["hidden_size"] == 16
    # RecBole's own Trainer/Evaluator on the reloaded checkpoint gives the same numbers.
    again = Trainer(config, loaded).evaluate(test_data, load_best_model=False)
    assert dict(again) == pytest.approx(dict(test), abs=1e-4)
    ckpt = torch.load(result["saved_model_file"])
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(loaded.state_dict()[k].cpu(), v.cpu())


def test_checkpoint_written_before_the_package_layout_change_still_loads(tmp_path, monkeypatch):
    """tests/data/fedseq_format1.pth: a tiny FedSeq (TINY_FED, 1 round) saved by recbole_llm 0.1.0
    when the federated models lived in recbole_llm.federated and trained in their own fit loop
    (test HR@20 0.0064, NDCG@20 0.0018 then)."""
    import os

    monkeypatch.chdir(tmp_path)
    path = os.path.join(os.path.dirname(__file__), "data", "fedseq_format1.pth")
    config, model, _, _, _, test_data = load_data_and_model(path)
    assert type(model).__name__ == "FedSeq" and config["hidden_size"] == 16
    result = Trainer(config, model).evaluate(test_data, load_best_model=False)
    assert result["hit@20"] == pytest.approx(0.0064, abs=1e-4)
    assert result["ndcg@20"] == pytest.approx(0.0018, abs=1e-4)


def test_checkpoint_of_another_format_is_refused_naming_it(tmp_path):
    import os

    ckpt = torch.load(os.path.join(os.path.dirname(__file__), "data", "fedseq_format1.pth"))
    ckpt["config"]["format"] = "recbole_llm/0"
    torch.save(ckpt, tmp_path / "old.pth")
    with pytest.raises(RuntimeError, match=r"format 'recbole_llm/0'.*reads 'recbole_llm/1'"):
        load_data_and_model(str(tmp_path / "old.pth"))
