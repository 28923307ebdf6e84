"""Config precedence: RecBole < plugin overall < backbone yaml < model yaml < files < dict < cmd."""
import os
import sys
import types
import importlib.machinery

import pytest
import yaml

import recbole_llm.config as cfg
from recbole_llm.config import Config
from recbole_llm import registry
from recbole.model.sequential_recommender import SASRec


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


@pytest.fixture
def props(tmp_path, monkeypatch):
    root = tmp_path / "props"
    _write(root / "overall.yaml", {"epochs": 1, "learning_rate": 0.5, "l_overall": "overall",
                                   "hidden_size": 11})
    monkeypatch.setattr(cfg, "PROPERTIES_DIR", str(root))
    return root


def test_shipped_properties_found():
    assert os.path.isfile(os.path.join(cfg.PROPERTIES_DIR, "overall.yaml"))
    c = Config("SASRec", "ml-100k", config_dict={"state": "WARNING"})
    assert c["detect_anomaly"] is False


def test_plugin_overall_overrides_recbole_defaults(props):
    c = Config("SASRec", "ml-100k")
    assert c["learning_rate"] == 0.5  # RecBole default 0.001
    assert c["l_overall"] == "overall"
    # RecBole's SASRec.yaml (hidden 64) is a model yaml: but plugin overall wins over it,
    # since RecBole's model defaults are all "RecBole defaults".
    assert c["hidden_size"] == 11


def test_full_precedence_chain(props, tmp_path, monkeypatch):
    _write(props / "model" / "SASRec.yaml", {"epochs": 2, "learning_rate": 0.25, "k_model": "model"})
    f1 = _write(tmp_path / "a.yaml", {"epochs": 3, "k_file": "a"})
    f2 = _write(tmp_path / "b.yaml", {"epochs": 4, "k_file": "b"})
    monkeypatch.setattr(sys, "argv", ["prog", "--epochs=6"])
    c = Config("SASRec", "ml-100k", config_file_list=[f1, f2], config_dict={"epochs": 5, "k_dict": 1})
    assert c["epochs"] == 6                      # command line wins
    assert c["k_file"] == "b" and c["k_dict"] == 1
    assert c["learning_rate"] == 0.25            # model yaml over plugin overall
    assert c["k_model"] == "model"
    monkeypatch.setattr(sys, "argv", ["prog"])
    assert Config("SASRec", "ml-100k", config_file_list=[f1, f2], config_dict={"epochs": 5})["epochs"] == 5
    assert Config("SASRec", "ml-100k", config_file_list=[f1, f2])["epochs"] == 4
    assert Config("SASRec", "ml-100k")["epochs"] == 2


class PlugOnly(SASRec):
    """A model that exists only in the plug-in (its yaml lives only in properties/)."""


@pytest.fixture
def plugin_model(monkeypatch):
    name = "recbole_llm.model.plugonly"
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.PlugOnly = PlugOnly
    monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(registry.PLUGIN_MODELS, "PlugOnly", name)
    return PlugOnly


def test_plugin_only_model_and_backbone_yaml(props, plugin_model):
    _write(props / "model" / "PlugOnly.yaml", {"backbone": "SASRec", "k_plug": 7, "n_heads": 4})
    c = Config("PlugOnly", "ml-100k")
    assert c["k_plug"] == 7
    assert c["n_heads"] == 4                 # model yaml over the backbone's yaml
    assert c["inner_size"] == 256            # from RecBole's SASRec.yaml via `backbone`
    assert c["hidden_size"] == 64            # backbone yaml over plugin overall
    assert c["MODEL_TYPE"].name == "SEQUENTIAL"
    assert c["eval_args"]["order"] == "TO"   # RecBole's sequential quick-start yaml


def test_ce_loss_needs_no_negative_sampling_flag():
    c = Config("SASRec", "ml-100k")
    assert c["loss_type"] == "CE"
    assert c["train_neg_sample_args"]["distribution"] == "none"
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config("SASRec", "ml-100k", config_dict={
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})


def test_method_family_yaml_holds_the_shared_keys():
    """LUMOS, FedSeq and ConFedSRS read one shared yaml; each model yaml holds only its differences."""
    configs = {m: Config(m, "ml-100k", command_line=False) for m in ("LUMOS", "FedSeq", "ConFedSRS")}
    for key in ("rounds", "local_epochs", "client_fraction", "cl_temperature", "fed_engine"):
        assert len({str(c[key]) for c in configs.values()}) == 1, key
    assert [configs[m]["view_generator"] for m in configs] == ["semantic", "none", "augment"]
    with open(cfg.model_yaml("FedSeq"), encoding="utf-8") as f:
        assert set(yaml.safe_load(f)) == {"view_generator", "cl_weight"}
    assert Config("L3RecTopN", "ml-100k", command_line=False)["fusion"] == "rrf"  # from method/l3rec.yaml


def test_renamed_key_keeps_its_old_name_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'local_epochs' is deprecated.*'local_model_epochs'"):
        c = Config("L3Rec", "ml-100k", config_dict={"local_epochs": 2}, command_line=False)
    assert c["local_model_epochs"] == 2
    assert Config("LUMOS", "ml-100k", config_dict={"local_epochs": 2}, command_line=False)["local_epochs"] == 2


def test_command_line_is_read_unless_turned_off(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--hidden_size=24", "--flwr-flag"])
    assert Config("SASRec", "ml-100k")["hidden_size"] == 24
    assert Config("SASRec", "ml-100k", command_line=False)["hidden_size"] == 64
