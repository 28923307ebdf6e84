"""Find models and trainers by name: this package first, then RecBole (RecBole-GNN style).

Ground layer: method packages are imported here only by name (``importlib``), when a
model is looked up, so ``import recbole_llm`` imports no model at all.  A model of
this package is exported by its method package (``recbole_llm.model.<method>``);
its trainer, if it needs one, is the ``<Model>Trainer`` that the same package
exports (or that of the nearest base class that has one).  Every trainer returned
here writes checkpoints that torch>=2.6 reloads safely
(:class:`recbole_llm.compat.SafeCheckpointMixin`).
"""
import difflib
import importlib
import inspect
import pkgutil

from recbole.model.abstract_recommender import AbstractRecommender, SequentialRecommender
from recbole.utils import get_trainer as recbole_get_trainer
from torch import nn

from recbole_llm.compat import (import_recbole_models, prepare_recbole_model, preserved_anomaly_mode,
                                with_safe_checkpoints)
from recbole_llm.validation import ConfigError

# name -> the method package that exports it (and its <name>Trainer, if any)
PLUGIN_MODELS = {
    "MLTFR": "recbole_llm.model.mltfr",
    "LUMOS": "recbole_llm.model.lumos",
    "FedSeq": "recbole_llm.model.lumos",
    "ConFedSRS": "recbole_llm.model.lumos",
    "L3Rec": "recbole_llm.model.l3rec",
    "L3RecTopN": "recbole_llm.model.l3rec",
    "POD": "recbole_llm.model.pod",
    "FMLPRec": "recbole_llm.model.backbones",
    "LinRec": "recbole_llm.model.backbones",
    "CL4SRec": "recbole_llm.model.backbones",
    "BSARec": "recbole_llm.model.backbones",
}

RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "sequential_recommender",
    "context_aware_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


def _model_classes(package):
    """Recommender classes defined in the modules of ``package`` (name -> class)."""
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception:  # an optional dependency missing: not listable here
            continue
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, AbstractRecommender) and obj.__module__ == module.__name__
                    and name.lower() == info.name):
                found[name] = obj
    return found


def plugin_model_names():
    return sorted(PLUGIN_MODELS)


def recbole_model_names():
    import_recbole_models()
    names = set()
    for sub in RECBOLE_MODEL_PACKAGES:
        try:
            pkg = importlib.import_module(f"recbole.model.{sub}")
        except Exception:
            continue
        names.update(_model_classes(pkg))
    return sorted(names)


def _find_recbole(model_name):
    for sub in RECBOLE_MODEL_PACKAGES:
        module_path = f"recbole.model.{sub}.{model_name.lower()}"
        try:
            if importlib.util.find_spec(module_path) is None:
                continue
        except ImportError:  # e.g. RecBole's exlib package without xgboost/lightgbm
            continue
        found = getattr(importlib.import_module(module_path), model_name, None)
        if found is not None:
            return found
    return None


def get_model(model_name):
    """Model class called ``model_name``: this package's first, then RecBole's.

    Raises ``ValueError`` listing the models of both when there is none.
    """
    if not isinstance(model_name, str):
        return model_name
    with preserved_anomaly_mode():  # a RecBole sequential model's import runs sine.py
        if model_name in PLUGIN_MODELS:
            return getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name)
        found = _find_recbole(model_name)
    if found is None:
        raise ValueError(
            f"Unknown model '{model_name}'. recbole_llm models: "
            f"{', '.join(plugin_model_names())}. RecBole models: "
            f"{', '.join(recbole_model_names())}. (Names are case-sensitive.)"
        )
    prepare_recbole_model(found)
    return found


def get_trainer(model_type, model_name):
    """Trainer class for a model: the ``<Model>Trainer`` its method package exports (or that
    of the nearest base class that has one), else RecBole's."""
    names = [model_name]
    try:  # a subclass of a plug-in model inherits its trainer
        names += [base.__name__ for base in get_model(model_name).__mro__[1:]]
    except ValueError:
        pass
    trainer = None
    for name in names:
        if name in PLUGIN_MODELS:
            with preserved_anomaly_mode():
                trainer = getattr(importlib.import_module(PLUGIN_MODELS[name]), f"{name}Trainer", None)
            if trainer is not None:
                break
    if trainer is None:
        trainer = recbole_get_trainer(model_type, model_name)
    return with_safe_checkpoints(trainer)


