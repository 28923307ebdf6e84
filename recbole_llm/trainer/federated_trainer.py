"""``FederatedTrainer``: synchronous FedAvg rounds on RecBole data (LUMOS §3, §5.1).

Replaces RecBole's epoch loop by rounds: sample ``client_fraction`` of the
clients, make sure their views are cached (client side), run the engine's
client updates from the broadcast global model, aggregate with
:class:`~recbole_llm.federated.server.FedAvgServer`.  Every ``eval_step`` rounds
the global model is scored with RecBole's evaluator on the valid loader, with
RecBole's early stopping (``stopping_step`` evaluations without improvement),
best-model checkpoints, logging and tensorboard scalars; a tqdm bar follows the
rounds when ``show_progress`` is on.  With ``individual_learning`` the same rounds
train every sampled client's own model and nothing is averaged (Fig. 2's reference,
:mod:`recbole_llm.federated.individual`).
"""
from time import time

import torch
from recbole.trainer import Trainer
from recbole.utils import early_stopping, set_color
from tqdm import tqdm

from recbole_llm.federated.client_data import build_clients
from recbole_llm.federated.client_update import LocalTrainingSpec, SequentialEngine, trainable_parameters
from recbole_llm.federated.individual import IndividualModels, train_own_models
from recbole_llm.federated.sampling import check_client_fraction, sample_clients
from recbole_llm.federated.server import FedAvgServer
from recbole_llm.federated.vectorized import VectorizedEngine
from recbole_llm.federated.views import build_view_generator, prepare_views


def make_engine(name, model, spec, config=None):
    """The engine named by ``fed_engine`` (vectorized, sequential)."""
    if name == "sequential":
        return SequentialEngine(model, spec)
    if name == "vectorized":
        return VectorizedEngine(model, spec)
    raise ValueError(f"fed_engine must be vectorized, sequential or flower, got {name!r}")


def load_parameters(model, params):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in params:
                p.copy_(params[name])


