"""``run_recbole_llm`` and ``load_data_and_model``: RecBole's quick start for this plug-in.

Same pipeline and return value as ``recbole.quick_start.run_recbole``, built from
RecBole's own pieces (``create_dataset``, ``data_preparation``, trainers,
evaluator) with this package's :class:`~recbole_llm.config.Config`,
``get_model`` / ``get_trainer`` and safe checkpoints.

Distributed training is RecBole's: ``run_recbole_llm(..., nproc=2)`` spawns
:func:`run_recbole_llms` in ``nproc`` processes (``world_size``, ``ip``, ``port`` and
``group_offset`` for several machines), as ``recbole.quick_start.run`` spawns
``run_recboles``, and returns rank 0's result.  Config key ``dist_backend`` picks the
process-group backend (gloo on CPUs, :func:`recbole_llm.compat.init_distributed_device`).
"""
import sys
from collections.abc import MutableMapping
from logging import getLogger

import torch.distributed as dist
import torch.multiprocessing as mp

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_llm import __version__
from recbole_llm.compat import CHECKPOINT_FORMAT, config_to_primitives, load_checkpoint, set_anomaly_detection
from recbole_llm.config import Config, check_config_before_data, method_of
from recbole_llm.federated.individual import IndividualModels
from recbole_llm.history_exclusion import exclude_history
from recbole_llm.utils import get_model, get_trainer
from recbole_llm.validation import ConfigError


