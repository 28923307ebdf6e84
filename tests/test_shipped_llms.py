"""The real LLMs that ship in PyPI packages (recbole_llm.llm.catalog): each one's token table
is read without the model, from only a few rows (no full read, no cache, no download).

A test is skipped, naming the package, only where that package is not installed;
the README's install command and CI install every one of them.
"""
import importlib.util

import pytest
import torch

from recbole_llm.llm.catalog import NAMED_LLMS
from recbole_llm.llm.loading import LLMNotFoundError, load_model, load_tokenizer, resolve_model_source
from recbole_llm.llm.token_embeddings import load_token_embeddings, token_pool, token_table_rows, word_scheme

# name: (table shape, first four values of row 1000 as the package ships them, word scheme)
SHIPPED = {
    "minilm": ((30522, 384), [0.03935, -0.001002, -0.053637, 0.015869], "wordpiece"),
    "wordllama": ((32000, 256), [-0.039551, 0.343018, 0.622559, 0.119263], "sentencepiece"),
    "smollm2-135m": ((49152, 576), [-0.111938, -0.073959, 0.037979, -0.01799], "byte_bpe"),
    "gemma3-270m": ((262144, 640), [-0.018655, 0.000888, 0.0, -0.047082], "sentencepiece"),
}


def installed(name):
    llm = NAMED_LLMS[name]
    return pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(llm.module) is None, reason=f"{name} ships in {llm.package}: {llm.install}"))


def test_every_named_llm_is_covered():
    assert set(SHIPPED) == set(NAMED_LLMS)


@pytest.mark.parametrize("name", [installed(n) for n in SHIPPED])
def test_shipped_token_table_shape_and_rows(name):
    shape, values, _ = SHIPPED[name]
    got_shape, rows = token_table_rows(name, [1000, 7])
    assert got_shape == shape and rows.shape == (2, shape[1]) and rows.dtype == torch.float32
    torch.testing.assert_close(rows[0, :4], torch.tensor(values), atol=1e-6, rtol=0)
    assert rows[1].abs().sum() > 0


@pytest.mark.parametrize("name", [installed(n) for n in SHIPPED])
def test_shipped_tokenizer_matches_the_table(name):
    shape, _, scheme = SHIPPED[name]
    tokenizer = load_tokenizer(name)
    vocab = tokenizer.get_vocab()
    assert max(vocab.values()) < shape[0] and len(vocab) > shape[0] * 0.9
    assert word_scheme(list(vocab)) == scheme
    assert len(tokenizer("The Godfather (1972)")["input_ids"]) >= 4


@pytest.mark.skipif(importlib.util.find_spec("wordllama") is None,
                    reason="wordllama: pip install wordllama==0.3.3.post0")
def test_wordllama_is_a_static_table(tmp_path):
    emb = load_token_embeddings("wordllama", cache_dir=str(tmp_path))
    assert emb.matrix.shape == (32000, 256) and emb.source.endswith("l2_supercat_256.safetensors")
    assert {"<s>", "</s>", "<unk>"} <= emb.special_tokens
    pool = [emb.tokens[i] for i in token_pool(emb, 8)]
    assert pool[:3] == ["▁th", "▁the", "▁in"] and all(t.startswith("▁") for t in pool)
    with pytest.raises(LLMNotFoundError, match="static token table, not a model"):
        load_model("wordllama")


def test_bare_safetensors_file_is_a_table_with_its_tokenizer(tmp_path):
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "the", "god", "father", "matrix"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    table = torch.randn(len(words), 6)
    save_file({"embedding.weight": table}, str(tmp_path / "table.safetensors"))
    source = resolve_model_source(str(tmp_path / "table.safetensors"))
    assert source.weights_file == "table.safetensors" and source.tokenizer_file == "tokenizer.json"
    emb = load_token_embeddings(source.path, cache_dir=str(tmp_path / "cache"))
    torch.testing.assert_close(emb.matrix, table)
    assert emb.tokens == words
    assert token_table_rows(source.path, [3])[0] == (5, 6)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(LLMNotFoundError, match="no tokenizer.json beside it"):
        load_token_embeddings(str(tmp_path / "table.safetensors"), cache_dir=str(tmp_path / "cache2"))
