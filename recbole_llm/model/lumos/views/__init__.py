"""Client-side view generators of LUMOS §4.2 and the ConFedSRS baseline.

``build_view_generator(config, dataset)`` returns the generator named by config
``view_generator``: ``llm``, ``semantic`` (offline default), ``augment``
(ConFedSRS) or ``none`` (FedSeq: returns ``None``).
"""
import hashlib

from recbole_llm.llm.generation import CausalLMGenerator, resolve_dtype
from recbole_llm.llm.loading import cache_dir as llm_cache_dir
from recbole_llm.llm.loading import resolve_model_source, source_identity
from recbole_llm.llm.item_text import item_file_path, load_item_texts
from recbole_llm.llm.text_encoder import get_text_encoder
from recbole_llm.llm.title_index import TitleIndex
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator
from recbole_llm.model.lumos.views.base import TriView, ViewGenerator, prepare_views
from recbole_llm.model.lumos.views.cache import ViewCache
from recbole_llm.model.lumos.views.llm import LLMViewGenerator, load_prompts
from recbole_llm.model.lumos.views.semantic import SemanticViewGenerator

_EMBEDDINGS = {}


def item_text_embeddings(config, dataset):
    """MiniLM embeddings ``[n_items, d]`` of every item's text fields (cached per process)."""
    texts = load_item_texts(config, dataset)
    key = (item_file_path(config), tuple(texts.fields), str(config["text_encoder"]), dataset.item_num)
    if key not in _EMBEDDINGS:
        _EMBEDDINGS[key] = (get_text_encoder(config["text_encoder"]).encode(texts.texts()), texts)
    return _EMBEDDINGS[key]


def view_cache(config, prompts, texts):
    """The :class:`ViewCache` of this generator's settings, or None (``lumos_view_cache: false``)."""
    where = config["lumos_view_cache"]
    if where is False or str(where).lower() in ("false", "none", "off"):
        return None
    settings = {"llm": source_identity(resolve_model_source(config["llm_path"])), "prompts": prompts,
                "dtype": str(resolve_dtype(config["llm_dtype"], config["device"])),
                "chat": config["llm_chat_template"],
                "text_encoder": source_identity(resolve_model_source(config["text_encoder"])),
                "titles": hashlib.sha256("\n".join(texts.titles).encode()).hexdigest(), "seed": config["seed"],
                "max_len": config["MAX_ITEM_LIST_LENGTH"], **_semantic_kwargs(config),
                **{k: config[k] for k in ("llm_max_new_tokens", "llm_batch_size", "llm_do_sample", "llm_temperature",
                                          "llm_top_p", "llm_history_length", "llm_min_similarity")}}
    return ViewCache(where or llm_cache_dir("views"), settings)


def _semantic_kwargs(config):
    return dict(future_length=config["future_length"], swap_prob=config["paraphrase_swap_prob"],
                reorder_prob=config["paraphrase_reorder_prob"])


def build_view_generator(config, dataset):
    name = config["view_generator"]
    max_len, seed = config["MAX_ITEM_LIST_LENGTH"], config["seed"]
    if name == "none":
        return None
    if name == "augment":
        return AugmentViewGenerator(dataset.item_num, max_len, seed, eta=config["augment_eta"],
                                    gamma=config["augment_gamma"], beta=config["augment_beta"])
    embeddings, texts = item_text_embeddings(config, dataset)
    if name == "semantic":
        return SemanticViewGenerator(embeddings, max_len, seed, **_semantic_kwargs(config))
    if name == "llm":
        def generator():
            return CausalLMGenerator(config["llm_path"], device=config["device"],
                                     max_new_tokens=config["llm_max_new_tokens"],
                                     batch_size=config["llm_batch_size"], seed=seed,
                                     do_sample=config["llm_do_sample"], temperature=config["llm_temperature"],
                                     top_p=config["llm_top_p"], chat_template=config["llm_chat_template"],
                                     show_progress=config["show_progress"], dtype=config["llm_dtype"])

        index = TitleIndex(get_text_encoder(config["text_encoder"]), texts.titles)
        prompts = load_prompts(config["lumos_prompt_file"])
        return LLMViewGenerator(embeddings, max_len, generator, index, texts.titles, prompts, seed,
                                history_length=config["llm_history_length"],
                                min_similarity=config["llm_min_similarity"],
                                cache=view_cache(config, prompts, texts), **_semantic_kwargs(config))
    raise ValueError(f"unknown view_generator {name!r}")


__all__ = ["TriView", "ViewGenerator", "prepare_views", "build_view_generator", "item_text_embeddings"]