class FederatedTrainer(Trainer):
    """RecBole ``Trainer`` whose ``fit`` runs FedAvg rounds instead of epochs."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.rounds = int(config["rounds"])
        self.client_fraction = config["client_fraction"]
        self.spec = LocalTrainingSpec.from_config(config)
        self.clients = None
        self.view_generator = None
        self.valid_history = []  # (round, valid result) of every evaluation
        self.federated_model = model  # trained by the engines; self.model is what RecBole evaluates
        self.individual = None  # IndividualModels when individual_learning is on

    def setup_clients(self, train_data):
        """Clients from RecBole's training split, views generator, checks (before training)."""
        dataset, model = train_data.dataset, self.federated_model
        self.clients = build_clients(dataset, model.max_seq_length, model.causal)
        check_client_fraction(self.client_fraction, len(self.clients))
        if model.use_views:
            self.view_generator = build_view_generator(self.config, dataset)
        if self.config["individual_learning"]:  # Fig. 2's reference: own models, no FedAvg
            self.individual = self.model = IndividualModels(model, dataset.user_num)
        return self.clients

    def train_round(self, server, engine, generator):
        """One FedAvg round (or individual-learning round); returns the mean local loss of the sampled clients."""
        index = sample_clients(len(self.clients), self.client_fraction, generator)
        cohort = [self.clients[i] for i in index]
        if self.view_generator is not None:
            prepare_views(cohort, self.view_generator, self.federated_model.max_seq_length)
        if self.individual is not None:
            return train_own_models(engine, self.individual, cohort)
        updates, loss = engine.run_round(server.broadcast(), cohort)
        load_parameters(self.federated_model, server.aggregate(updates))
        return loss

    def fit_on_flower(self, train_data, valid_data, verbose, saved):
        """All rounds on a loopback Flower federation (SuperLink + SuperNodes), then one evaluation."""
        from recbole_llm.compat import config_to_primitives
        from recbole_llm.federated.flower.local import run_local_federation

        self.setup_clients(train_data)  # same checks before training as the in-process engines
        job = config_to_primitives(self.config)
        job["config_dict"] = dict(job.pop("external_config_dict"), fed_engine="sequential")
        job["engine"] = "sequential"
        start = time()
        result = run_local_federation(job, num_nodes=int(self.config["flower_num_nodes"]),
                                      timeout=int(self.config["flower_timeout"]))
        load_parameters(self.federated_model, result["params"])
        rnd = self.rounds - 1
        if verbose:
            self.logger.info(f"Flower federation: {len(result['rounds'])} rounds on "
                             f"{self.config['flower_num_nodes']} SuperNodes [time: {time() - start:.2f}s]")
        if valid_data is not None:
            self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress=False)
            self.valid_history.append((rnd, dict(self.best_valid_result)))
        if saved:
            self._save_checkpoint(rnd, verbose=verbose)
        return self.best_valid_score, self.best_valid_result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        threads = torch.get_num_threads()
        if self.config["fed_num_threads"]:
            torch.set_num_threads(int(self.config["fed_num_threads"]))
        try:
            return self._fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        if self.config["fed_engine"] == "flower":
            return self.fit_on_flower(train_data, valid_data, verbose, saved)
        if self.clients is None:
            self.setup_clients(train_data)
        server = FedAvgServer(trainable_parameters(self.federated_model))
        engine = make_engine(self.config["fed_engine"], self.federated_model, self.spec, self.config)
        generator = torch.Generator().manual_seed(int(self.config["seed"]))
        if saved and self.start_epoch >= self.rounds:
            self._save_checkpoint(-1, verbose=verbose)
        self.eval_collector.data_collect(train_data)
        bar = tqdm(range(self.start_epoch, self.rounds), desc=set_color("FedAvg rounds", "pink"),
                   disable=not show_progress, ncols=100)
        for rnd in bar:
            start = time()
            loss = self.train_round(server, engine, generator)
            self.train_loss_dict[rnd] = loss
            self.tensorboard.add_scalar("Loss/Train", loss, rnd)
            bar.set_postfix(loss=f"{loss:.4f}")
            if verbose:
                self.logger.info(set_color("round %d training", "green") % rnd
                                 + f" [{set_color('time', 'blue')}: {time() - start:.2f}s, "
                                 + f"{set_color('train loss', 'blue')}: {loss:.4f}]")
            if valid_data is None or ((rnd + 1) % self.eval_step and rnd + 1 < self.rounds):
                if saved and valid_data is None:
                    self._save_checkpoint(rnd, verbose=verbose)
                continue
            start = time()
            valid_score, valid_result = self._valid_epoch(valid_data, show_progress=False)
            self.best_valid_score, self.cur_step, stop, update = early_stopping(
                valid_score, self.best_valid_score, self.cur_step, max_step=self.stopping_step,
                bigger=self.valid_metric_bigger)
            self.valid_history.append((rnd, dict(valid_result)))
            self.tensorboard.add_scalar("Vaild_score", valid_score, rnd)
            for name, value in valid_result.items():
                self.tensorboard.add_scalar(f"valid/{name}", value, rnd)
            if verbose:
                self.logger.info(set_color("round %d evaluating", "green") % rnd
                                 + f" [{set_color('time', 'blue')}: {time() - start:.2f}s, "
                                 + f"{set_color('valid_score', 'blue')}: {valid_score:.6f}]")
                self.logger.info(set_color("valid result", "blue") + ": \n" + str(dict(valid_result)))
            if update:
                if saved:
                    self._save_checkpoint(rnd, verbose=verbose)
                self.best_valid_result = valid_result
            if callback_fn:
                callback_fn(rnd, valid_score)
            if stop:
                if verbose:
                    self.logger.info(f"Finished training, best eval result in round "
                                     f"{rnd - self.cur_step * self.eval_step}")
                break
        bar.close()
        self._add_hparam_to_tensorboard(self.best_valid_score)
        return self.best_valid_score, self.best_valid_result


class LUMOSTrainer(FederatedTrainer):
    """FedAvg with tri-view contrastive clients (LUMOS)."""


class FedSeqTrainer(FederatedTrainer):
    """Vanilla FedAvg of a sequential backbone (FedSeq baseline)."""


class ConFedSRSTrainer(FederatedTrainer):
    """FedAvg with CL4SRec-style augmented views (ConFedSRS baseline)."""
