"""The few fixes RecBole 1.2.1 needs on today's stack (torch>=2.6, numpy<2).

Each fix is small, named, and has a test in ``tests/test_compat.py`` that shows
the break it mends:

* ``SafeCheckpointMixin`` -- RecBole's ``Trainer._save_checkpoint`` pickles the
  whole ``Config`` object, so ``Trainer.evaluate(load_best_model=True)`` and
  ``load_data_and_model`` fail on torch>=2.6, where ``torch.load`` defaults to
  ``weights_only=True``.  The mixin writes checkpoints made only of tensors and
  primitives (the *inputs* of the Config, not the object), which the safe
  loader accepts; nothing is ever unpickled with ``weights_only=False``.
* ``preserved_anomaly_mode`` / ``import_recbole_models`` -- importing
  ``recbole.model.sequential_recommender`` runs ``torch.autograd.set_detect_anomaly(True)``
  at module level (``sine.py``), which roughly doubles the cost of every backward
  pass in the process.  Model lookups keep the process's setting across that import,
  and every run sets it to config key ``detect_anomaly`` (default False).
* ``restore_dok_update`` -- RecBole's graph models (LightGCN, NGCF, SpectralCF,
  GCMC, NCL, KGIN, MCCLK) fill their adjacency with ``dok_matrix._update``, a
  private SciPy method that SciPy>=1.12 removed, so they fail at construction.
  We give ``dok_matrix`` back that one method (a bulk ``dict.update`` of
  ``(row, col) -> value`` entries, what RecBole passes), and only when one of
  those models is looked up (:func:`prepare_recbole_model`): importing this
  package patches nothing.
* ``silence_recbole_future_warnings`` -- RecBole's dataset code uses pandas idioms
  that pandas 2.2 deprecates (chained ``inplace`` assignment, ...), and its trainer
  builds ``torch.cuda.amp.GradScaler``; every run prints a wall of ``FutureWarning`` s
  about RecBole's own code that a user cannot act on.  Filters that match only
  ``FutureWarning`` s attributed to ``recbole.data`` and the GradScaler one from
  ``recbole.trainer`` are installed when a :class:`~recbole_llm.config.Config` is built
  (and for every test); warnings from anywhere else, this package included, still show.
"""
import contextlib
import enum
import importlib
import warnings

import torch

CHECKPOINT_FORMAT = "recbole_llm/1"

RECBOLE_FUTURE_WARNINGS = (  # (message regex, module regex) of the FutureWarnings RecBole's own code raises
    ("", r"recbole\.data\."),                                  # pandas deprecations in RecBole's dataset code
    (r"`torch\.cuda\.amp\.GradScaler", r"recbole\.trainer\."),  # RecBole's Trainer.__init__
)


def silence_recbole_future_warnings():
    """Ignore the FutureWarnings RecBole 1.2.1's own code raises (see the module docstring); nothing else."""
    for message, module in RECBOLE_FUTURE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning, module=module)


def set_anomaly_detection(enabled):
    """Turn autograd anomaly detection on or off for the whole process."""
    torch.autograd.set_detect_anomaly(bool(enabled))


@contextlib.contextmanager
def preserved_anomaly_mode():
    """Keep the process's anomaly-detection setting across imports of RecBole's models.

    Any import of a module of ``recbole.model.sequential_recommender`` runs the
    package's ``sine.py``, which switches anomaly detection on; every model lookup of
    this package happens inside this context.
    """
    before = torch.is_anomaly_enabled()
    try:
        yield
    finally:
        set_anomaly_detection(before)


def import_recbole_models():
    """Import RecBole's model packages, undoing the anomaly switch of ``sine.py``.

    ``recbole.model.sequential_recommender.sine`` calls
    ``torch.autograd.set_detect_anomaly(True)`` when imported.  We keep whatever
    the process had before the import.
    """
    with preserved_anomaly_mode():
        for sub in ("general_recommender", "sequential_recommender",
                    "context_aware_recommender", "knowledge_aware_recommender"):
            importlib.import_module("recbole.model." + sub)


def restore_dok_update():
    """Give ``scipy.sparse.dok_matrix`` the ``_update`` method RecBole's graph models call."""
    import scipy.sparse as sp

    if hasattr(sp.dok_matrix, "_update"):
        return

    def _update(self, entries):
        store = getattr(self, "_dict", None)
        (store if store is not None else super(sp.dok_matrix, self)).update(entries)

    sp.dok_matrix._update = _update


# RecBole models that call dok_matrix._update (grep of recbole 1.2.1's model sources)
DOK_UPDATE_MODELS = frozenset({"LightGCN", "NGCF", "SpectralCF", "GCMC", "NCL", "KGIN", "MCCLK"})


def prepare_recbole_model(model_class):
    """Apply the compat fixes a RecBole model class needs before it is built."""
    if model_class.__name__ in DOK_UPDATE_MODELS:
        restore_dok_update()


def _primitive(value):
    """Return ``value`` as str/int/float/bool/None/list/dict, or raise TypeError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        raise TypeError("enum")
    if isinstance(value, (list, tuple)):
        return [_primitive(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _primitive(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def config_to_primitives(config):
    """The inputs needed to rebuild ``config``: model, dataset and user settings.

    A RecBole ``Config`` is fully determined by the model name, the dataset name
    and the *external* settings (config files, config dict, command line); the
    internal defaults are re-read from the yaml files on reload.  Values that are
    not plain data are dropped (none of the user-facing settings are).
    """
    external = {}
    for key, value in getattr(config, "external_config_dict", {}).items():
        try:
            external[key] = _primitive(value)
        except TypeError:
            continue
    return {
        "format": CHECKPOINT_FORMAT,
        "model": str(config["model"]),
        "dataset": str(config["dataset"]),
        "external_config_dict": external,
    }


def load_checkpoint(path, map_location=None):
    """Load a checkpoint with ``torch.load(weights_only=True)`` and a clear error.

    Files written by RecBole itself pickle a ``Config`` and are refused: we do
    not unpickle files this package did not write.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError
        raise RuntimeError(
            f"{path} is not a recbole_llm checkpoint that can be loaded safely "
            "(tensors and plain data only). Checkpoints written by stock RecBole "
            "pickle its Config object; retrain with recbole_llm, or load such a "
            "trusted file yourself with torch.load(weights_only=False). "
            f"Loader said: {str(err).splitlines()[0]}"
        ) from err


class SafeCheckpointMixin:
    """Trainer mixin: write checkpoints that ``torch.load(weights_only=True)`` reads.

    Same keys as RecBole's ``Trainer._save_checkpoint`` except that ``config``
    holds :func:`config_to_primitives` instead of the pickled Config object, so
    RecBole's own ``evaluate(load_best_model=True)`` and ``resume_checkpoint``
    work unchanged on torch>=2.6.
    """

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": config_to_primitives(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, saved_model_file)
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")


_SAFE_TRAINERS = {}


def with_safe_checkpoints(trainer_class):
    """Return a subclass of ``trainer_class`` that saves safe checkpoints."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    if trainer_class not in _SAFE_TRAINERS:
        _SAFE_TRAINERS[trainer_class] = type(
            trainer_class.__name__, (SafeCheckpointMixin, trainer_class),
            {"__module__": __name__, "__doc__": trainer_class.__doc__},
        )
    return _SAFE_TRAINERS[trainer_class]
