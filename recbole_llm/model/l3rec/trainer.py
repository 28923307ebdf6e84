"""``L3RecTrainer``: the training procedure of L³Rec (paper §4, Fig. 2), on RecBole's Trainer.

The model holds parameters and scores; this trainer prepares the data and trains.
It changes the model only through the model's methods (``load_global_state``,
``set_communities``, ``load_local_state``, ``set_trained_local_models``,
``set_valid_ndcg``) and trains its sub-models in place.

``fit`` runs the paper's divide-conquer-combine training:

1. prepare the global CF model's data (RecBole's ``create_dataset`` +
   ``data_preparation`` on its general view of the data, same split; checked to
   use L³Rec's user and item ids, see :mod:`.global_data`), then train the global
   model with RecBole's trainer (or load it from ``global_checkpoint``);
2. embed users (and items) with it and discover the communities (FAISS kNN,
   greedy coverage anchors, kernel weights; logs Table 2);
3. train one local model per community on the community's interactions only,
   with ``parallel: none | process | ray``; communities with fewer than
   ``min_community_users`` training users are skipped with a warning (their
   users are served by their other communities or by the global model);
4. for ``fusion: wrrf_valid``, measure each local model's NDCG@5 on each of its
   users' validation item (Table 6 "wRRF(LLM)"; validation scores under this
   fusion are therefore optimistic, test scores are not);
5. evaluate the fused model on the validation set and save one checkpoint
   (tensors only) holding the global model, the local models and the weights.

``L3RecTopNTrainer`` is the same procedure under the name the registry looks up
for ``L3RecTopN``.
"""
import warnings

import numpy as np
import torch
from recbole.trainer import Trainer

from recbole_llm.community.cf_embeddings import cf_user_item_embeddings
from recbole_llm.community.communities import discover_communities
from recbole_llm.community.local_models import LocalTask, community_dataset, train_local_models
from recbole_llm.compat import load_checkpoint
from recbole_llm.model.l3rec.global_data import prepare_global_data
from recbole_llm.registry import get_trainer

VALID_NDCG_CUTOFF = 5  # the paper weighs local models by NDCG@5 on held-out interactions


