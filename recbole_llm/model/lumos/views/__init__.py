"""Client-side view generators of LUMOS §4.2 and the ConFedSRS baseline.

``build_view_generator(config, dataset)`` returns the generator named by config
``view_generator``: ``llm``, ``semantic`` (offline default), ``augment``
(ConFedSRS) or ``none`` (FedSeq: returns ``None``).
"""
from recbole_llm.llm.generation import CausalLMGenerator
from recbole_llm.llm.item_text import item_file_path, load_item_texts
from recbole_llm.llm.text_encoder import get_text_encoder
from recbole_llm.llm.title_index import TitleIndex
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator
from recbole_llm.model.lumos.views.base import TriView, ViewGenerator, prepare_views
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
        generator = CausalLMGenerator(config["llm_path"], device=config["device"],
                                      max_new_tokens=config["llm_max_new_tokens"],
                                      batch_size=config["llm_batch_size"], seed=seed,
                                      do_sample=config["llm_do_sample"], temperature=config["llm_temperature"],
                                      top_p=config["llm_top_p"], chat_template=config["llm_chat_template"],
                                      show_progress=config["show_progress"])
        index = TitleIndex(get_text_encoder(config["text_encoder"]), texts.titles)
        return LLMViewGenerator(embeddings, max_len, generator, index, texts.titles,
                                load_prompts(config["lumos_prompt_file"]), seed,
                                history_length=config["llm_history_length"],
                                min_similarity=config["llm_min_similarity"], **_semantic_kwargs(config))
    raise ValueError(f"unknown view_generator {name!r}")


__all__ = ["TriView", "ViewGenerator", "prepare_views", "build_view_generator", "item_text_embeddings"]
