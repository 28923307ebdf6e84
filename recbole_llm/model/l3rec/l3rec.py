"""L³Rec: local models on collaborative communities, fused by rank (Jeon et al., CIKM 2025).

Paper §4: a global CF model (MultVAE by default) embeds users and items; ``q``
anchor users chosen by LOCA's greedy coverage define overlapping user
communities through a kernel on the scaled arccos distance (§4.1, eq. 1-2);
one local model per community is trained on that community's interactions only
(§4.2, eq. 3); at inference the ranked lists of the user's local models are
fused by Count, RRF (eq. 5) or weighted RRF (eq. 6, CF affinity or per-user
validation NDCG), and users in no community get the global model (eq. 7).

The local model is any RecBole model (SASRec by default); the paper's local
LLM (POD) plugs in the same way.  ``L3RecTrainer`` does the training; this
module holds the global and local models, the community weights (buffers, so
a checkpoint restores everything) and ``full_sort_predict``, so RecBole's
evaluator reports HR@K / NDCG@K.

The global model is built on its own general (non-sequential) view of the same
dataset with the same leave-one-out split; user and item ids are checked to
coincide with this dataset's.
"""
import contextlib
import sys

import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_llm.community.fusion import FUSIONS, fuse, with_global_fallback
from recbole_llm.community.kernels import KERNELS
from recbole_llm.knn import KNN_INDEXES, KNN_OPTIONS
from recbole_llm.community.local_models import PARALLEL_MODES
from recbole_llm.config import Config
from recbole_llm.registry import get_model

# RecBole parameter groups that L3Rec passes to the global/local models' configs: data,
# split and evaluation must be identical; training settings only where the user set them,
# so that each sub-model's own yaml (e.g. POD's learning rate) applies otherwise.
_SHARED_GROUPS = ("General", "Evaluation", "Dataset")
_NOT_SHARED = {"epochs", "config_file", "model", "dataset"}


