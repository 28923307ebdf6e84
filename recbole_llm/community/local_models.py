"""Training L³Rec's local models, one per community, possibly in parallel (paper §4.2).

Each local model is any RecBole model, built by L3Rec on the whole training
set (so whatever a model derives from its dataset at construction, e.g. an
item indexing, is the same for every community and for a reloaded
checkpoint), then trained by RecBole's own trainer on its community's slice
of the training set only (``dataset.copy`` of the filtered ``inter_feat``:
user and item ids stay global, so every local model scores the same item
catalogue and the scores line up at fusion).

The paper's local objective (eq. 3) is an unweighted sum over the community's
interactions, and RecBole models return a batch-mean loss with no per-sample
weights, so local training is unweighted: the train kernel decides who is in
a community, the test kernel weights users at fusion (``wrrf_cf``).

``parallel``: ``none`` trains one model after the other in this process;
``process`` uses a ``concurrent.futures`` pool of spawned processes (torch
threads split between workers); ``ray`` submits one Ray task per model, to a
local Ray or to the cluster at ``ray_address``.  Every task is seeded
(``seed + j``), so the three modes train the same weights.
"""
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Optional

import numpy as np
import torch
from recbole.data.utils import get_dataloader
from recbole.utils import init_seed

from recbole_llm.compat import set_anomaly_detection
from recbole_llm.registry import get_trainer

PARALLEL_MODES = ("none", "process", "ray")


def community_dataset(dataset, users, items=None):
    """The rows of a RecBole ``dataset`` whose user is in ``users`` (and item in ``items``)."""
    keep = np.isin(dataset.inter_feat[dataset.uid_field].numpy(), users)
    if items is not None:
        keep &= np.isin(dataset.inter_feat[dataset.iid_field].numpy(), items)
    return dataset.copy(dataset.inter_feat[torch.from_numpy(np.flatnonzero(keep))])


@dataclass
class LocalTask:
    """Everything a worker needs to train local model ``index``: plain picklable objects."""

    index: int
    model: Any  # the untrained local model (trained in place when parallel is none)
    config: Any  # recbole_llm Config of the local model
    dataset: Any  # the community's training rows (a RecBole Dataset)
    sampler: Any  # RecBole's train sampler (None when the loss needs no negatives)
    seed: int
    num_threads: Optional[int] = None


def train_local_model(task):
    """Seed and train one local model with RecBole's trainer; returns its weights.

    Returns ``{"index", "state_dict" (CPU tensors), "seconds", "rows"}``.
    """
    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if task.num_threads:
        torch.set_num_threads(task.num_threads)
    try:
        return _train(task, start)
    finally:
        torch.set_num_threads(threads_before)


def _train(task, start):
    set_anomaly_detection(task.config["detect_anomaly"])
    config = task.config
    init_seed(task.seed, config["reproducibility"])
    model = task.model.to(config["device"])
    loader = get_dataloader(config, "train")(config, task.dataset, task.sampler, shuffle=True)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(loader, None, verbose=False, saved=False, show_progress=False)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"index": task.index, "state_dict": state,
            "seconds": time.perf_counter() - start, "rows": len(task.dataset)}


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError("parallel='ray' needs Ray (installed with RecBole: pip install ray)") from err
    return ray


def train_local_models(tasks, parallel="none", workers=None, ray_address=None):
    """Train every task's local model; results in the order of ``tasks``."""
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
    tasks = list(tasks)
    if not tasks:
        return []
    if parallel == "none":
        return [train_local_model(task) for task in tasks]
    workers = int(workers or min(len(tasks), os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    for task in tasks:
        task.num_threads = task.num_threads or threads
    if parallel == "process":
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            return list(pool.map(train_local_model, tasks))
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, num_cpus=None if ray_address else workers,
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=1)(train_local_model)
        return ray.get([remote.remote(task) for task in tasks])
    finally:
        if started:
            ray.shutdown()
