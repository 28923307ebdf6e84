"""Every check of a user's config that needs no data, run before the dataset is loaded (glue).

:func:`check_config_before_data` runs RecBole's own keys' rules
(:data:`recbole_llm.config.RECBOLE_RULES`), then the checks of the model's method -- its
rule tables, its backbone / sub-model names and its LLM paths, each reused from the module
that owns the keys -- and finally that the dataset's files are there.  Checks that need
the dataset (MLTFR's K against an LLM's whole vocabulary, ``client_fraction`` against the
number of users, L3Rec's community count against the users) run when the model is built.
"""
from recbole_llm.config import RECBOLE_RULES, check_dataset_files, method_of
from recbole_llm.llm.catalog import NAMED_LLMS, LLMNotFoundError
from recbole_llm.llm.loading import resolve_model_source
from recbole_llm.model.backbones.cl4srec import CL4SREC_RULES
from recbole_llm.model.l3rec.l3rec import L3RecBase
from recbole_llm.model.lumos.recommender import FederatedSequentialRecommender, check_federated_config
from recbole_llm.model.mltfr.mltfr import MLTFR, REFUSED_BACKBONES
from recbole_llm.model.mltfr.rules import MLTFR_RULES
from recbole_llm.model.pod.pod import check_pod_config
from recbole_llm.registry import check_model_name, sequential_backbone_class
from recbole_llm.validation import ConfigError, validate

_LLM_SPECS = ("a named LLM ({names}), a save_pretrained directory, a .gguf/.safetensors file "
              "or a Hugging Face name in the local cache")


def _check_llm(key, spec):
    """``spec`` (config key ``key``) resolves to a local LLM (nothing is loaded or downloaded)."""
    try:
        resolve_model_source(spec)
    except LLMNotFoundError as err:
        detail = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(key, spec, _LLM_SPECS.format(names=", ".join(NAMED_LLMS)), detail) from err


def _check_backbone(config, wrapper, refused=None, forward_params=None):
    """``config['backbone']`` names a sequential model that ``wrapper`` can wrap (no data needed)."""
    name = config["backbone"]
    allowed = f"a sequential model that {config['model']} can wrap (e.g. SASRec, GRU4Rec, BERT4Rec)"
    if isinstance(name, str) and name and name not in (refused or {}):
        check_model_name(name, "backbone", allowed)
    try:
        sequential_backbone_class(config, wrapper, refused, forward_params)
    except ValueError as err:
        raise ConfigError("backbone", name, allowed, str(err)) from err


def _check_mltfr(config):
    validate(config, MLTFR_RULES)
    _check_backbone(config, MLTFR,
                    refused=REFUSED_BACKBONES)
    for spec in config["llm_experts"]:
        _check_llm("llm_experts", spec)
    k, pool = config["num_tokens"], config["token_pool"]
    if config["token_filter"] != "all" and pool and k > pool:  # the rest of this check needs the LLMs
        raise ConfigError("num_tokens", k, f"at most token_pool ({pool})",
                          "K tokens are chosen among the pooled ones; token_pool: 0 keeps the whole vocabulary")


def _check_federated(config):
    check_federated_config(config)
    _check_backbone(config, FederatedSequentialRecommender,
                    forward_params=("item_seq", "item_seq_len"))
    if config["view_generator"] == "llm" and config["cl_weight"] > 0:  # as the model's constructor
        _check_llm("llm_path", config["llm_path"])


class _UsersNotKnownYet:
    """Stands for an L3Rec model before the data is loaded: the user-count check waits for the data."""

    n_users = float("inf")


def _check_l3rec(config):
    L3RecBase._check_config(_UsersNotKnownYet(), config)  # L3REC_RULES, then fusion_list_length against topk
    for key in ("global_model", "local_model"):
        check_model_name(config[key], key)


def _check_pod(config):
    check_pod_config(config)
    _check_llm("pod_llm", config["pod_llm"])


def _check_backbones(config):
    if config["model"] == "CL4SRec":
        validate(config, CL4SREC_RULES)


_CHECKS_BEFORE_DATA = {"mltfr": _check_mltfr, "lumos": _check_federated, "l3rec": _check_l3rec,
                       "pod": _check_pod, "backbones": _check_backbones}


def check_config_before_data(config):
    """Every check of ``config`` that needs no data, before :func:`recbole_llm.quick_start.prepare`
    loads the dataset: :data:`RECBOLE_RULES`, the rules and name checks of ``config['model']``'s
    method (its rule tables, its backbone / sub-model names, its LLM paths), then the dataset's files.

    Raises what the owning module raises (a :class:`~recbole_llm.validation.ConfigError` for
    a key's value); checks that need the dataset (e.g. MLTFR's K against an LLM's whole
    vocabulary, ``client_fraction`` against the number of users) run when the model is built.
    """
    validate(config, RECBOLE_RULES)
    check = _CHECKS_BEFORE_DATA.get(method_of(config["model"]))
    if check is not None:
        check(config)
    check_dataset_files(config)
