"""get_model / get_trainer: this package first, then RecBole; one clear error."""
import importlib.machinery
import sys
import types

import pytest
from recbole.model.sequential_recommender import SASRec as RecBoleSASRec
from recbole.trainer import Trainer

from recbole_llm import registry
from recbole_llm.compat import SafeCheckpointMixin
from recbole_llm.utils import get_model, get_trainer
from recbole.utils import ModelType


def test_recbole_models_found():
    assert get_model("SASRec") is RecBoleSASRec
    assert get_model("BPR").__name__ == "BPR"
    assert get_model(RecBoleSASRec) is RecBoleSASRec


def test_plugin_model_shadows_recbole(monkeypatch):
    class SASRec(RecBoleSASRec):
        pass

    name = "recbole_llm.model.sasrec"
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.SASRec = SASRec
    monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(registry.PLUGIN_MODELS, "SASRec", name)
    assert get_model("SASRec") is SASRec


def test_unknown_model_error_lists_both():
    with pytest.raises(ValueError) as info:
        get_model("NoSuchModel")
    msg = str(info.value)
    assert "NoSuchModel" in msg and "SASRec" in msg and "BPR" in msg
    assert "recbole_llm models:" in msg and "RecBole models:" in msg
    with pytest.raises(ValueError, match="case-sensitive"):
        get_model("sasrec")


def test_get_trainer_fallback_and_plugin(monkeypatch):
    t = get_trainer(ModelType.SEQUENTIAL, "SASRec")
    assert issubclass(t, Trainer) and issubclass(t, SafeCheckpointMixin)
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is t  # cached, one class

    class FooTrainer(Trainer):
        pass

    class Foo(RecBoleSASRec):
        pass

    name = "recbole_llm.model.foo"
    mod = types.ModuleType(name)
    mod.Foo, mod.FooTrainer = Foo, FooTrainer
    monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(registry.PLUGIN_MODELS, "Foo", name)
    t2 = get_trainer(ModelType.SEQUENTIAL, "Foo")
    assert issubclass(t2, FooTrainer) and issubclass(t2, SafeCheckpointMixin)
    kg = get_trainer(ModelType.KNOWLEDGE, "CKE")
    assert kg.__name__ == "KGTrainer"


def test_plugin_model_subclass_inherits_plugin_trainer():
    from recbole_llm.model.l3rec import L3RecTrainer
    from recbole_llm.model.lumos import LUMOSTrainer

    assert issubclass(get_trainer(ModelType.SEQUENTIAL, "L3RecTopN"), L3RecTrainer)
    assert issubclass(get_trainer(ModelType.SEQUENTIAL, "LUMOS"), LUMOSTrainer)
