"""LLM token-embedding matrices W_voc (V x d_llm) and their token strings (MLTFR §3, eq. 19).

MLTFR needs only the *input token-embedding table* of each LLM, never the
model.  GGUF files (the named LLMs SmolLM2 and Gemma 3 of
:mod:`recbole_llm.llm.catalog`) are read by :mod:`recbole_llm.llm.gguf_tables`.  For
safetensors checkpoints (one file, or shards listed by
``model.safetensors.index.json``) we read just that tensor with
``safetensors.safe_open`` -- a 7B checkpoint costs the size of its embedding
table, not 13 GB.  Checkpoints stored only as ``.bin`` fall back to building
the model through :func:`recbole_llm.llm.loading.load_model`.

Extracted matrices are cached on disk, keyed by the model directory and a
fingerprint of its weight files (name, size, mtime, safetensors header and the
first/last MiB of bytes), so a second run reads one small file.

:func:`token_pool` keeps a candidate set of whole, alphabetic, non-special
tokens so that 150k-token vocabularies stay affordable on a CPU.
"""
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from logging import getLogger

import torch

from recbole_llm.llm.gguf_tables import read_gguf_rows, read_gguf_token_table
from recbole_llm.llm.loading import LLMNotFoundError, load_model, load_tokenizer, resolve_model_source
from recbole_llm.llm.loading import cache_dir as llm_cache_dir

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# Names of input token-embedding tensors across model families, most specific first.
EMBEDDING_KEY_SUFFIXES = (
    "word_embeddings.weight",  # BERT / MiniLM / BLOOM
    "embed_tokens.weight",     # Llama, Qwen, Mistral, OPT, BART, T5 encoder (when untied)
    "wte.weight",              # GPT-2, GPT-J
    "shared.weight",           # T5 / P5 (tied encoder/decoder table)
    "tok_embeddings.weight",   # original Llama checkpoints
    "embed_in.weight",         # GPT-NeoX / Pythia
    "embedding.weight",        # static tables (WordLlama)
)
TIED_OUTPUT_KEYS = ("lm_head.weight",)  # only when config says the input table is tied to it


@dataclass
class TokenEmbeddings:
    """An LLM's input token-embedding matrix ``W_voc`` and the token string of each row."""

    matrix: torch.Tensor  # V x d_llm, float32
    tokens: list          # len V; "" for rows the tokenizer has no token for
    special_tokens: frozenset
    source: str           # model directory, or the GGUF file

    @property
    def dim(self):
        return self.matrix.shape[1]


def default_cache_dir():
    return llm_cache_dir("token_embeddings")


def _weight_files(model_dir):
    """("safetensors", [files]) or ("bin", [files]) of a save_pretrained directory."""
    index = os.path.join(model_dir, SAFETENSORS_INDEX)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return "safetensors", [os.path.join(model_dir, s) for s in shards]
    single = os.path.join(model_dir, SAFETENSORS_FILE)
    if os.path.isfile(single):
        return "safetensors", [single]
    bins = [os.path.join(model_dir, f) for f in sorted(os.listdir(model_dir))
            if f.endswith(".bin") and f.startswith("pytorch_model")]
    if bins:
        return "bin", bins
    raise LLMNotFoundError(f"LLM directory {model_dir} holds no model.safetensors(.index.json) "
                           "or pytorch_model*.bin weights.")