def build_model(config, train_data):
    """Seed, instantiate ``config['model']`` on the training set and move it to the device."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = get_model(config["model"])
    return model_class(config, train_data._dataset).to(config["device"])


def prepare(config):
    """Seed, log, build and split the dataset of ``config``; returns (dataset, train, valid, test).

    With ``eval_exclude_history: True`` the full-sort valid and test loaders of a
    sequential model also mask each user's history (:mod:`recbole_llm.history_exclusion`).
    """
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    set_anomaly_detection(config["detect_anomaly"])
    dataset = create_dataset(config)
    getLogger().info(dataset)
    train, valid, test = data_preparation(config, dataset)
    if config["eval_exclude_history"]:
        exclude_history(config, train, valid, test)
    return dataset, train, valid, test


def run_recbole_llm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
                    nproc=1, world_size=-1, ip="localhost", port="5678", group_offset=0, queue=None):
    """Train and test ``model`` on ``dataset``, like ``recbole.quick_start.run_recbole``.

    Returns a dict with ``best_valid_score``, ``valid_score_bigger``,
    ``best_valid_result`` and ``test_result``.  Any RecBole model name works, as
    does every model of this package.

    ``nproc > 1`` or ``world_size > 0`` trains one model with RecBole's distributed
    data parallelism, as ``recbole.quick_start.run`` does: ``nproc`` processes on this
    machine (ranks ``group_offset`` to ``group_offset + nproc - 1`` of ``world_size``,
    default ``nproc``), meeting at ``tcp://ip:port``; returns rank 0's result.  In a
    spawned rank (``config_dict`` holds ``local_rank``), ``queue`` receives rank 0's result.
    """
    if nproc > 1 or world_size > 0:
        return _spawn(model, dataset, config_file_list, config_dict, saved,
                      nproc, world_size, ip, port, group_offset)
    config = Config(model=model, dataset=dataset,
                    config_file_list=config_file_list, config_dict=config_dict)
    check_config_before_data(config)  # every check that needs no data, before the dataset loads
    _, train_data, valid_data, test_data = prepare(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    model = build_model(config, train_data)
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    logger.info("The running environment of this training is as follows:\n"
                + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "saved_model_file": trainer.saved_model_file if saved else None,
    }
    if not config["single_spec"]:  # a rank of a distributed run, as RecBole's run_recbole ends one
        dist.destroy_process_group()
        if config["local_rank"] == 0 and queue is not None:
            queue.put(result)
    return result


# methods whose trainers do not train one model on batches (RecBole DDP would not apply) -> how they scale out
NOT_DATA_PARALLEL = {
    "lumos": "with fed_engine: flower (docs/lumos.md, Flower deployment engine)",
    "l3rec": "its local models with parallel: ray (ray_address for a cluster) or parallel: process",
}


def run_recbole_llms(rank, *args):
    """One rank of a distributed run (``torch.multiprocessing.spawn``'s target), like RecBole's
    ``run_recboles``: ``args`` are ``run_recbole_llm``'s positional arguments, the last one a
    dict of its keyword arguments (``config_dict``, ``queue``, ``saved``)."""
    kwargs = args[-1]
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"The last argument of run_recbole_llms should be a dict, but got {type(kwargs)}")
    kwargs["config_dict"] = dict(kwargs.get("config_dict") or {}, local_rank=rank)
    return run_recbole_llm(*args[:-1], **kwargs)


def _spawn(model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset):
    """``recbole.quick_start.run``'s distributed branch for :func:`run_recbole_llms`: spawn ``nproc``
    ranks, return rank 0's result.  The config is built and checked here first (no process
    group, no data), so that a bad value fails once, before any process starts."""
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": nproc if world_size == -1 else world_size, "ip": ip, "port": port,
                        "nproc": nproc, "offset": group_offset})
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_config_before_data(config)
    scale_out = NOT_DATA_PARALLEL.get(method_of(config["model"]))
    if scale_out:  # their trainers run their own loops: every rank would train a model of its own
        key, value = ("nproc", nproc) if nproc > 1 else ("world_size", world_size)
        raise ConfigError(key, value, f"{1 if key == 'nproc' else -1} for {config['model']}",
                          f"RecBole's data parallelism trains one model; {config['model']} scales out {scale_out}")
    queue = mp.get_context("spawn").SimpleQueue()
    kwargs = {"config_dict": config_dict, "queue": queue, "saved": saved}
    mp.spawn(run_recbole_llms, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def load_data_and_model(model_file):
    """Rebuild config, model, dataset and data loaders from a recbole_llm checkpoint.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` as
    RecBole's function of the same name does.  The checkpoint is read with
    ``torch.load(weights_only=True)``.
    """
    checkpoint = load_checkpoint(model_file)
    saved = checkpoint["config"]
    if not isinstance(saved, dict) or "external_config_dict" not in saved:
        raise RuntimeError(f"{model_file} was not written by recbole_llm")
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"{model_file} has checkpoint format {saved.get('format')!r}; this version of "
                           f"recbole_llm ({__version__}) reads {CHECKPOINT_FORMAT!r}. Retrain, or load it "
                           "with the version that wrote it.")
    config = Config(model=saved["model"], dataset=saved["dataset"],
                    config_dict=dict(saved["external_config_dict"]))
    dataset, train_data, valid_data, test_data = prepare(config)
    model = build_model(config, train_data)
    if config["individual_learning"]:  # LUMOS Fig. 2's reference: the checkpoint holds one model per user
        model = IndividualModels(model, dataset.user_num)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


__all__ = ["run_recbole_llm", "run_recbole_llms", "load_data_and_model", "config_to_primitives"]


def objective_function(config_dict=None, config_file_list=None, saved=True, command_line=False):
    """One trial of RecBole's ``HyperTuning``: train and test the model that the config names.

    ``HyperTuning`` calls ``objective_function(config_dict, fixed_config_file_list)``;
    ``config_dict`` (the sampled parameters, plus ``model`` and ``dataset`` unless a
    config file names them) and ``config_file_list`` build this package's
    :class:`~recbole_llm.config.Config`, so any RecBole model and every model of this
    package works, each with its own trainer's ``fit`` and ``evaluate`` (rounds of the
    federated models, MLTFR's two rounds, L3Rec's local models, POD) as in
    :func:`run_recbole_llm`.  The command line is ignored unless ``command_line=True``
    (``run_hyper.py`` turns its extra ``--key=value`` arguments into ``config_dict``
    entries itself, below the sampled parameters).

    Returns RecBole's contract: ``best_valid_score``, ``valid_score_bigger``,
    ``best_valid_result``, ``test_result``, plus ``model`` (RecBole 1.2.1's
    ``HyperTuning.trial`` reads it).
    """
    from logging import FileHandler

    logger = getLogger()
    for handler in logger.handlers[:]:  # init_logger adds nothing while the root logger has handlers:
        logger.removeHandler(handler)   # drop the last trial's (as RecBole does): this one logs to its own file
        if isinstance(handler, FileHandler):
            handler.close()
    config = Config(config_dict=config_dict, config_file_list=config_file_list,
                    command_line=command_line)
    check_config_before_data(config)
    _, train_data, valid_data, test_data = prepare(config)
    model = build_model(config, train_data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, verbose=False, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


__all__ += ["objective_function"]
