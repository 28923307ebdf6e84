"""L³Rec: local models on collaborative communities, fused by rank (Jeon et al., CIKM 2025).

Paper §4: a global CF model (MultVAE by default) embeds users and items; ``q``
anchor users chosen by LOCA's greedy coverage define overlapping user
communities through a kernel on the scaled arccos distance (§4.1, eq. 1-2);
one local model per community is trained on that community's interactions only
(§4.2, eq. 3); at inference the ranked lists of the user's local models are
fused by Count, RRF (eq. 5) or weighted RRF (eq. 6, CF affinity or per-user
validation NDCG), and users in no community get the global model (eq. 7).

This module holds what the model *is*: :class:`L3RecBase` has the sub-models'
configs and modules (the global model and the local models, any RecBole model,
SASRec by default; the paper's local LLM, POD, plugs in the same way), the
community weights (buffers, so a checkpoint restores everything), the methods
that set them, and the fused ``full_sort_predict`` (§4.3), so RecBole's
evaluator reports HR@K / NDCG@K.  :class:`L3Rec` is its sequential form (user
communities only, §4.1); :class:`~recbole_llm.model.l3rec.l3rec_topn.L3RecTopN`
its top-N form.  The constructor prepares no data: the global model is built on
:func:`~recbole_llm.model.l3rec.global_data.global_training_view` of the
training split it is given (no file read); ``L3RecTrainer`` prepares the global
model's loaders and trains everything.

Every L³Rec key has one rule in :data:`L3REC_RULES`, checked when the model is
built (before any training), with the checks that need the dataset or several keys.
"""
import torch
from recbole.data.interaction import Interaction
from recbole.model.abstract_recommender import AbstractRecommender, SequentialRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_llm.community.fusion import FUSIONS, fuse, with_global_fallback
from recbole_llm.community.kernels import KERNELS
from recbole_llm.community.local_models import PARALLEL_MODES
from recbole_llm.config import Config
from recbole_llm.knn import FAISS_DEVICES, KNN_INDEXES, KNN_OPTIONS
from recbole_llm.model.l3rec.global_data import global_training_view
from recbole_llm.registry import check_model_name, get_model
from recbole_llm.validation import ConfigError, Rule, boolean, integer, number, one_of, validate

_MODEL_NAME = Rule("a model name (str)", lambda v: isinstance(v, str) and bool(v))
_OVERRIDES = Rule("a dict of config overrides", lambda v: isinstance(v, dict), optional=True)
_BANDWIDTH = number(low=0, low_open=True, optional=True)

L3REC_RULES = {  # the keys of L3Rec and L3RecTopN (properties/method/l3rec.yaml and model yamls)
    "num_local_models": integer(low=1),  # q (and < the number of users: checked with the dataset)
    "bandwidth": number(low=0, low_open=True),  # h
    "train_bandwidth": _BANDWIDTH,
    "test_bandwidth": _BANDWIDTH,
    "item_bandwidth": _BANDWIDTH,
    "kernel": one_of(KERNELS),
    "knn_neighbors": integer(low=1),
    "knn_index": one_of(KNN_INDEXES),
    "knn_options": Rule(f"a dict with keys among {KNN_OPTIONS}",
                        lambda v: isinstance(v, dict) and set(v) <= set(KNN_OPTIONS), optional=True),
    "faiss_device": one_of(FAISS_DEVICES),
    "fusion": one_of(FUSIONS),
    "rrf_k": number(low=0),  # k of eq. 5/6
    "fusion_list_length": integer(low=1),  # N (and >= the largest topk: checked with topk)
    "valid_softmax_temperature": number(low=0, low_open=True),
    "item_communities": boolean(),
    "min_community_users": integer(low=1),
    "local_model": _MODEL_NAME,
    "local_model_epochs": integer(low=1),
    "local_config": _OVERRIDES,
    "global_model": _MODEL_NAME,
    "global_epochs": integer(low=1),
    "global_config": _OVERRIDES,
    "global_checkpoint": Rule("a checkpoint path (str)", lambda v: isinstance(v, str), optional=True),
    "parallel": one_of(PARALLEL_MODES),
    "parallel_workers": integer(low=1, optional=True),
    "ray_address": Rule("a Ray address (str)", lambda v: isinstance(v, str), optional=True),
}

# RecBole parameter groups that L3Rec passes to the global/local models' configs: data,
# split and evaluation must be identical; training settings only where the user set them,
# so that each sub-model's own yaml (e.g. POD's learning rate) applies otherwise.
_SHARED_GROUPS = ("General", "Evaluation", "Dataset")
_NOT_SHARED = {"epochs", "config_file", "model", "dataset", "data_path"}
# Keys RecBole's Config rewrites when it resolves them (data_path gets the dataset name appended):
# a sub-model config gets the value the user gave, which it resolves in turn.
_AS_GIVEN = ("data_path",)


