"""MLTFR: Multi-LLM Token Filtering and Routing over any RecBole sequential model
(Chen et al., 2026; §2, §3, Algorithm 1).

MLTFR wraps a real backbone instance (``config['backbone']``, built through
:func:`recbole_llm.registry.get_model`) and adds the semantic augmentation
W_output to E, the embeddings of the *input sequence*, before the backbone's
encoder (eq. 18: h = SequentialRecommender(E + W_output)).  The backbone's
output scoring (logits over its item table, ``full_sort_predict``) and its own
loss are untouched.

Backbones do not share a ``forward`` signature, so the augmentation lives in a
forward hook on the backbone's ``item_embedding``.  The hook acts only while
MLTFR runs the backbone (``calculate_loss`` / ``predict`` / ``full_sort_predict``)
and only on lookups of an input sequence: a 2-D index tensor shaped like the
batch's ``ITEM_SEQ`` that is not another field of the batch (targets, negatives,
BERT4Rec's masked positions).  That covers ITEM_SEQ itself, BERT4Rec's masked
copy and its test-time reconstruction, and the augmented views of contrastive
backbones; target/candidate lookups and ``item_embedding.weight`` are left alone.

Training objective: the backbone's own loss (``mltfr_loss: backbone``; CE or BPR
through ``loss_type``) or the paper's eq. 16 (``mltfr_loss: bce``): binary
cross-entropy on the next item and one uniformly sampled negative, both scored
by the backbone's ``full_sort_predict`` (requires ``loss_type: BPR`` so that
RecBole samples the negative).

``llm_experts: []`` builds no expert and no hook: the bare backbone trained by
``mltfr_loss`` in one round.  The paper trains its baselines with eq. 16 too (§4.1.1),
so this is the "bare" side of a comparison under the paper's loss.
"""
from contextlib import contextmanager
from logging import getLogger

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_llm.llm.loading import check_llm_spec
from recbole_llm.llm.token_embeddings import load_token_embeddings, token_pool
from recbole_llm.model.mltfr.consensus import consensus_parameters, fisher_importance, homogeneous_group
from recbole_llm.model.mltfr.layers import (ItemLevelGate, ProjectionCache, build_expert, gated_expert_rows,
                                            scatter_rows, semantic_integration)
from recbole_llm.model.mltfr.rules import MLTFR_RULES
from recbole_llm.nn.rand_mask_dropout import RandMaskDropout
from recbole_llm.registry import build_sequential_backbone, check_backbone
from recbole_llm.validation import ConfigError, validate

REFUSED_BACKBONES = {
    "SRGNN": "embeds the nodes of a session graph, not the input sequence",
    "GCSAN": "embeds the nodes of a session graph, not the input sequence",
    "RepeatNet": "scores through its repeat/explore item matrix instead of its input lookup",
    "S3Rec": "embeds masked item/attribute segments in a self-supervised pre-training stage",
}


def build_backbone(config, dataset):
    """The backbone instance named by ``config['backbone']``, or one clear error."""
    refused = {name: f"{why}, so there is no item_embedding lookup of the input sequence to augment."
               for name, why in REFUSED_BACKBONES.items()}
    return build_sequential_backbone(config, dataset, MLTFR, refused=refused)


class _InputLookup:
    """What identifies the backbone's input-sequence lookups during one MLTFR call."""

    def __init__(self, shape, other_fields):
        self.shape, self.other_fields, self.hits = shape, other_fields, 0

    def matches(self, index):
        return (index.dim() == 2 and tuple(index.shape) == self.shape
                and not any(index is t for t in self.other_fields))