def _fingerprint(model_dir, files):
    """Cache key: model directory + per-file name, size, mtime and head/tail bytes."""
    h = hashlib.sha256(os.path.realpath(model_dir).encode())
    for path in files:
        st = os.stat(path)
        h.update(f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            if st.st_size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()[:24]


def _safetensors_keys(path):
    """Tensor names in a safetensors file, read from its header only."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return [k for k in header if k != "__metadata__"]


def find_embedding_key(keys, tied=False):
    """The input token-embedding tensor among ``keys`` (see EMBEDDING_KEY_SUFFIXES)."""
    for suffix in EMBEDDING_KEY_SUFFIXES:
        hits = [k for k in keys if k == suffix or k.endswith("." + suffix)]
        if hits:
            return min(hits, key=lambda k: (k.count("decoder"), len(k)))  # encoder/top-level first
    if tied:
        for key in TIED_OUTPUT_KEYS:
            if key in keys:
                return key
    return None


def _read_safetensors_embedding(model_dir, files, tied):
    from safetensors import safe_open

    by_file = {path: _safetensors_keys(path) for path in files}
    key = find_embedding_key([k for keys in by_file.values() for k in keys], tied=tied)
    if key is None:
        raise LLMNotFoundError(f"No token-embedding tensor ({', '.join(EMBEDDING_KEY_SUFFIXES)}) "
                               f"in the safetensors weights of {model_dir}.")
    path = next(p for p, keys in by_file.items() if key in keys)
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(key).float()


def _read_bin_embedding(model_dir):
    model = load_model(model_dir)
    return model.get_input_embeddings().weight.detach().float().clone()


def _token_strings(source, vocab_size):
    """Token string of each row (``""`` past the tokenizer's vocabulary) and the special tokens."""
    try:
        tokenizer = load_tokenizer(source)
    except Exception as err:
        raise LLMNotFoundError(f"LLM {source.path} has no loadable tokenizer "
                               f"({type(err).__name__}: {err})") from err
    tokens = [""] * vocab_size
    for token, idx in tokenizer.get_vocab().items():
        if 0 <= idx < vocab_size:
            tokens[idx] = token
    added = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return tokens, sorted(set(tokenizer.all_special_tokens) | added)


def _is_tied(model_dir):
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("tie_word_embeddings", True))
    except (OSError, ValueError):
        return False


def load_token_embeddings(spec, cache_dir=None):
    """``TokenEmbeddings`` of the LLM named by ``spec`` (see :func:`resolve_model_dir`).

    Reads only the embedding tensor of safetensors checkpoints; caches the result
    under ``cache_dir`` (default ``$RECBOLE_LLM_CACHE`` or ``~/.cache/recbole_llm``).
    """
    source = resolve_model_source(spec)
    model_dir = source.directory
    if source.gguf_file:
        kind, files = "gguf", [source.path]
    elif source.weights_file:
        kind, files = "safetensors", [source.path]
    else:
        kind, files = _weight_files(model_dir)
    cache_dir = os.path.expanduser(cache_dir) if cache_dir else default_cache_dir()
    key = _fingerprint(model_dir, files)
    cached = os.path.join(cache_dir, key + ".pt")
    if os.path.isfile(cached):
        data = torch.load(cached, weights_only=True)
        return TokenEmbeddings(data["matrix"], data["tokens"], frozenset(data["special"]), source.path)
    special = None
    try:
        if kind == "gguf":
            matrix, tokens, special = read_gguf_token_table(source.path)
        elif kind == "safetensors":
            matrix = _read_safetensors_embedding(model_dir, files, _is_tied(model_dir))
        else:
            matrix = _read_bin_embedding(model_dir)
    except LLMNotFoundError:
        raise
    except Exception as err:
        raise LLMNotFoundError(f"Could not read the token embeddings of {model_dir}: "
                               f"{type(err).__name__}: {err}") from err
    if special is None:
        tokens, special = _token_strings(source, matrix.shape[0])
    special = sorted(special)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cached + f".{os.getpid()}.tmp"
    torch.save({"matrix": matrix, "tokens": tokens, "special": special}, tmp)
    os.replace(tmp, cached)
    getLogger().info(f"token embeddings of {source.path}: {tuple(matrix.shape)} cached in {cached}")
    return TokenEmbeddings(matrix, tokens, frozenset(special), source.path)


def token_table_rows(spec, rows):
    """``(shape (V, d), rows [len(rows), d] float32)`` of an LLM's table, reading only those rows.

    No cache is written: a cheap look at a table (shape checks, the shipped-LLM tests)
    without the first full read.  Safetensors and GGUF sources only.
    """
    source = resolve_model_source(spec)
    if source.gguf_file:
        return read_gguf_rows(source.path, rows)
    if source.weights_file:
        files = [source.path]
    else:
        kind, files = _weight_files(source.directory)
        if kind != "safetensors":
            raise LLMNotFoundError(f"{source.directory} stores .bin weights: read the whole table instead "
                                   "(load_token_embeddings)")
    from safetensors import safe_open

    by_file = {path: _safetensors_keys(path) for path in files}
    key = find_embedding_key([k for keys in by_file.values() for k in keys],
                             tied=not source.weights_file and _is_tied(source.directory))
    if key is None:
        raise LLMNotFoundError(f"No token-embedding tensor in the safetensors weights of {source.path}.")
    path = next(p for p, keys in by_file.items() if key in keys)
    with safe_open(path, framework="pt") as f:
        table = f.get_slice(key)
        shape = tuple(table.get_shape())
        return shape, torch.stack([table[int(r):int(r) + 1][0] for r in rows]).float()


def _word_of(token, scheme):
    """The word a token stands for, or None when it continues a word (sub-word piece)."""
    if scheme == "byte_bpe":   # GPT-2 style: "Ġword" starts a word, bare pieces continue one
        return token[1:] if token.startswith("Ġ") else None
    if scheme == "sentencepiece":  # "▁word" starts a word
        return token[1:] if token.startswith("▁") else None
    return None if token.startswith("##") else token  # WordPiece: "##piece" continues


def word_scheme(tokens):
    """How a vocabulary marks word starts: ``byte_bpe`` (Ġ), ``sentencepiece`` (▁) or ``wordpiece`` (##).

    Decided by the more frequent marker: SentencePiece vocabularies hold "Ġ" as a
    plain character token and byte-level BPE ones may hold "▁".
    """
    bpe = sum(t.startswith("Ġ") for t in tokens)
    spm = sum(t.startswith("▁") for t in tokens)
    if max(bpe, spm) < len(tokens) // 100:
        return "wordpiece"
    return "byte_bpe" if bpe > spm else "sentencepiece"


def word_tokens(embeddings, min_length=2):
    """Row indices of whole-word, ASCII-alphabetic, non-special tokens (no sub-word pieces), in vocabulary order."""
    tokens = embeddings.tokens
    scheme = word_scheme(tokens)
    keep = []
    for idx, token in enumerate(tokens):
        if not token or token in embeddings.special_tokens:
            continue
        word = _word_of(token, scheme)
        if word and len(word) >= min_length and word.isascii() and word.isalpha():
            keep.append(idx)
    return torch.tensor(keep, dtype=torch.long)


def farthest_point_pool(matrix, candidates, size):
    """``size`` rows of ``candidates`` spread over the table's directions (farthest-point sampling).

    Cosine geometry: start at the candidate nearest the candidates' mean direction, then
    repeatedly add the candidate whose highest cosine to the chosen set is lowest.
    Deterministic (ties to the lower row); O(size x candidates x d).
    """
    x = torch.nn.functional.normalize(matrix[candidates].float(), dim=-1)
    size = min(int(size), x.shape[0])
    first = int(torch.argmax(x @ torch.nn.functional.normalize(x.mean(0), dim=0)))
    chosen = [first]
    nearest = x @ x[first]  # each candidate's highest cosine to the chosen set
    for _ in range(size - 1):
        nxt = int(torch.argmin(nearest))
        chosen.append(nxt)
        torch.maximum(nearest, x @ x[nxt], out=nearest)
    return candidates[torch.tensor(chosen, dtype=torch.long)]


TOKEN_POOL_MODES = ("first", "farthest")


def token_pool(embeddings, size, min_length=2, mode="first"):
    """Row indices of up to ``size`` candidate tokens: whole words, alphabetic, not special.

    ``mode``: ``first`` keeps vocabulary order (BPE/SentencePiece ids follow merge
    frequency, so these are mostly function words: "the, of, and, in, ..."); ``farthest``
    covers the table's semantic space (:func:`farthest_point_pool` over all whole-word
    tokens, from the table alone).  ``size`` of 0 or None keeps every row.
    """
    if not size:
        return torch.arange(len(embeddings.tokens))
    if mode not in TOKEN_POOL_MODES:
        raise ValueError(f"token pool mode must be one of {TOKEN_POOL_MODES}, got {mode!r}")
    words = word_tokens(embeddings, min_length)
    if mode == "first":
        return words[:size]
    return farthest_point_pool(embeddings.matrix, words, size)
