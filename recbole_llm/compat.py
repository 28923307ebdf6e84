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
* ``init_distributed_device`` -- RecBole's distributed run (``--nproc``, ``run_recboles``)
  is CUDA-only: ``Config._init_device`` calls ``init_process_group(backend="nccl")``,
  asserts one ``gpu_id`` per process and puts rank r on ``cuda:r``, and its ``Trainer``
  wraps the model in ``DistributedDataParallel(model, device_ids=[r])``, which DDP
  refuses for a CPU module; so it cannot even be tried without a GPU.  Config key
  ``dist_backend`` (``auto``: ``nccl`` when CUDA is available and ``gpu_id`` is not
  empty, else ``gloo``) picks the backend: ``nccl`` is RecBole's own path, untouched;
  ``gloo`` runs each rank on the CPU and builds the DDP wrapper without ``device_ids``
  (:func:`ddp_on_module_device`, which also leaves sparse buffers such as POD's item trie
  out of DDP's broadcast, which refuses them on any backend).  In any distributed run the
  ranks also agree on the checkpoint: RecBole names it by each rank's clock and lets rank 1
  read it while rank 0 may still be writing it, so :class:`SafeCheckpointMixin` takes rank
  0's file name and waits at a barrier after rank 0 writes.
* ``race_free_ensure_dir`` -- RecBole's ``ensure_dir`` checks, then creates, so of two
  processes that share a working directory (the ranks of a distributed run, parallel Ray
  Tune trials, L3Rec's parallel local models) the one that checks while the other creates
  dies with ``FileExistsError`` on ``./log``, ``./log/<model>`` or the checkpoint dir.  Every
  RecBole module that calls it gets ``os.makedirs(exist_ok=True)`` instead, installed when a
  :class:`~recbole_llm.config.Config` is built (before RecBole's logger or trainer runs).
"""
import contextlib
import enum
import importlib
import os
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recbole_llm.validation import ConfigError

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

    def __init__(self, config, model, *args, **kwargs):
        super().__init__(config, model, *args, **kwargs)
        if _distributed(config):  # one file for all ranks: RecBole names it by each rank's clock
            name = [self.saved_model_file]
            dist.broadcast_object_list(name, src=0)
            self.saved_model_file = name[0]

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if _distributed(self.config):  # every rank calls this at the same points (map-reduced scores)
            if self.config["local_rank"] == 0:
                self._write_checkpoint(epoch, verbose, **kwargs)
            dist.barrier()  # no rank reads the file before rank 0 has written it
            return
        self._write_checkpoint(epoch, verbose, **kwargs)

    def _write_checkpoint(self, epoch, verbose=True, **kwargs):
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


# ---- distributed runs off CUDA (init_distributed_device) ------------------------------------

DIST_BACKENDS = ("auto", "nccl", "gloo")


def _distributed(config):
    return not config["single_spec"] and dist.is_available() and dist.is_initialized()


def dist_backend(final_config_dict):
    """The process-group backend that config key ``dist_backend`` picks (``nccl`` or ``gloo``).

    ``auto`` (the default): ``nccl`` when CUDA is available and ``gpu_id`` is not empty, else ``gloo``.
    """
    value = final_config_dict.get("dist_backend", "auto")
    if value not in DIST_BACKENDS:
        raise ConfigError("dist_backend", value, "one of " + ", ".join(DIST_BACKENDS))
    if value != "auto":
        return value
    gpu_id = str(final_config_dict.get("gpu_id", ""))
    return "nccl" if torch.cuda.is_available() and gpu_id.strip("(), ") != "" else "gloo"


def ddp_on_module_device(module, device_ids=None, **kwargs):
    """``DistributedDataParallel`` as RecBole builds it (``device_ids=[local_rank]``), except that a
    module on the CPU gets no ``device_ids`` (DDP refuses them there), and that sparse buffers
    are not synchronised (DDP cannot broadcast them; POD's item trie is one, built from the
    whole dataset and the config's seed, hence the same on every rank)."""
    sparse = [name for name, buffer in module.named_buffers() if buffer.is_sparse]
    if sparse:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, sparse)
    on_cuda = any(p.is_cuda for p in module.parameters())
    return DistributedDataParallel(module, device_ids=device_ids if on_cuda else None, **kwargs)


def _use_ddp_on_module_device():
    import recbole.trainer.trainer as recbole_trainer  # the one name RecBole's Trainer builds DDP with

    recbole_trainer.DistributedDataParallel = ddp_on_module_device


def _ensure_dir(dir_path):
    """RecBole's ``ensure_dir`` without its check-then-create race."""
    os.makedirs(dir_path, exist_ok=True)


RECBOLE_ENSURE_DIR_USERS = ("recbole.utils", "recbole.utils.logger",  # not recbole.utils.utils, its home
                            "recbole.trainer.trainer", "recbole.data.utils", "recbole.data.dataset.dataset")


def race_free_ensure_dir():
    """Give every RecBole module that imported ``ensure_dir`` the race-free one (idempotent)."""
    for name in RECBOLE_ENSURE_DIR_USERS:
        importlib.import_module(name).ensure_dir = _ensure_dir


def init_distributed_device(config, recbole_init_device):
    """``Config._init_device``: RecBole's (``recbole_init_device``) unless the run is distributed
    (``local_rank`` set) on ``gloo``; then the process group is gloo and the device the CPU."""
    final = config.final_config_dict
    backend = dist_backend(final)  # checked in every run, so a bad value fails before any spawn
    if "local_rank" not in final:
        return recbole_init_device()
    _use_ddp_on_module_device()
    if backend == "nccl":
        return recbole_init_device()
    gpu_id = final["gpu_id"]
    final["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
    os.environ["CUDA_VISIBLE_DEVICES"] = final["gpu_id"]  # as RecBole does
    if not dist.is_initialized():  # a sub-model's Config in the same rank reuses the group
        dist.init_process_group(backend=backend, rank=final["local_rank"] + final["offset"],
                                world_size=final["world_size"],
                                init_method=f"tcp://{final['ip']}:{final['port']}")
    final["device"] = torch.device("cpu")
    final["single_spec"] = False
    if final["local_rank"] != 0:
        final["state"], final["show_progress"], final["verbose"] = "error", False, False


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
