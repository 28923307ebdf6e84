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
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_llm.federated.rules import FEDERATED_RULES
from recbole_llm.federated.sampling import check_client_fraction
from recbole_llm.llm.generation import DTYPES
from recbole_llm.llm.item_text import load_item_texts
from recbole_llm.llm.loading import check_llm_spec, resolve_model_dir
from recbole_llm.model.lumos.losses import masked_next_item_ce, tri_view_infonce
from recbole_llm.registry import build_sequential_backbone, check_backbone
from recbole_llm.validation import SHARED_RULES, ConfigError, Rule, one_of, validate

CAUSAL_BACKBONES = ("SASRec", "GRU4Rec")  # the output at position t depends only on items <= t
VIEW_NAMES = ("future", "paraphrase", "counterfactual")
VIEW_GENERATORS = ("llm", "semantic", "augment", "none")
LLM_DTYPES = ("auto",) + tuple(DTYPES)

LUMOS_RULES = {
    "cl_weight": SHARED_RULES["cl_weight"],  # λ_CL
    "cl_temperature": SHARED_RULES["cl_temperature"],  # τ
    "view_generator": one_of(VIEW_GENERATORS),
    "llm_dtype": one_of(LLM_DTYPES),
    "lumos_views": Rule(f"a non-empty subset of {VIEW_NAMES} with at least one positive view "
                        "(future or paraphrase)",
                        lambda v: isinstance(v, (list, tuple)) and bool(v) and set(v) <= set(VIEW_NAMES)
                        and bool({"future", "paraphrase"} & set(v))),
}


def check_federated_config(config):
    """The federated and LUMOS keys, each by its one rule; then the switches that exclude each other."""
    validate(config, FEDERATED_RULES)
    validate(config, LUMOS_RULES)
    if config["individual_learning"] and config["fed_engine"] == "flower":
        raise ConfigError("individual_learning", True, "False with fed_engine: flower",
                          "individual learning runs on the in-process engines (vectorized, sequential)")


class FederatedSequentialRecommender(SequentialRecommender):
    """Backbone + client objective; the three models of LUMOS Table 1 differ only in config."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_federated_config(config)
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
            load_item_texts(config, dataset)  # raises before training when there is no item text
        if self.use_views and self.view_generator_name == "llm":
            resolve_model_dir(config["llm_path"])  # raises LLMNotFoundError before training
        check_client_fraction(config["client_fraction"], max(int(dataset.user_num) - 1, 1))

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


def check_config_before_data(config):
    """The federated models' checks that need no data: their rules, the backbone, the LLM of llm views."""
    check_federated_config(config)
    check_backbone(config, FederatedSequentialRecommender, forward_params=("item_seq", "item_seq_len"))
    if config["view_generator"] == "llm" and config["cl_weight"] > 0:  # as the model's constructor
        check_llm_spec("llm_path", config["llm_path"])
