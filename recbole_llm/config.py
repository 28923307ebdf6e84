"""RecBole ``Config`` that also reads this package's ``properties/``.

Precedence, lowest first (what a RecBole user expects, DESIGN.md §2):
RecBole defaults (its overall.yaml, model yaml, dataset yaml, model-type quick
start yaml) < this package's ``properties/overall.yaml`` < the yaml of the
``backbone`` a wrapper model names (RecBole's, then this package's) < this
package's ``properties/model/<Model>.yaml`` < user ``config_file_list`` <
``config_dict`` < command line.

One convenience over RecBole: a model trained with ``loss_type: CE`` needs no
negative sampling, and RecBole refuses such a config unless the user also sets
``train_neg_sample_args: ~``; here that is implied unless the user set it.
"""
import os

from recbole.config import Config as RecBoleConfig


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


def model_yaml(model_name, plugin=True):
    """Path of the default yaml of ``model_name`` (may not exist)."""
    root = PROPERTIES_DIR if plugin else RECBOLE_PROPERTIES_DIR
    return os.path.join(root, "model", f"{model_name}.yaml")


class Config(RecBoleConfig):
    """RecBole's Config, resolving models through :func:`recbole_llm.utils.get_model`."""

    def _get_model_and_dataset(self, model, dataset):
        from recbole_llm.utils import get_model

        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self._update_internal_config_dict(os.path.join(PROPERTIES_DIR, "overall.yaml"))
        own_yaml = model_yaml(model)
        backbone = self.external_config_dict.get("backbone")
        if backbone is None and os.path.isfile(own_yaml):
            with open(own_yaml, encoding="utf-8") as f:
                import yaml

                backbone = (yaml.load(f.read(), Loader=self.yaml_loader) or {}).get("backbone")
        if isinstance(backbone, str):
            for path in (model_yaml(backbone, plugin=False), model_yaml(backbone)):
                if os.path.isfile(path):
                    self._update_internal_config_dict(path)
        if os.path.isfile(own_yaml):
            self._update_internal_config_dict(own_yaml)

    def _set_default_parameters(self):
        if (self.final_config_dict.get("loss_type") == "CE"
                and "train_neg_sample_args" not in self.external_config_dict):
            self.final_config_dict["train_neg_sample_args"] = None
        super()._set_default_parameters()