def sequential_backbone_class(config, wrapper, refused=None, forward_params=None):
    """The class of ``config['backbone']``, with every check of :func:`build_sequential_backbone`
    that needs no data (all but the ``item_embedding`` table): it also runs before the dataset
    is loaded (:func:`recbole_llm.config.check_config_before_data`)."""
    label, name = wrapper.__name__, config["backbone"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{label} needs a backbone sequential model: set config 'backbone' (e.g. SASRec)")
    if refused and name in refused:
        raise ValueError(f"{label} cannot wrap backbone '{name}': it {refused[name]}")
    try:
        backbone_class = get_model(name)
    except ValueError as err:
        raise ValueError(f"{label}: unknown backbone '{name}'. {err}") from err
    if not issubclass(backbone_class, SequentialRecommender) or issubclass(backbone_class, wrapper):
        raise ValueError(f"{label}: backbone '{name}' is not a sequential recommender it can wrap "
                         f"(a RecBole sequential model other than {label} itself).")
    if forward_params is not None:
        params = list(inspect.signature(backbone_class.forward).parameters)[1:1 + len(forward_params)]
        if params != list(forward_params):
            raise ValueError(f"{label} cannot wrap backbone '{name}': it needs forward"
                             f"({', '.join(forward_params)}), '{name}' has forward({', '.join(params)})")
    return backbone_class


def build_sequential_backbone(config, dataset, wrapper, refused=None, forward_params=None):
    """The RecBole sequential model that ``config['backbone']`` names, built on ``dataset``.

    The one place where a wrapper model (MLTFR, the federated LUMOS/FedSeq/ConFedSRS)
    turns its ``backbone`` key into a backbone instance.  Every check raises one
    ``ValueError`` naming the wrapper and the backbone, before any training:
    no name; a name in ``refused`` (``{name: reason}``); an unknown model; a model
    that is not sequential or is a ``wrapper`` itself (it would wrap itself without
    end); a ``forward`` whose leading parameters differ from ``forward_params``; no
    ``nn.Embedding`` ``item_embedding`` table.
    """
    label, name = wrapper.__name__, config["backbone"]
    backbone = sequential_backbone_class(config, wrapper, refused, forward_params)(config, dataset)
    if not isinstance(getattr(backbone, "item_embedding", None), nn.Embedding):
        raise ValueError(f"{label} cannot wrap backbone '{name}': it has no nn.Embedding "
                         "'item_embedding' table (the input lookup it augments, the table it scores with).")
    return backbone


# ---- model names a user typed, checked before any data is loaded (recbole_llm.config) ----

class UnknownNameError(ConfigError):
    """Config key ``key`` names a model that neither this package nor RecBole has.

    One line: ``Unknown model 'X': <key> must be <allowed>[; did you mean 'Y'?]``.
    """

    def __init__(self, key, name, allowed):
        self.key, self.value, self.allowed = key, name, allowed
        ValueError.__init__(self, f"Unknown model {name!r}: {key} must be {allowed}{_did_you_mean(name)}")


def _did_you_mean(name):
    names = plugin_model_names() + recbole_model_names()
    same_but_case = [n for n in names if n.lower() == str(name).lower()]
    close = same_but_case or difflib.get_close_matches(str(name), names, n=3)
    return f"; did you mean {' or '.join(repr(n) for n in close[:3])}?" if close else ""


def check_model_name(name, key="model", allowed=None):
    """The class of the model ``name`` that config key ``key`` gives, or :class:`UnknownNameError`."""
    if not isinstance(name, str) or not name:
        raise ConfigError(key, name, "a model name (str)")
    try:
        return get_model(name)
    except ValueError:
        pass
    if allowed is None:
        allowed = (f"a model of recbole_llm ({', '.join(plugin_model_names())}) or one of RecBole's "
                   f"{len(recbole_model_names())} (e.g. SASRec, GRU4Rec, BPR); names are case-sensitive")
    raise UnknownNameError(key, name, allowed)


def check_backbone(config, wrapper, refused=None, forward_params=None):
    """``config['backbone']`` names a sequential model that ``wrapper`` can wrap, as a
    :class:`ConfigError` naming ``backbone`` (no data needed; used before the dataset loads)."""
    name = config["backbone"]
    allowed = f"a sequential model that {config['model']} can wrap (e.g. SASRec, GRU4Rec, BERT4Rec)"
    if isinstance(name, str) and name and name not in (refused or {}):
        check_model_name(name, "backbone", allowed)
    try:
        sequential_backbone_class(config, wrapper, refused, forward_params)
    except ValueError as err:
        raise ConfigError("backbone", name, allowed, str(err)) from err


def get_config_check(model_name):
    """The ``check_config_before_data(config)`` that the method package of a plug-in model
    exports (its checks that need no data), or None (RecBole models, or a package without one)."""
    package = PLUGIN_MODELS.get(model_name) if isinstance(model_name, str) else None
    if package is None:
        return None
    with preserved_anomaly_mode():
        return getattr(importlib.import_module(package), "check_config_before_data", None)
