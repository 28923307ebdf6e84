"""Config rules of MLTFR's keys (the paper's hyper-parameters, §2.1-§2.2 and §4.1.1; Algorithm 1).

One :class:`~recbole_llm.validation.Rule` per key, checked once by ``MLTFR.__init__`` before
anything is built; the layers, the model and the trainer read the keys without checking them
again.  Checks that need the data or the built backbone stay where that is known: K against the
pooled tokens of each LLM (``MLTFR._load_vocabularies``), the head count against the backbone's
hidden size (``TokenFilterExpert``), the backbone itself (``build_backbone``).
"""
from recbole_llm.llm.token_embeddings import TOKEN_POOL_MODES
from recbole_llm.validation import Rule, boolean, integer, number, one_of

TOKEN_FILTERS = ("user", "random", "all")   # §2.1.1; random and all are ablations
EXPERT_MODES = ("filter", "te", "re")       # the paper's experts; LLM-TE / LLM-RE of Fig. 1
MLTFR_LOSSES = ("backbone", "bce")          # the backbone's own loss, or eq. 16
ROUTING_SCALES = ("paper", "learnable")     # eq. 4 as written, or a learnable scale on the cosine logits

MLTFR_RULES = {
    # [] = no augmentation: the bare backbone trained by mltfr_loss (the paper's baselines under eq. 16)
    "llm_experts": Rule("a list of LLM names or directories, one per expert ([] = the bare backbone)",
                        lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) and s for s in v)),
    "token_pool": integer(low=0, optional=True),          # 0 or ~ keeps the whole vocabulary
    "token_pool_mode": one_of(TOKEN_POOL_MODES),           # first (vocabulary order) | farthest (semantic cover)
    "num_tokens": integer(low=1),                          # K, eq. 5
    "gumbel_tau": number(low=0.3, high=1.0),               # tau, eq. 4 (§2.1.1: tau in [0.3, 1])
    "routing_scale": one_of(ROUTING_SCALES),
    "routing_scale_init": number(low=0, low_open=True),    # the learnable scale's start
    "token_filter": one_of(TOKEN_FILTERS),
    "expert_mode": one_of(EXPERT_MODES),
    "expert_heads": integer(low=1),                        # h, eq. 8
    "expert_dropout": number(low=0.0, high=1.0),
    "use_sc": boolean(),                                   # False: the "w/o SC" ablation
    "sc_alpha": number(low=0.0),                           # alpha, eq. 15
    "round1_epochs": integer(low=1, optional=True),        # ~: the same as epochs
    "fisher_batches": integer(low=1),                      # batches of the Fisher estimate, eq. 13
    "mltfr_loss": one_of(MLTFR_LOSSES),
}