@contextlib.contextmanager
def _without_command_line():
    """RecBole's Config reads sys.argv; a sub-model config must take L3Rec's resolved values."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def sub_model_config(config, model_name, overrides=None, epochs=None):
    """Config of a local or global model: L3Rec's data/eval settings, the training settings
    the user gave, then ``overrides`` (``local_config`` / ``global_config``)."""
    shared = {}
    for group in _SHARED_GROUPS:
        for key in config.parameters.get(group, []):
            if key not in _NOT_SHARED and key in config.final_config_dict:
                shared[key] = config.final_config_dict[key]
    for key in config.parameters.get("Training", []) + ["detect_anomaly"]:
        if key in config.external_config_dict and key not in _NOT_SHARED:
            shared[key] = config.external_config_dict[key]
    shared.update(overrides or {})
    if epochs is not None:
        shared["epochs"] = int(epochs)
    with _without_command_line():
        return Config(model=model_name, dataset=config["dataset"], config_dict=shared)


class L3Rec(SequentialRecommender):
    r"""L³Rec with any RecBole local model (sequential task: user-only communities)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.num_local_models = int(config["num_local_models"])
        self.fusion = config["fusion"]
        self.rrf_k = float(config["rrf_k"])
        self.list_length = int(config["fusion_list_length"])
        self.temperature = float(config["valid_softmax_temperature"])
        self.n_users = dataset.user_num
        self._check_config(config)

        self.local_config = sub_model_config(config, config["local_model"],
                                             config["local_config"], config["local_model_epochs"])
        self._check_local_config(config)
        self.global_config = sub_model_config(config, config["global_model"],
                                              config["global_config"], config["global_epochs"])
        if self.global_config["MODEL_TYPE"] != ModelType.GENERAL:
            raise ValueError(f"global_model must be a RecBole general (CF) model, "
                             f"got {config['global_model']} ({self.global_config['MODEL_TYPE'].name})")
        global_dataset = create_dataset(self.global_config)
        for field in (dataset.uid_field, dataset.iid_field):
            if list(global_dataset.field2id_token[field]) != list(dataset.field2id_token[field]):
                raise RuntimeError(f"L3Rec: the global model's {field} ids differ from the local "
                                   "models'; use the same filtering for both")
        # (train, valid, test) data loaders of the global model: not module state.
        self.global_data = data_preparation(self.global_config, global_dataset)
        self.global_model = get_model(config["global_model"])(self.global_config, self.global_data[0]._dataset)
        self.local_models = nn.ModuleList(
            get_model(config["local_model"])(self.local_config, dataset) for _ in range(self.num_local_models))

        q = self.num_local_models
        self.register_buffer("anchors", torch.zeros(q, dtype=torch.long))
        self.register_buffer("train_weights", torch.zeros(q, self.n_users))
        self.register_buffer("test_weights", torch.zeros(q, self.n_users))
        self.register_buffer("item_members", torch.ones(q, self.n_items, dtype=torch.bool))
        self.register_buffer("local_trained", torch.zeros(q, dtype=torch.bool))
        self.register_buffer("valid_ndcg", torch.zeros(q, self.n_users))
        if self.type == ModelType.GENERAL:  # top-N: local lists skip the user's training items
            history, _, _ = dataset.history_item_matrix()
            self.register_buffer("history_item_id", history.long(), persistent=False)

    def _check_config(self, config):
        if not 1 <= self.num_local_models < self.n_users:
            raise ValueError(f"num_local_models (q) must be between 1 and the number of users "
                             f"({self.n_users - 1}), got {self.num_local_models}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if config["kernel"] not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {config['kernel']!r}")
        for key in ("bandwidth", "train_bandwidth", "test_bandwidth", "item_bandwidth"):
            if config[key] is not None and not float(config[key]) > 0:
                raise ValueError(f"{key} must be > 0, got {config[key]!r}")
        if config["parallel"] not in PARALLEL_MODES:
            raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {config['parallel']!r}")
        if config["knn_index"] not in KNN_INDEXES:
            raise ValueError(f"knn_index must be one of {KNN_INDEXES}, got {config['knn_index']!r}")
        unknown = set(config["knn_options"] or {}) - set(KNN_OPTIONS)
        if unknown:
            raise ValueError(f"knn_options accepts {KNN_OPTIONS}, got unknown {sorted(unknown)}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {self.rrf_k}")
        topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
        if self.list_length < max(topk):
            raise ValueError(f"fusion_list_length ({self.list_length}) must be >= the largest "
                             f"topk ({max(topk)}): items beyond the local lists are not ranked")

    def _check_local_config(self, config):
        local_type = self.local_config["MODEL_TYPE"]
        if self.type == ModelType.GENERAL and local_type != ModelType.GENERAL:
            raise ValueError(f"{type(self).__name__} (top-N) needs a general local_model such as "
                             f"BPR, got {config['local_model']} ({local_type.name}); use L3Rec")
        if config["item_communities"] and local_type == ModelType.SEQUENTIAL:
            raise ValueError(
                "item_communities (user-and-item assignment) is for top-N local models only: it "
                f"cuts each user's item sequence, which sequential models like {config['local_model']} "
                "need whole (L3Rec paper §4.1). Use item_communities: False.")
        if local_type not in (ModelType.SEQUENTIAL, ModelType.GENERAL):
            raise ValueError(f"local_model must be a sequential or general RecBole model, got "
                             f"{config['local_model']} ({local_type.name})")
        if (local_type == ModelType.SEQUENTIAL and
                self.local_config["MAX_ITEM_LIST_LENGTH"] != config["MAX_ITEM_LIST_LENGTH"]):
            raise ValueError("set MAX_ITEM_LIST_LENGTH for L3Rec, not in local_config: the data "
                             "and the local models must share it")

    def set_communities(self, communities):
        """Store a :class:`~recbole_llm.community.communities.Communities` in the buffers."""
        self.anchors.copy_(torch.as_tensor(communities.anchors))
        self.train_weights.copy_(torch.as_tensor(communities.train_weights))
        self.test_weights.copy_(torch.as_tensor(communities.test_weights))
        if communities.item_members is not None:
            self.item_members.copy_(torch.as_tensor(communities.item_members))

    def calculate_loss(self, interaction):
        raise NotImplementedError("L3Rec is trained by L3RecTrainer (global model, communities, "
                                  "then one RecBole trainer per local model), not by a loss")

    def affinity(self, users):
        """``(B, q)`` test-kernel weights of ``users`` for the trained local models (0 = not in C(u))."""
        return self.test_weights[:, users].T * self.local_trained[None, :]

    def local_scores(self, j, interaction):
        """Full-ranking scores of local model ``j`` (padding, non-community items and, for
        top-N, the user's training items at -inf)."""
        scores = self.local_models[j].full_sort_predict(interaction).view(len(interaction), -1).clone()
        if self.type == ModelType.GENERAL:
            scores.scatter_(1, self.history_item_id[interaction[self.USER_ID]], float("-inf"))
        scores[:, 0] = float("-inf")
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