class L3RecTrainer(Trainer):
    """Trains L³Rec's global model, communities and local models, then evaluates the fusion."""

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        model = self.model
        self.train_global_model(train_data, show_progress)
        model.set_communities(self.discover_communities())
        self.train_local_models(train_data)
        if model.fusion == "wrrf_valid":
            if valid_data is None:
                raise ValueError("fusion 'wrrf_valid' needs validation data")
            self.measure_valid_ndcg(valid_data)
        self.best_valid_result = None
        if valid_data is not None:
            self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress)
            if verbose:
                self.logger.info(f"L3Rec valid result: {dict(self.best_valid_result)}")
        if saved:
            self._save_checkpoint(0, verbose=verbose)
        return self.best_valid_score, self.best_valid_result

    def train_global_model(self, train_data, show_progress=False):
        """Step 1: prepare the global model's data (checked against ``train_data``), then train the
        global CF model on it, or load ``global_checkpoint``."""
        model = self.model
        gconfig = model.global_config
        # (train, valid, test) loaders of the global model; the id check runs before any training
        self.global_data = prepare_global_data(gconfig, train_data._dataset)
        path = self.config["global_checkpoint"]
        if path:
            model.load_global_state(load_checkpoint(path, map_location=self.device)["state_dict"])
            self.logger.info(f"L3Rec global model loaded from {path}")
            return
        trainer = get_trainer(gconfig["MODEL_TYPE"], gconfig["model"])(gconfig, model.global_model)
        trainer.fit(self.global_data[0], None, verbose=False, saved=False, show_progress=show_progress)

    def discover_communities(self):
        """Step 2: communities in the global model's embedding space (Table 2 is logged)."""
        model, config = self.model, self.config
        user_emb, item_emb = cf_user_item_embeddings(model.global_model)
        user_mask = np.ones(len(user_emb), bool)
        user_mask[0] = False  # RecBole's padding user
        bandwidth = float(config["bandwidth"])
        return discover_communities(
            user_emb, model.num_local_models,
            train_bandwidth=config["train_bandwidth"] or bandwidth,
            test_bandwidth=config["test_bandwidth"] or bandwidth,
            kernel=config["kernel"], knn_neighbors=config["knn_neighbors"],
            faiss_device=config["faiss_device"], knn_index=config["knn_index"], user_mask=user_mask,
            item_embeddings=item_emb if config["item_communities"] else None,
            item_bandwidth=config["item_bandwidth"], **(config["knn_options"] or {}))

    def local_tasks(self, train_data):
        """One :class:`LocalTask` per community large enough to train."""
        model, config = self.model, self.config
        tasks = []
        for j in range(model.num_local_models):
            users = model.training_users(j)
            if len(users) < int(config["min_community_users"]):
                warnings.warn(
                    f"L3Rec: community {j} has {len(users)} training users (< min_community_users="
                    f"{config['min_community_users']}); it is skipped and its users use their other "
                    "communities or the global model", RuntimeWarning)
                continue
            items = model.community_items(j) if config["item_communities"] else None
            subset = community_dataset(train_data._dataset, users, items)
            tasks.append(LocalTask(j, model.local_models[j], model.local_config, subset,
                                   train_data._sampler, seed=int(config["seed"]) + j))
        return tasks

    def train_local_models(self, train_data):
        """Step 3: train the local models (in parallel when asked) and load their weights."""
        model, config = self.model, self.config
        tasks = self.local_tasks(train_data)
        results = train_local_models(tasks, config["parallel"], config["parallel_workers"],
                                     config["ray_address"])
        for result in results:
            j = result["index"]
            model.load_local_state(j, result["state_dict"])
            self.logger.info(f"L3Rec local model {j}: {result['rows']} training rows, "
                             f"{result['seconds']:.1f} s")
        model.set_trained_local_models(result["index"] for result in results)
        self.local_results = [{k: v for k, v in r.items() if k != "state_dict"} for r in results]

    @torch.no_grad()
    def measure_valid_ndcg(self, valid_data):
        """Step 4: NDCG@5 of each local model on each of its users' validation item(s)."""
        model = self.model
        model.eval()
        valid_ndcg = torch.zeros(model.num_local_models, model.n_users, device=self.device)
        for interaction, _, positive_u, positive_i in valid_data:
            interaction = interaction.to(self.device)
            positive_u, positive_i = positive_u.to(self.device), positive_i.to(self.device)
            users = interaction[model.USER_ID]
            affinity = model.affinity(users)
            for j in range(model.num_local_models):
                rows = torch.nonzero(affinity[:, j] > 0).squeeze(1)
                if len(rows) == 0:
                    continue
                scores = torch.full((len(users), model.n_items), float("-inf"), device=self.device)
                scores[rows] = model.local_scores(j, interaction[rows])
                keep = affinity[positive_u, j] > 0
                pos_u, pos_i = positive_u[keep], positive_i[keep]
                rank = (scores[pos_u] > scores[pos_u, pos_i][:, None]).sum(1) + 1
                ndcg = (rank <= VALID_NDCG_CUTOFF) / torch.log2(rank.float() + 1)
                total = torch.zeros(len(users), device=self.device).index_add_(0, pos_u, ndcg.float())
                count = torch.zeros(len(users), device=self.device).index_add_(
                    0, pos_u, torch.ones_like(ndcg, dtype=torch.float))
                valid_ndcg[j, users[rows]] = (total / count.clamp_min(1))[rows]
        model.set_valid_ndcg(valid_ndcg)


class L3RecTopNTrainer(L3RecTrainer):
    """The trainer of ``L3RecTopN``: :class:`L3RecTrainer`'s procedure, unchanged."""
