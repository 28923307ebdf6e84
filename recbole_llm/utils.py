"""Model and trainer lookup: this package first, then RecBole (RecBole-GNN style).

A model ``Foo`` of this package lives in ``recbole_llm/model/foo.py``; its
trainer, if it needs one, is ``recbole_llm.trainer.FooTrainer``.  Every trainer
returned here writes checkpoints that torch>=2.6 can reload safely
(:class:`recbole_llm.compat.SafeCheckpointMixin`).
"""
import importlib
import inspect
import pkgutil

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_llm.compat import import_recbole_models, with_safe_checkpoints

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
    import recbole_llm.model as pkg

    return sorted(_model_classes(pkg))


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


def _find(package, model_name):
    module_path = f"{package}.{model_name.lower()}"
    try:
        if importlib.util.find_spec(module_path) is None:
            return None
    except ImportError:  # e.g. RecBole's exlib package without xgboost/lightgbm
        return None
    module = importlib.import_module(module_path)
    return getattr(module, model_name, None)


def get_model(model_name):
    """Model class called ``model_name``: this package's first, then RecBole's.

    Raises ``ValueError`` listing the models of both when there is none.
    """
    if not isinstance(model_name, str):
        return model_name
    found = _find("recbole_llm.model", model_name)
    if found is None:
        import_recbole_models()  # imports RecBole's models, undoing sine.py's anomaly switch
        for sub in RECBOLE_MODEL_PACKAGES:
            found = _find(f"recbole.model.{sub}", model_name)
            if found is not None:
                break
    if found is None:
        raise ValueError(
            f"Unknown model '{model_name}'. recbole_llm models: "
            f"{', '.join(plugin_model_names())}. RecBole models: "
            f"{', '.join(recbole_model_names())}. (Names are case-sensitive.)"
        )
    return found


def get_trainer(model_type, model_name):
    """Trainer class for a model: ``recbole_llm.trainer.<Model>Trainer`` (or that of the
    nearest base class that has one), else RecBole's."""
    trainers = importlib.import_module("recbole_llm.trainer")
    names = [model_name]
    try:  # a subclass of a plug-in model inherits its trainer (e.g. L3RecTopN -> L3RecTrainer)
        names += [base.__name__ for base in get_model(model_name).__mro__[1:]]
    except ValueError:
        pass
    trainer = next((getattr(trainers, f"{name}Trainer") for name in names
                    if hasattr(trainers, f"{name}Trainer")), None)
    if trainer is None:
        trainer = recbole_get_trainer(model_type, model_name)
    return with_safe_checkpoints(trainer)


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
    from recbole.model.abstract_recommender import SequentialRecommender
    from torch import nn

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
    backbone = backbone_class(config, dataset)
    if not isinstance(getattr(backbone, "item_embedding", None), nn.Embedding):
        raise ValueError(f"{label} cannot wrap backbone '{name}': it has no nn.Embedding "
                         "'item_embedding' table (the input lookup it augments, the table it scores with).")
    return backbone