class MLTFR(SequentialRecommender):
    """MLTFR wrapper (see module docstring)."""

    def __init__(self, config, dataset):
        validate(config, MLTFR_RULES)  # every MLTFR key, once, before anything is built
        super().__init__(config, dataset)
        negatives = config["train_neg_sample_args"] or {}
        if config["mltfr_loss"] == "bce" and negatives.get("distribution", "none") == "none":
            raise ConfigError("mltfr_loss", "bce", "'backbone' when no negative is sampled",
                              "eq. 16 needs one sampled negative: set loss_type: BPR (RecBole then samples it)")
        self.mltfr_loss = config["mltfr_loss"]
        self.backbone = build_backbone(config, dataset)
        self.backbone_name = config["backbone"]
        d_emb = self.backbone.item_embedding.embedding_dim
        self.sc_alpha = float(config["sc_alpha"])
        self.use_sc = config["use_sc"]
        self.expert_mode = config["expert_mode"]

        self.use_sc = self.use_sc and bool(config["llm_experts"])
        if not config["llm_experts"]:  # the bare backbone under mltfr_loss: nothing to build or hook
            self.experts = nn.ModuleList()
            return
        vocab_index = self._load_vocabularies(config, list(config["llm_experts"]))
        expert_kwargs = dict(num_tokens=config["num_tokens"], n_heads=config["expert_heads"],
                             tau=float(config["gumbel_tau"]), token_filter=config["token_filter"])
        if self.expert_mode == "filter":
            expert_kwargs.update(routing_scale=config["routing_scale"],
                                 routing_scale_init=float(config["routing_scale_init"]))
        self.expert_vocab = vocab_index
        self.experts = nn.ModuleList(
            build_expert(self.expert_mode, d_emb, self._vocab(v).shape[1], **expert_kwargs)
            for v in vocab_index)
        self.gate = ItemLevelGate(d_emb, len(self.experts), self.max_seq_length)
        self.dropout = RandMaskDropout(config["expert_dropout"])  # once on W_output, not per expert

        # Semantic-consensus expert (§2.2.2): same architecture as the fused group, always frozen.
        self.sc_group = homogeneous_group(self.experts)
        d_llm = self.experts[self.sc_group[0]].d_llm
        self.sc_expert = build_expert(self.expert_mode, d_emb, d_llm, **expert_kwargs)
        self.sc_expert.requires_grad_(False)
        self.register_buffer("sc_active", torch.tensor(False))
        self.register_buffer("sc_vocab", torch.tensor(vocab_index[self.sc_group[0]]))
        self.register_buffer("fisher_weights", torch.zeros(len(self.experts)))
        # The frozen consensus expert's table projections, computed once per weight change.
        self.projection_cache = ProjectionCache()

        self._lookup = None
        self.backbone.item_embedding.register_forward_hook(self._augment_input_lookup)

    # ----- LLM vocabularies -------------------------------------------------------------
    def _load_vocabularies(self, config, specs):
        """Load each distinct LLM once; buffer ``vocab_j`` = its pooled W_voc (not checkpointed)."""
        k, pool = config["num_tokens"], config["token_pool"]
        distinct, index = {}, []
        for spec in specs:
            if str(spec) not in distinct:
                emb = load_token_embeddings(spec, cache_dir=config["llm_cache_dir"])
                rows = token_pool(emb, pool, mode=config["token_pool_mode"])
                matrix = emb.matrix[rows]
                if config["token_filter"] != "all" and k > matrix.shape[0]:
                    raise ValueError(f"MLTFR: num_tokens K={k} exceeds the {matrix.shape[0]} pooled tokens "
                                     f"of LLM '{spec}' (token_pool={pool}); lower K or raise token_pool")
                if config["expert_mode"] == "re":  # LLM-RE: random table of W_voc's shape
                    gen = torch.Generator().manual_seed(int(config["seed"] or 0) + len(distinct))
                    matrix = torch.randn(matrix.shape, generator=gen) * matrix.std()
                j = len(distinct)
                distinct[str(spec)] = j
                self.register_buffer(f"vocab_{j}", matrix.contiguous(), persistent=False)
                getLogger().info(f"MLTFR expert LLM '{spec}': {tuple(emb.matrix.shape)} -> pool {tuple(matrix.shape)}")
            index.append(distinct[str(spec)])
        return index

    def _vocab(self, j):
        return getattr(self, f"vocab_{int(j)}")

    # ----- semantic augmentation (eq. 1-15) ---------------------------------------------
    def semantic_augmentation(self, item_seq, E, item_table=None):
        """W_output (B x L x d): gated experts (eq. 11-12) plus alpha * W_SC in round 2 (eq. 15).

        ``item_table``: the backbone's item-embedding weight when E is its lookup of ``item_seq``
        (the hook's case), so the experts' queries can be projected per item instead of per position.
        """
        mask = item_seq != 0
        sc_active = bool(self.sc_active)
        if self.expert_mode == "filter":  # batched: one pass per distinct vocabulary, one gated W_o
            parts, order = [], []
            for v in sorted(set(self.expert_vocab)):
                members = [m for m, u in enumerate(self.expert_vocab) if u == v]
                parts.append(semantic_integration([self.experts[m] for m in members], E, mask, self._vocab(v),
                                                  item_seq, item_table))
                order += members
            # The attended values stay in vocabulary order; the gate's n columns and the experts' W_o
            # follow it instead (sum_m G_m W_o_m(a_m) does not depend on the order of m), which
            # spares a copy of the B x L x n x d values and its backward.
            attended = parts[0] if len(parts) == 1 else torch.cat(parts, 2)
            gate = self.gate.weights(E)
            if order != sorted(order):
                gate = gate[..., order]
            rows = gated_expert_rows(gate, attended, [self.experts[m] for m in order], mask)
            if sc_active:  # eq. 15: + alpha * W_SC, the frozen consensus expert in a pass of its own, so
                # that no weight gradient is computed for it and its table projections are reused
                sc_attended = semantic_integration([self.sc_expert], E, mask, self._vocab(self.sc_vocab),
                                                   item_seq, item_table, cache=self.projection_cache)
                alpha = E.new_full((*mask.shape, 1), self.sc_alpha)
                rows = rows + gated_expert_rows(alpha, sc_attended, [self.sc_expert], mask)
            # dropout only where W_output can be non-zero: the real items (padding rows stay 0)
            return scatter_rows(self.dropout(rows), mask)
        outputs = [expert(E, mask, item_seq, self._vocab(v)) for expert, v in zip(self.experts, self.expert_vocab)]
        W_output, _ = self.gate(E, outputs)
        if sc_active:
            W_output = W_output + self.sc_alpha * self.sc_expert(E, mask, item_seq, self._vocab(self.sc_vocab))
        return self.dropout(W_output)

    def _augment_input_lookup(self, module, inputs, output):
        lookup = self._lookup
        if lookup is None or not lookup.matches(inputs[0]):
            return None
        lookup.hits += 1
        return output + self.semantic_augmentation(inputs[0], output, item_table=module.weight)

    @contextmanager
    def _encoding_input(self, interaction):
        """Activate the hook for one call of the backbone on ``interaction``."""
        if not self.experts:  # llm_experts: [] -- the bare backbone
            yield
            return
        seq = interaction[self.ITEM_SEQ]
        inputs = (self.ITEM_SEQ, "Mask_" + self.ITEM_SEQ)  # RecBole's name of BERT4Rec's masked copy
        others = tuple(v for k, v in interaction.interaction.items() if k not in inputs)
        self._lookup = lookup = _InputLookup(tuple(seq.shape), others)
        try:
            yield
        finally:
            self._lookup = None
        if lookup.hits == 0:
            raise RuntimeError(f"MLTFR: backbone {self.backbone_name} did not embed its input sequence "
                               "through item_embedding, so MLTFR cannot augment it.")

    # ----- RecBole interface ------------------------------------------------------------
    def calculate_loss(self, interaction):
        if self.mltfr_loss == "bce":
            return self.bce_loss(interaction)
        with self._encoding_input(interaction):
            return self.backbone.calculate_loss(interaction)

    def bce_loss(self, interaction):
        """Eq. 16: -log sigma(y_pos) - log(1 - sigma(y_neg)), scores from the backbone (eq. 17)."""
        scores = self.full_sort_predict(interaction)
        pos = scores.gather(1, interaction[self.POS_ITEM_ID].unsqueeze(1))
        neg = scores.gather(1, interaction[self.NEG_ITEM_ID].unsqueeze(1))
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()

    def predict(self, interaction):
        with self._encoding_input(interaction):
            return self.backbone.predict(interaction)

    def full_sort_predict(self, interaction):
        with self._encoding_input(interaction):
            return self.backbone.full_sort_predict(interaction)

    def item_log_probs(self, interaction):
        """log p(y | x) over real items (padding id 0 excluded): the likelihood of eq. 13."""
        scores = self.full_sort_predict(interaction).view(interaction[self.ITEM_SEQ].shape[0], -1)
        scores = scores.clone()
        scores[:, 0] = float("-inf")
        return torch.log_softmax(scores, dim=-1)

    # ----- semantic consensus (Algorithm 1, lines 13-15) --------------------------------
    def build_semantic_consensus(self, batches):
        """Fisher-weight the homogeneous experts (eq. 13-14), load, freeze and enable W_SC."""
        group = [self.experts[m] for m in self.sc_group]
        weights = fisher_importance(self, batches, group)
        self.sc_expert.load_state_dict(consensus_parameters(group, weights))
        self.sc_expert.requires_grad_(False)
        self.fisher_weights.zero_()
        self.fisher_weights[self.sc_group] = weights.to(self.fisher_weights.device)
        best = self.sc_group[int(weights.argmax())]
        self.sc_vocab.fill_(self.expert_vocab[best])  # the consensus attends the top expert's vocabulary
        self.sc_active.fill_(True)
        getLogger().info(f"MLTFR semantic consensus: Fisher weights {weights.tolist()} over experts {self.sc_group}")
        return weights


def check_config_before_data(config):
    """MLTFR's checks that need no data (run before the dataset loads): its rules, the backbone,
    the LLM of every expert, and K against a pool size; K against a whole vocabulary needs the LLMs."""
    validate(config, MLTFR_RULES)
    check_backbone(config, MLTFR, refused=REFUSED_BACKBONES)
    for spec in config["llm_experts"]:
        check_llm_spec("llm_experts", spec)
    k, pool = config["num_tokens"], config["token_pool"]
    if config["token_filter"] != "all" and pool and k > pool:
        raise ConfigError("num_tokens", k, f"at most token_pool ({pool})",
                          "K tokens are chosen among the pooled ones; token_pool: 0 keeps the whole vocabulary")
