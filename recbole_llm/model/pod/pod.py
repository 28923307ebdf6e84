"""POD: a P5/POD-style generative recommender on T5 (L3Rec's local LLM, §4.2, §5.1.3).

The user's history is written as item-ID tokens (:mod:`pod_indexing`) behind a
prompt -- POD's learned continuous prompt vectors prepended to the encoder
input (default) or a discrete text template -- plus POD's whole-word
embedding (one learned vector per history position, added to all pieces of
that item's ID).  The T5 decoder generates the next item's ID tokens; training
minimises their token cross-entropy (L3Rec eq. 3).  Inference for RecBole's
full-ranking evaluator is a constrained beam search over the trie of valid
IDs (:mod:`pod_decoding`): the top ``beam_size`` items get their sequence
log-likelihoods as scores, every other item -inf, so HR@K / NDCG@K are exact
for K <= beam_size.  ``pod_inference: exact`` scores every item by its
sequence log-likelihood instead (slow; for checking).

``pod_task: topn`` treats the history as an unordered set (items in a
canonical order, by item index), the top-N setting of L3Rec §3.
"""
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_llm.llm.loading import LLMNotFoundError, check_llm_spec, load_model, load_tokenizer
from recbole_llm.model.pod.decoding import ItemTrie, constrained_beam_search
from recbole_llm.model.pod.indexing import (ItemTokens, collaborative_indexing, sequential_indexing,
                                            training_interactions)
from recbole_llm.validation import one_of, validate

POD_RULES = {
    "pod_prompt": one_of(("continuous", "discrete")),
    "pod_task": one_of(("sequential", "topn")),
    "pod_inference": one_of(("beam", "exact")),
    "item_indexing": one_of(("sequential", "collaborative")),
}


def check_pod_config(config):
    """Config errors POD can see before loading anything (one message each)."""
    validate(config, POD_RULES)
    topk = config["topk"]
    largest = max(topk) if isinstance(topk, (list, tuple)) else int(topk)
    if config["pod_inference"] == "beam" and int(config["beam_size"]) < largest:
        raise ValueError(
            f"POD: beam_size={config['beam_size']} is smaller than the largest K in topk={topk}; "
            f"beam search ranks only beam_size items, so metrics @{largest} would be wrong. "
            f"Set beam_size >= {largest}.")


def load_t5(spec):
    """Tokenizer and ``T5ForConditionalGeneration`` of ``spec``, checked to belong together."""
    try:
        tokenizer = load_tokenizer(spec)
        t5 = load_model(spec, "T5ForConditionalGeneration")
    except LLMNotFoundError as err:
        raise LLMNotFoundError(f"POD: pod_llm={spec!r} not found: {err}") from err
    if t5.config.model_type != "t5":
        raise ValueError(f"POD: pod_llm={spec!r} is a {t5.config.model_type} model, not T5.")
    if len(tokenizer) > t5.config.vocab_size:
        raise ValueError(
            f"POD: tokenizer/model mismatch in {spec!r}: the tokenizer has {len(tokenizer)} tokens "
            f"but the model's embedding has only {t5.config.vocab_size} rows.")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"POD: the tokenizer of {spec!r} needs pad and eos tokens (T5 has both).")
    return tokenizer, t5


