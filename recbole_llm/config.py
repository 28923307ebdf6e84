"""RecBole ``Config`` that also reads this package's ``properties/``.

Precedence, lowest first (what a RecBole user expects):
RecBole defaults (its overall.yaml, model yaml, dataset yaml, model-type quick
start yaml) < this package's ``properties/overall.yaml`` < the yaml of the
``backbone`` a wrapper model names (RecBole's, then this package's) < the yaml of
the model's method family (``properties/method/<method>.yaml``, shared by e.g.
LUMOS, FedSeq and ConFedSRS, the way RecBole-GNN loads one quick-start yaml per
model type) < this package's ``properties/model/<Model>.yaml`` (only what differs
from its family) < user ``config_file_list`` < ``config_dict`` < command line.

Conveniences over RecBole:

* a model trained with ``loss_type: CE`` needs no negative sampling, and RecBole
  refuses such a config unless the user also sets ``train_neg_sample_args: ~``; here
  that is implied unless the user set it;
* ``command_line=False`` builds a Config that ignores ``sys.argv`` (RecBole's
  ``Config`` always reads it): for sub-model configs and for processes whose
  command line belongs to another program (Flower);
* a renamed key keeps its old name as a deprecated alias (:data:`DEPRECATED_KEYS`):
  the old name still works, with a warning naming the new one.
"""
import os
import warnings

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_llm.compat import silence_recbole_future_warnings
from recbole_llm.registry import PLUGIN_MODELS, get_model


def _properties_dir():
    here = os.path.dirname(os.path.realpath(__file__))
    installed = os.path.join(here, "properties")  # wheel / site-packages layout
    if os.path.isfile(os.path.join(installed, "overall.yaml")):
        return installed
    return os.path.join(os.path.dirname(here), "properties")  # source checkout


PROPERTIES_DIR = _properties_dir()
RECBOLE_PROPERTIES_DIR = os.path.join(
    os.path.dirname(os.path.realpath(__import__("recbole").__file__)), "properties"
)

# method family -> {old key: new key}: renamed keys whose old name still works
DEPRECATED_KEYS = {
    # L3Rec's local_epochs meant "epochs of each community model"; LUMOS's local_epochs
    # means "local optimiser steps per client per round", so L3Rec's key was renamed.
    "l3rec": {"local_epochs": "local_model_epochs"},
}


def model_yaml(model_name, plugin=True):
    """Path of the default yaml of ``model_name`` (may not exist)."""
    root = PROPERTIES_DIR if plugin else RECBOLE_PROPERTIES_DIR
    return os.path.join(root, "model", f"{model_name}.yaml")


def method_of(model_name):
    """The method family (``mltfr``, ``lumos``, ``l3rec``, ...) of a model of this package, else None."""
    package = PLUGIN_MODELS.get(model_name) if isinstance(model_name, str) else None
    return package.rpartition(".")[2] if package else None


def method_yaml(model_name):
    """Path of the shared yaml of ``model_name``'s method family (may not exist)."""
    return os.path.join(PROPERTIES_DIR, "method", f"{method_of(model_name)}.yaml")


class Config(RecBoleConfig):
    """RecBole's Config, resolving models through :func:`recbole_llm.registry.get_model`."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None,
                 command_line=True):
        silence_recbole_future_warnings()
        self._read_command_line = command_line
        self._model_arg = model if isinstance(model, str) or model is None else model.__name__
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list,
                         config_dict=config_dict)

    def _load_cmd_line(self):
        if not self._read_command_line:
            return {}
        return super()._load_cmd_line()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _merge_external_config_dict(self):
        super()._merge_external_config_dict()
        model = self._model_arg or self.external_config_dict.get("model")
        renamed = DEPRECATED_KEYS.get(method_of(model), {})
        for old, new in renamed.items():
            if old in self.external_config_dict:
                warnings.warn(f"config key '{old}' is deprecated for this model; use '{new}'",
                              DeprecationWarning, stacklevel=2)
                self.external_config_dict.setdefault(new, self.external_config_dict.pop(old))

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self._update_internal_config_dict(os.path.join(PROPERTIES_DIR, "overall.yaml"))
        own_yamls = [path for path in (method_yaml(model), model_yaml(model)) if os.path.isfile(path)]
        backbone = self.external_config_dict.get("backbone")
        for path in reversed(own_yamls):  # the model's yaml wins over its family's
            if backbone is None:
                with open(path, encoding="utf-8") as f:
                    backbone = (yaml.load(f.read(), Loader=self.yaml_loader) or {}).get("backbone")
        if isinstance(backbone, str):
            for path in (model_yaml(backbone, plugin=False), model_yaml(backbone)):
                if os.path.isfile(path):
                    self._update_internal_config_dict(path)
        for path in own_yamls:
            self._update_internal_config_dict(path)

    def _set_default_parameters(self):
        if (self.final_config_dict.get("loss_type") == "CE"
                and "train_neg_sample_args" not in self.external_config_dict):
            self.final_config_dict["train_neg_sample_args"] = None
        super()._set_default_parameters()
