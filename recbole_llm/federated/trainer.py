"""``FederatedTrainer``: synchronous FedAvg rounds on RecBole data, in RecBole's own loop.

A round is what an epoch is to RecBole: :meth:`FederatedTrainer._train_epoch` runs
one round (sample ``client_fraction`` of the clients, let the method prepare their
data on the client side, run the engine's client updates from the broadcast global
model, aggregate with :class:`~recbole_llm.federated.server.FedAvgServer`), and
RecBole's ``Trainer.fit`` does the rest: evaluation every ``eval_step`` rounds with
RecBole's evaluator, early stopping, best-model checkpoints, logging, tensorboard,
wandb and callbacks.  ``rounds`` plays the part of ``epochs``.

The trainer knows no method: it reaches the model only through the client
interface (``client_loss``, ``max_seq_length``, ``causal``, ``use_views``) and a
method adds client-side data through :meth:`FederatedTrainer.prepare_cohort`
(LUMOS's views, :mod:`recbole_llm.model.lumos.trainer`).  With
``individual_learning`` the same rounds train every sampled client's own model and
nothing is averaged (LUMOS Fig. 2's reference, :mod:`.individual`).
"""
from time import time

import torch
from recbole.trainer import Trainer

from recbole_llm.compat import config_to_primitives
from recbole_llm.federated.client_data import build_clients
from recbole_llm.federated.client_update import LocalTrainingSpec, trainable_parameters
from recbole_llm.federated.engines import make_engine
from recbole_llm.federated.flower import local as flower_local
from recbole_llm.federated.individual import IndividualModels, train_own_models
from recbole_llm.federated.sampling import check_client_fraction, sample_clients
from recbole_llm.federated.server import FedAvgServer
from recbole_llm.federated.server_optimizers import ServerOptimizer, ServerOptimizerSpec


def load_parameters(model, params):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in params:
                p.copy_(params[name])


class FederatedTrainer(Trainer):
    """RecBole ``Trainer`` whose epoch is one FedAvg round."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs = self.rounds = int(config["rounds"])
        self.eval_step = min(config["eval_step"], self.epochs)
        self.client_fraction = config["client_fraction"]
        self.spec = LocalTrainingSpec.from_config(config)
        self.clients = None
        self.valid_history = []  # (round, valid result) of every evaluation
        self.federated_model = model  # trained by the engines; self.model is what RecBole evaluates
        self.individual = None  # IndividualModels when individual_learning is on
        self.server = self.engine = self.generator = None
        self._round = -1

    # -- hooks a method overrides --
    def setup_method(self, dataset):
        """Build what the method needs on the clients' side (before training); default nothing."""

    def prepare_cohort(self, cohort):
        """Client-side preparation of the sampled clients of a round; default nothing."""

    # -- the federation --
    def setup_clients(self, train_data):
        """Clients from RecBole's training split, the method's setup, checks (before training)."""
        dataset, model = train_data.dataset, self.federated_model
        self.clients = build_clients(dataset, model.max_seq_length, model.causal)
        check_client_fraction(self.client_fraction, len(self.clients))
        self.setup_method(dataset)
        if self.config["individual_learning"]:  # Fig. 2's reference: own models, no FedAvg
            self.individual = self.model = IndividualModels(model, dataset.user_num)
        return self.clients

    def train_round(self, server, engine, generator):
        """One FedAvg round (or individual-learning round); returns the mean local loss of the sampled clients."""
        index = sample_clients(len(self.clients), self.client_fraction, generator)
        cohort = [self.clients[i] for i in index]
        self.prepare_cohort(cohort)
        if self.individual is not None:
            return train_own_models(engine, self.individual, cohort)
        updates, loss = engine.run_round(server.broadcast(), cohort)
        load_parameters(self.federated_model, server.aggregate(updates))
        return loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """One round (RecBole's epoch ``epoch_idx``); returns its mean local loss."""
        self._round = epoch_idx
        return self.train_round(self.server, self.engine, self.generator)

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_history.append((self._round, dict(valid_result)))
        return valid_score, valid_result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        threads = torch.get_num_threads()
        if self.config["fed_num_threads"]:
            torch.set_num_threads(int(self.config["fed_num_threads"]))
        try:
            if self.config["fed_engine"] == "flower":
                return self.fit_on_flower(train_data, valid_data, verbose, saved)
            if self.clients is None:
                self.setup_clients(train_data)
            self.server = FedAvgServer(trainable_parameters(self.federated_model),
                                       ServerOptimizer(ServerOptimizerSpec.from_config(self.config)))
            self.engine = make_engine(self.config["fed_engine"], self.federated_model, self.spec)
            self.generator = torch.Generator().manual_seed(int(self.config["seed"]))
            return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                               show_progress=show_progress, callback_fn=callback_fn)
        finally:
            torch.set_num_threads(threads)

    def fit_on_flower(self, train_data, valid_data, verbose, saved):
        """All rounds on a loopback Flower federation (SuperLink + SuperNodes), then one evaluation."""
        self.setup_clients(train_data)  # same checks before training as the in-process engines
        job = config_to_primitives(self.config)
        job["config_dict"] = dict(job.pop("external_config_dict"), fed_engine="sequential")
        job["engine"] = "sequential"
        start = time()
        result = flower_local.run_local_federation(job, num_nodes=int(self.config["flower_num_nodes"]),
                                      timeout=int(self.config["flower_timeout"]))
        load_parameters(self.federated_model, result["params"])
        self._round = self.rounds - 1
        if verbose:
            self.logger.info(f"Flower federation: {len(result['rounds'])} rounds on "
                             f"{self.config['flower_num_nodes']} SuperNodes [time: {time() - start:.2f}s]")
        if valid_data is not None:
            self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress=False)
        if saved:
            self._save_checkpoint(self._round, verbose=verbose)
        return self.best_valid_score, self.best_valid_result