class POD(SequentialRecommender):
    """Generative next-item recommender: prompt + history IDs -> next item ID (T5)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_pod_config(config)
        self.task = config["pod_task"]
        self.inference = config["pod_inference"]
        self.beam_size = int(config["beam_size"])
        self.mask_history = bool(config["mask_history"])
        self.decode_batch = int(config["pod_decode_batch"])
        tokenizer, self.t5 = load_t5(config["pod_llm"])
        self.pad_token_id = tokenizer.pad_token_id
        self.item_tokens = ItemTokens(self.item_id_strings(config, dataset), tokenizer)
        self.trie = ItemTrie(self.item_tokens.sequences(), range(1, self.n_items))
        d_model = self.t5.config.d_model
        self.prompt_embedding = None
        template = ("", "")
        if config["pod_prompt"] == "continuous":
            self.prompt_embedding = nn.Embedding(int(config["pod_prompt_length"]), d_model)
            nn.init.uniform_(self.prompt_embedding.weight, -0.1, 0.1)  # POD's initial range
        else:
            template = tuple(config["pod_template"].split("{history}"))
            if len(template) != 2:
                raise ValueError("POD: pod_template must contain '{history}' exactly once.")
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] if t.strip() else [] for t in template]
        self.register_buffer("template_prefix", torch.tensor(ids[0], dtype=torch.long), persistent=False)
        self.register_buffer("template_suffix", torch.tensor(ids[1] + [tokenizer.eos_token_id],
                                                             dtype=torch.long), persistent=False)
        self.whole_word_embedding = None
        if config["pod_whole_word"]:
            self.whole_word_embedding = nn.Embedding(self.max_seq_length + 1, d_model)
            nn.init.normal_(self.whole_word_embedding.weight, std=0.02)

    def item_id_strings(self, config, dataset):
        users, items = training_interactions(dataset, self.ITEM_ID, self.USER_ID)
        if config["item_indexing"] == "collaborative":
            return collaborative_indexing(users, items, dataset.user_num, self.n_items,
                                          int(config["collaborative_clusters"]),
                                          int(config["collaborative_dim"]), config["seed"])
        return sequential_indexing(items, self.n_items)

    # ---- prompt x: prompt + history as item-ID tokens (L3Rec §4.2) ----
    def history_order(self, item_seq, item_seq_len):
        """The history as given (sequential) or as a set in canonical order (topn)."""
        if self.task == "sequential":
            return item_seq
        positions = torch.arange(item_seq.shape[1], device=item_seq.device)
        key = item_seq.masked_fill(positions >= item_seq_len.unsqueeze(1), self.n_items)
        return key.sort(dim=1).values.masked_fill(positions >= item_seq_len.unsqueeze(1), 0)

    def prompt_tokens(self, item_seq, item_seq_len):
        """Encoder token ids, whole-word ids and mask ``[B, S]`` of template + history pieces."""
        batch, length = item_seq.shape
        device = item_seq.device
        item_seq = self.history_order(item_seq, item_seq_len)
        pieces = self.item_tokens.table[item_seq]  # B, L, T
        width = pieces.shape[-1]
        valid = ((torch.arange(width, device=device) < self.item_tokens.length[item_seq].unsqueeze(-1))
                 & (torch.arange(length, device=device) < item_seq_len.unsqueeze(1)).unsqueeze(-1))
        words = torch.arange(1, length + 1, device=device).view(1, length, 1).expand(batch, -1, width)
        prefix, suffix = self.template_prefix, self.template_suffix

        def fixed(tokens):
            return tokens.expand(batch, -1), torch.ones(batch, len(tokens), dtype=torch.bool, device=device)

        (pre, pre_ok), (suf, suf_ok) = fixed(prefix), fixed(suffix)
        tokens = torch.cat([pre, pieces.reshape(batch, -1), suf], 1)
        ok = torch.cat([pre_ok, valid.reshape(batch, -1), suf_ok], 1)
        words = torch.cat([torch.zeros_like(pre), words.reshape(batch, -1), torch.zeros_like(suf)], 1)
        order = (~ok).to(torch.int8).sort(dim=1, stable=True).indices  # valid tokens first, in order
        keep = int(ok.sum(1).max())
        order = order[:, :keep]
        tokens, words, ok = tokens.gather(1, order), words.gather(1, order), ok.gather(1, order)
        return tokens.masked_fill(~ok, self.pad_token_id), words.masked_fill(~ok, 0), ok

    def encoder_inputs(self, item_seq, item_seq_len):
        """``inputs_embeds`` and attention mask: [continuous prompt] + token (+ whole-word) embeddings."""
        tokens, words, mask = self.prompt_tokens(item_seq, item_seq_len)
        embeds = self.t5.get_input_embeddings()(tokens)
        if self.whole_word_embedding is not None:
            embeds = embeds + self.whole_word_embedding(words)
        if self.prompt_embedding is not None:
            batch = tokens.shape[0]
            prompt = self.prompt_embedding.weight.unsqueeze(0).expand(batch, -1, -1)
            embeds = torch.cat([prompt, embeds], 1)
            mask = torch.cat([mask.new_ones(batch, prompt.shape[1]), mask], 1)
        return embeds, mask.long()

    def encode(self, interaction):
        embeds, mask = self.encoder_inputs(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        hidden = self.t5.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return hidden, mask

    def decoder_logits(self, hidden, mask, decoder_input_ids, cache=None):
        """T5 decoder logits given encoder states; ``cache`` (an EncoderDecoderCache) is updated."""
        from transformers.modeling_outputs import BaseModelOutput

        out = self.t5(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                      decoder_input_ids=decoder_input_ids, cache=cache, use_cache=cache is not None)
        return out.logits

    # ---- training: token cross-entropy of the next item's ID (eq. 3) ----
    def calculate_loss(self, interaction):
        hidden, mask = self.encode(interaction)
        labels = self.item_tokens.target_labels(interaction[self.POS_ITEM_ID])
        decoder_input_ids = self.t5.prepare_decoder_input_ids_from_labels(labels)
        logits = self.decoder_logits(hidden, mask, decoder_input_ids)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    # ---- scoring ----
    def item_log_likelihood(self, hidden, mask, items):
        """log p(ID tokens of ``items[r]`` + EOS | prompt r) for each row r."""
        labels = self.item_tokens.target_labels(items)
        logits = self.decoder_logits(hidden, mask, self.t5.prepare_decoder_input_ids_from_labels(labels))
        token_lp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return token_lp.masked_fill(labels < 0, 0.0).sum(-1)

    def predict(self, interaction):
        hidden, mask = self.encode(interaction)
        return self.item_log_likelihood(hidden, mask, interaction[self.ITEM_ID])

    def history_mask(self, item_seq):
        banned = torch.zeros(len(item_seq), self.n_items, dtype=torch.bool, device=item_seq.device)
        banned.scatter_(1, item_seq, True)
        banned[:, 0] = False
        return banned

    def exact_scores(self, hidden, mask):
        """Sequence log-likelihood of every item for every row ``[B, n_items]`` (slow)."""
        batch = hidden.shape[0]
        scores = hidden.new_full((batch, self.n_items), float("-inf"))
        chunk = max(1, 4096 // batch)
        for start in range(1, self.n_items, chunk):
            items = torch.arange(start, min(start + chunk, self.n_items), device=hidden.device)
            rows = torch.arange(batch, device=hidden.device).repeat_interleave(len(items))
            ll = self.item_log_likelihood(hidden[rows], mask[rows], items.repeat(batch))
            scores[:, items] = ll.view(batch, -1)
        return scores

    def beam_scores(self, hidden, mask, banned):
        """Scores ``[B, n_items]``: beam-search items get their log-likelihood, the rest -inf.

        The decoder keeps a key/value cache: the encoder states are projected for
        cross-attention once per user (not once per beam and step), and each step
        feeds only the newest token of every beam.
        """
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        batch, w = hidden.shape[0], self.beam_size
        hidden_w, mask_w = hidden.repeat_interleave(w, 0), mask.repeat_interleave(w, 0)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

        def next_log_probs(prefix, parents):
            if parents is None:  # first step: every beam of a user is the same empty prefix
                start = hidden.new_full((batch, 1), self.t5.config.decoder_start_token_id, dtype=torch.long)
                logits = self.decoder_logits(hidden, mask, start, cache)
                cache.batch_repeat_interleave(w)
                return logits[:, -1].log_softmax(-1).repeat_interleave(w, 0)
            cache.reorder_cache(parents)
            return self.decoder_logits(hidden_w, mask_w, prefix[:, -1:], cache)[:, -1].log_softmax(-1)

        items, score = constrained_beam_search(next_log_probs, self.trie, batch, w, banned,
                                               self.pad_token_id)
        scores = hidden.new_full((batch, self.n_items), float("-inf"))
        scores.scatter_(1, items, score)
        scores[:, 0] = float("-inf")
        return scores

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        out = []
        for start in range(0, len(item_seq), self.decode_batch):
            part = interaction[start:start + self.decode_batch]
            hidden, mask = self.encode(part)
            banned = self.history_mask(part[self.ITEM_SEQ]) if self.mask_history else None
            if self.inference == "exact":
                scores = self.exact_scores(hidden, mask)
                if banned is not None:
                    scores = scores.masked_fill(banned, float("-inf"))
            else:
                scores = self.beam_scores(hidden, mask, banned)
            out.append(scores)
        return torch.cat(out, 0)


def check_config_before_data(config):
    """POD's checks that need no data: its keys and its T5 (``pod_llm``)."""
    check_pod_config(config)
    check_llm_spec("pod_llm", config["pod_llm"])