def sub_model_config(config, model_name, overrides=None, epochs=None):
    """Config of a local or global model: L3Rec's data/eval settings, the training settings
    the user gave, then ``overrides`` (``local_config`` / ``global_config``); the command
    line is L3Rec's, already in ``config``."""
    shared = {}
    for group in _SHARED_GROUPS:
        for key in config.parameters.get(group, []):
            if key not in _NOT_SHARED and key in config.final_config_dict:
                shared[key] = config.final_config_dict[key]
    for key in config.parameters.get("Training", []) + ["detect_anomaly"]:
        if key in config.external_config_dict and key not in _NOT_SHARED:
            shared[key] = config.external_config_dict[key]
    for key in _AS_GIVEN:
        if key in config.external_config_dict:
            shared[key] = config.external_config_dict[key]
    shared.update(overrides or {})
    if epochs is not None:
        shared["epochs"] = int(epochs)
    return Config(model=model_name, dataset=config["dataset"], config_dict=shared, command_line=False)


class L3RecBase(AbstractRecommender):
    r"""L³Rec's parameters and scoring, shared by :class:`L3Rec` and ``L3RecTopN``.

    Not a model on its own: a subclass adds RecBole's ``SequentialRecommender`` or
    ``GeneralRecommender`` (which set the ids, ``n_items`` and the model type).
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_users = dataset.user_num
        self._check_config(config)
        self.num_local_models = config["num_local_models"]
        self.fusion = config["fusion"]
        self.rrf_k = float(config["rrf_k"])
        self.list_length = config["fusion_list_length"]
        self.temperature = float(config["valid_softmax_temperature"])

        self.local_config = sub_model_config(config, config["local_model"],
                                             config["local_config"], config["local_model_epochs"])
        self.global_config = sub_model_config(config, config["global_model"],
                                              config["global_config"], config["global_epochs"])
        self._check_sub_models(config)
        self.global_model = get_model(config["global_model"])(self.global_config,
                                                              global_training_view(dataset))
        self.local_models = nn.ModuleList(
            get_model(config["local_model"])(self.local_config, dataset) for _ in range(self.num_local_models))

        q = self.num_local_models
        self.register_buffer("anchors", torch.zeros(q, dtype=torch.long))
        self.register_buffer("train_weights", torch.zeros(q, self.n_users))
        self.register_buffer("test_weights", torch.zeros(q, self.n_users))
        self.register_buffer("item_members", torch.ones(q, self.n_items, dtype=torch.bool))
        self.register_buffer("local_trained", torch.zeros(q, dtype=torch.bool))
        self.register_buffer("valid_ndcg", torch.zeros(q, self.n_users))

    # ---- configuration checks (before anything is trained) ----

    def _check_config(self, config):
        """Each key by its rule; then the checks that need the dataset or several keys."""
        validate(config, L3REC_RULES)
        q = config["num_local_models"]
        if q >= self.n_users:
            raise ConfigError("num_local_models", q, f"at most the number of users ({self.n_users - 1})")
        topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
        if config["fusion_list_length"] < max(topk):
            raise ConfigError("fusion_list_length", config["fusion_list_length"],
                              f">= the largest topk ({max(topk)})", "items beyond the local lists are not ranked")

    def _check_sub_models(self, config):
        """The local and global models must fit this model and the data."""
        if self.global_config["MODEL_TYPE"] != ModelType.GENERAL:
            raise ConfigError("global_model", config["global_model"], "a RecBole general (CF) model",
                              f"it is {self.global_config['MODEL_TYPE'].name}")
        local_type = self.local_config["MODEL_TYPE"]
        if config["item_communities"] and local_type == ModelType.SEQUENTIAL:
            raise ConfigError(
                "item_communities", True, f"False with a sequential local_model ({config['local_model']})",
                "user-and-item assignment is for top-N local models only: it cuts each user's item "
                "sequence, which sequential models need whole (L3Rec paper §4.1)")
        if local_type not in (ModelType.SEQUENTIAL, ModelType.GENERAL):
            raise ConfigError("local_model", config["local_model"], "a sequential or general RecBole model",
                              f"it is {local_type.name}")
        if (local_type == ModelType.SEQUENTIAL and
                self.local_config["MAX_ITEM_LIST_LENGTH"] != config["MAX_ITEM_LIST_LENGTH"]):
            raise ConfigError("local_config", config["local_config"], "free of MAX_ITEM_LIST_LENGTH",
                              "set it for L3Rec: the data and the local models share it")

    # ---- state the trainer sets (the only writers of the buffers) ----

    def set_communities(self, communities):
        """Store a :class:`~recbole_llm.community.communities.Communities` in the buffers."""
        self.anchors.copy_(torch.as_tensor(communities.anchors))
        self.train_weights.copy_(torch.as_tensor(communities.train_weights))
        self.test_weights.copy_(torch.as_tensor(communities.test_weights))
        if communities.item_members is not None:
            self.item_members.copy_(torch.as_tensor(communities.item_members))

    def load_global_state(self, state_dict):
        """Weights of the global model (e.g. from ``global_checkpoint``)."""
        self.global_model.load_state_dict(state_dict)

    def load_local_state(self, j, state_dict):
        """Weights of local model ``j`` (trained elsewhere, e.g. in a worker process)."""
        self.local_models[j].load_state_dict(state_dict)

    def set_trained_local_models(self, indices):
        """Exactly the local models ``indices`` are trained: only they take part in the fusion."""
        self.local_trained.zero_()
        self.local_trained[torch.as_tensor(list(indices), dtype=torch.long, device=self.local_trained.device)] = True

    def trained_local_models(self):
        """Indices of the trained local models."""
        return torch.nonzero(self.local_trained).squeeze(1).tolist()

    def set_valid_ndcg(self, valid_ndcg):
        """``(q, n_users)`` NDCG of each local model on each user's validation items (``wrrf_valid``)."""
        self.valid_ndcg.copy_(torch.as_tensor(valid_ndcg))

    # ---- what the communities are ----

    def training_users(self, j):
        """Users who train local model ``j`` (train-kernel weight > 0), as a numpy array."""
        return torch.nonzero(self.train_weights[j] > 0).squeeze(1).cpu().numpy()

    def community_items(self, j):
        """Items of community ``j`` (all items without item communities), as a numpy array."""
        return torch.nonzero(self.item_members[j]).squeeze(1).cpu().numpy()

    # ---- scoring ----

    def calculate_loss(self, interaction):
        raise NotImplementedError("L3Rec is trained by L3RecTrainer (global model, communities, "
                                  "then one RecBole trainer per local model), not by a loss")

    def affinity(self, users):
        """``(B, q)`` test-kernel weights of ``users`` for the trained local models (0 = not in C(u))."""
        return self.test_weights[:, users].T * self.local_trained[None, :]

    def exclude_from_local_lists(self, scores, interaction):
        """Set to -inf, in place, the items a local model must not list (the padding item here)."""
        scores[:, 0] = float("-inf")

    def local_scores(self, j, interaction):
        """Full-ranking scores of local model ``j`` (excluded and non-community items at -inf)."""
        scores = self.local_models[j].full_sort_predict(interaction).view(len(interaction), -1).clone()
        self.exclude_from_local_lists(scores, interaction)
        return scores.masked_fill(~self.item_members[j], float("-inf"))

    def local_rank_lists(self, interaction, affinity):
        """``(B, q, N)`` top-N item ids of each relevant local model (-1 elsewhere)."""
        ranked = torch.full((len(interaction), self.num_local_models, self.list_length), -1,
                            dtype=torch.long, device=affinity.device)
        for j in range(self.num_local_models):
            rows = torch.nonzero(affinity[:, j] > 0).squeeze(1)
            if len(rows) == 0:
                continue
            values, items = torch.topk(self.local_scores(j, interaction[rows]), self.list_length, dim=1)
            ranked[rows, j] = items.masked_fill(torch.isinf(values), -1)
        return ranked

    def global_scores(self, users):
        """Eq. 7: the global CF model's scores for ``users``."""
        interaction = Interaction({self.global_model.USER_ID: users})
        return self.global_model.full_sort_predict(interaction).view(len(users), -1)

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        affinity = self.affinity(users)
        in_community = (affinity > 0).any(1)
        ranked = self.local_rank_lists(interaction, affinity)
        fused = fuse(self.fusion, ranked, affinity, self.n_items, self.rrf_k,
                     valid_ndcg=self.valid_ndcg[:, users].T, temperature=self.temperature)
        if bool(in_community.all()):
            return fused
        fallback = torch.zeros_like(fused)
        outside = torch.nonzero(~in_community).squeeze(1)
        fallback[outside] = self.global_scores(users[outside]).to(fused.dtype)
        return with_global_fallback(fused, fallback, in_community)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)


class L3Rec(L3RecBase, SequentialRecommender):
    r"""L³Rec for sequential recommendation: any RecBole local model, user-only communities."""

    type = ModelType.SEQUENTIAL


class _UsersNotKnownYet:
    """Stands for an L3Rec model before the data is loaded: the user-count check waits for the data."""

    n_users = float("inf")


def check_config_before_data(config):
    """L3Rec's checks that need no data: L3REC_RULES, fusion_list_length against topk, sub-model names."""
    L3RecBase._check_config(_UsersNotKnownYet(), config)
    for key in ("global_model", "local_model"):
        check_model_name(config[key], key)
