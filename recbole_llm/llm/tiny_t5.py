"""Random-initialised T5 checkpoints built offline (tests, benchmarks, no model hub).

POD (L3Rec §5.1.3) runs on T5-small, whose weights are not available on this
project's machines.  :func:`save_tiny_t5` writes a ``save_pretrained``
directory -- a ``T5ForConditionalGeneration`` of any size with random weights
and a small SentencePiece-style Unigram tokenizer -- that
:mod:`recbole_llm.llm.loading` then loads like a real checkpoint.

The tokenizer mirrors how T5's SentencePiece model splits P5 item IDs:
``"item_123"`` becomes ``▁item`` ``_`` ``12`` ``3`` (a word piece, the
underscore, then one- and two-digit pieces), and prompt words are whole pieces.
"""
import string

PROMPT_WORDS = ("Given the following interaction history of a user predict next item "
                "what should be recommended to this , . :").split()


def tiny_t5_vocab():
    """(piece, log-prob) pairs of the Unigram tokenizer: specials first (pad 0, eos 1, unk 2)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("_", -1.0)]
    pieces += [("▁" + w, -1.0) for w in ("item", "user") + tuple(PROMPT_WORDS)]
    pieces += [(d, -1.0) for d in string.digits]
    pieces += [(f"{i:02d}", -1.0) for i in range(100)]
    pieces += [("▁" + d, -1.0) for d in string.digits]
    pieces += [(c, -3.0) for c in string.ascii_letters]
    seen, vocab = set(), []
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    return vocab


def build_tiny_t5_tokenizer():
    """A ``T5Tokenizer`` around a hand-written Unigram model (no training, no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5Tokenizer

    backend = Tokenizer(models.Unigram(tiny_t5_vocab(), unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return T5Tokenizer(tokenizer_object=backend, extra_ids=0,
                       pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def save_tiny_t5(path, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                 vocab_size=None, seed=0):
    """Write a random ``T5ForConditionalGeneration`` + tokenizer to ``path``; returns ``path``.

    ``vocab_size`` (default: the tokenizer's size) may be larger than the
    tokenizer, as in T5-small (32128 rows for 32100 pieces).
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tiny_t5_tokenizer()
    config = T5Config(vocab_size=max(vocab_size or 0, len(tokenizer)), d_model=d_model, d_ff=d_ff,
                      d_kv=d_kv, num_layers=num_layers, num_heads=num_heads,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
