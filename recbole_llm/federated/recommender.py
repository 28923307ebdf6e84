"""The federated sequential recommender shared by LUMOS, FedSeq and ConFedSRS (LUMOS §3-§4).

A RecBole ``SequentialRecommender`` wrapping a backbone *instance* (SASRec,
GRU4Rec, or any RecBole sequential model with ``forward(item_seq, item_seq_len)``
and an ``item_embedding`` table).  Prediction and full ranking are the
backbone's, so RecBole's evaluator scores the global model unchanged.  What is
new is :meth:`client_loss`, the objective one client minimises on its own data:

    L_u = L_u^Rec + λ_CL · L_u^CL                                   (§4.4)

with L_u^Rec the next-item cross-entropy of the client's training sequence and
L_u^CL the tri-view InfoNCE of eq. (1)-(3) over the cached views (anchor S_u,
future S_F, paraphrase S_P, counterfactual S_N).
"""
import math

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_llm.federated.losses import masked_next_item_ce, tri_view_infonce

CAUSAL_BACKBONES = ("SASRec", "GRU4Rec")  # the output at position t depends only on items <= t
VIEW_NAMES = ("future", "paraphrase", "counterfactual")
VIEW_GENERATORS = ("llm", "semantic", "augment", "none")
ENGINES = ("vectorized", "sequential", "flower")


def _number(config, key):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def check_federated_config(config):
    """Range checks of the federated/LUMOS keys; one clear ``ValueError`` each."""
    cl_weight = _number(config, "cl_weight")
    if not 0 <= cl_weight <= 100:
        raise ValueError(f"cl_weight (λ_CL) must be in [0, 100], got {cl_weight}")
    tau = _number(config, "cl_temperature")
    if not 0 < tau <= 100:
        raise ValueError(f"cl_temperature (τ) must be in (0, 100], got {tau}")
    if config["view_generator"] not in VIEW_GENERATORS:
        raise ValueError(f"view_generator must be one of {VIEW_GENERATORS}, got {config['view_generator']!r}")
    if config["fed_engine"] not in ENGINES:
        raise ValueError(f"fed_engine must be one of {ENGINES}, got {config['fed_engine']!r}")
    if config["fed_weighting"] not in ("uniform", "samples"):
        raise ValueError(f"fed_weighting must be 'uniform' or 'samples', got {config['fed_weighting']!r}")
    if config["individual_learning"] and config["fed_engine"] == "flower":
        raise ValueError("individual_learning runs on the in-process engines (vectorized, sequential), "
                         "not on fed_engine: flower")
    views = list(config["lumos_views"] or [])
    if not views or any(v not in VIEW_NAMES for v in views) \
            or not {"future", "paraphrase"} & set(views):
        raise ValueError(f"lumos_views must be a non-empty subset of {VIEW_NAMES} with at least "
                         f"one positive view (future or paraphrase), got {views}")
    for key in ("rounds", "local_epochs", "eval_step"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}")
    fraction = config["client_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"client_fraction must be in (0, 1], got {fraction!r}")


class FederatedSequentialRecommender(SequentialRecommender):
    """Backbone + client objective; the three models of LUMOS Table 1 differ only in config."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_federated_config(config)
        from recbole_llm.utils import build_sequential_backbone

        name = config["backbone"]
        self.backbone = build_sequential_backbone(config, dataset, FederatedSequentialRecommender,
                                                  forward_params=("item_seq", "item_seq_len"))
        causal = config["causal_pass"]
        self.causal = (name in CAUSAL_BACKBONES) if causal in (None, "auto") else bool(causal)
        self.view_generator_name = config["view_generator"]
        self.cl_weight = float(config["cl_weight"])
        self.cl_temperature = float(config["cl_temperature"])
        self.use_views = self.view_generator_name != "none" and self.cl_weight > 0
        views = list(config["lumos_views"])
        # rows of the cached view tensor: 0 = S_u, 1 = S_F, 2 = S_P, 3 = S_N
        self.positive_rows = [1 + VIEW_NAMES.index(v) for v in ("future", "paraphrase") if v in views]
        self.negative_rows = [3] if "counterfactual" in views else []
        if self.use_views and self.view_generator_name in ("llm", "semantic"):
            from recbole_llm.llm.item_text import load_item_texts

            load_item_texts(config, dataset)  # raises before training when there is no item text
        if self.use_views and self.view_generator_name == "llm":
            from recbole_llm.llm.loading import resolve_model_dir

            resolve_model_dir(config["llm_path"])  # raises LLMNotFoundError before training
        n_users = max(int(dataset.user_num) - 1, 1)
        if round(float(config["client_fraction"]) * n_users) < 1:
            from recbole_llm.federated.sampling import check_client_fraction

            check_client_fraction(config["client_fraction"], n_users)

    # -- centralised interface, so RecBole's evaluator scores the global model --
    def forward(self, item_seq, item_seq_len):
        return self.backbone(item_seq, item_seq_len)

    def calculate_loss(self, interaction):
        return self.backbone.calculate_loss(interaction)

    def predict(self, interaction):
        return self.backbone.predict(interaction)

    def full_sort_predict(self, interaction):
        return self.backbone.full_sort_predict(interaction)

    # -- the client objective --
    def all_positions(self, item_seq, item_seq_len):
        """Backbone output at every position ``[R, L, d]`` in one causal pass."""
        self.backbone.gather_indexes = lambda output, index: output
        try:
            return self.backbone(item_seq, item_seq_len)
        finally:
            del self.backbone.gather_indexes

    def next_item_loss(self, inputs, targets, lengths):
        """L^Rec: mean next-item CE over every training target of the client's rows."""
        table = self.backbone.item_embedding.weight
        if self.causal:
            return masked_next_item_ce(self.all_positions(inputs, lengths), table, targets)
        last = targets.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        return masked_next_item_ce(self.backbone(inputs, lengths), table, last)

    def contrastive_loss(self, views, view_lengths):
        """L^CL: tri-view InfoNCE of h_u against (h^F, h^P) and h^N, eq. (3)."""
        h = self.backbone(views, view_lengths)
        return tri_view_infonce(h[0], h[self.positive_rows], h[self.negative_rows], self.cl_temperature)

    def client_loss(self, inputs, targets, lengths, views=None, view_lengths=None):
        """L_u = L^Rec + λ_CL · L^CL on one client's tensors (§4.4)."""
        loss = self.next_item_loss(inputs, targets, lengths)
        if views is not None:
            loss = loss + self.cl_weight * self.contrastive_loss(views, view_lengths)
        return loss
