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
from glob import escape, glob

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_llm.compat import init_distributed_device, race_free_ensure_dir, silence_recbole_future_warnings
from recbole_llm.registry import PLUGIN_MODELS, get_config_check, get_model
from recbole_llm.validation import ConfigError, integer, number, validate


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
        race_free_ensure_dir()
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

    def _init_device(self):  # dist_backend: gloo on CPUs (recbole_llm.compat.init_distributed_device)
        init_distributed_device(self, super()._init_device)

    def _set_default_parameters(self):
        if (self.final_config_dict.get("loss_type") == "CE"
                and "train_neg_sample_args" not in self.external_config_dict):
            self.final_config_dict["train_neg_sample_args"] = None
        super()._set_default_parameters()


# ---- checks of a user's config that need no data and no method: run before the dataset is
# loaded (the command line calls check_config_files before RecBole reads the files;
# check_config_before_data runs these with the method's own checks).

def check_config_files(file_list):
    """Each of ``file_list`` is a readable yaml file of ``key: value`` pairs, else a
    :class:`~recbole_llm.validation.ConfigError` naming ``config_files`` (RecBole would
    raise a bare ``FileNotFoundError`` or a multi-line yaml error)."""
    for path in file_list or ():
        if not os.path.isfile(path):
            raise ConfigError("config_files", path, "existing yaml files",
                              f"no such file; the working directory is {os.getcwd()}")
        try:
            with open(path, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ConfigError("config_files", path, "valid yaml",
                              where + str(getattr(err, "problem", None) or err).splitlines()[0]) from None
        except UnicodeDecodeError:
            raise ConfigError("config_files", path, "valid yaml", "not UTF-8 text") from None
        if not isinstance(content, dict):
            raise ConfigError("config_files", path, "yaml files of key: value pairs",
                              "it is empty" if content is None else f"it holds a {type(content).__name__}")


def check_dataset_files(config):
    """The atomic ``.inter`` file(s) of ``config['dataset']`` exist under ``data_path`` (or a saved
    dataset that RecBole would load instead does); else a ConfigError naming the folder.

    RecBole would otherwise try to download a dataset it knows by name (and fail offline)."""
    name, folder = config["dataset"], config["data_path"]
    saved = config["dataset_save_path"]
    if (saved and os.path.isfile(saved)) or glob(os.path.join(escape(config["checkpoint_dir"] or ""),
                                                              f"{escape(name)}-*Dataset.pth")):
        return
    suffixes = config["benchmark_filename"]
    files = [f"{name}.{suffix}.inter" for suffix in suffixes] if suffixes else [f"{name}.inter"]
    for file in files:
        if not os.path.isfile(os.path.join(folder, file)):
            raise ConfigError("dataset", name, "a dataset whose atomic files are in data_path/<dataset>",
                              f"no {file} in {os.path.abspath(folder)}; recbole_llm downloads no dataset: "
                              "put the files there or set data_path")


# RecBole's own keys that every model reads and RecBole does not check before training
# (a bad value fails deep in its trainer); RecBole's Config checks e.g. topk itself.
RECBOLE_RULES = {
    "epochs": integer(low=0),
    "train_batch_size": integer(low=1),
    "eval_batch_size": integer(low=1),
    "learning_rate": number(low=0, low_open=True),
    "weight_decay": number(low=0, optional=True),
    "stopping_step": integer(low=0),
}


def check_config_before_data(config):
    """Every check of ``config`` that needs no data, before :func:`recbole_llm.quick_start.prepare`
    loads the dataset: :data:`RECBOLE_RULES`, then the ``check_config_before_data`` that the
    model's method package exports (its rule tables, its backbone / sub-model names, its LLM
    paths; :func:`~recbole_llm.registry.get_config_check`), then the dataset's files.

    Checks that need the dataset (MLTFR's K against an LLM's whole vocabulary,
    ``client_fraction`` against the number of users, L3Rec's community count against the
    users) run when the model is built.
    """
    validate(config, RECBOLE_RULES)
    check = get_config_check(config["model"])
    if check is not None:
        check(config)
    check_dataset_files(config)
