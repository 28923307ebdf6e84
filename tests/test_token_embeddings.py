"""Token-embedding matrices W_voc from local checkpoints."""
import json
import os
import shutil

import pytest
import torch

from recbole_llm.llm import token_embeddings as te
from recbole_llm.llm.loading import LLMNotFoundError, minilm_path

WORDS = "the movie story love war music night house family world star dream city girl " * 4


def _tiny_gpt2(path):
    """A GPT-2 with a byte-level BPE tokenizer trained on a few words, saved with save_pretrained."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([WORDS], vocab_size=300, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=8, n_layer=1, n_head=2,
                                       n_positions=16))
    tokenizer.save_pretrained(path)
    return model, tokenizer


def _tiny_bert(path):
    """A BERT with MiniLM's WordPiece vocabulary (30522) and hidden size 8."""
    from transformers import BertConfig, BertModel

    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_path(), name), path)
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=16))


@pytest.mark.parametrize("shard", [None, "4KB"])
def test_tiny_gpt2_single_and_sharded(tmp_path, shard):
    d = tmp_path / "gpt2"
    d.mkdir()
    model, tokenizer = _tiny_gpt2(d)
    model.save_pretrained(d, **({"max_shard_size": shard} if shard else {}))
    assert os.path.isfile(d / te.SAFETENSORS_INDEX) == bool(shard)
    if shard:
        assert len(set(json.load(open(d / te.SAFETENSORS_INDEX))["weight_map"].values())) > 1
    emb = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert torch.equal(emb.matrix, model.transformer.wte.weight.detach())
    assert emb.tokens[tokenizer.convert_tokens_to_ids("Ġmovie")] == "Ġmovie"
    pooled = [emb.tokens[i] for i in te.token_pool(emb, 1000)]
    assert "Ġmovie" in pooled and pooled and all(t.startswith("Ġ") and t[1:].isalpha() for t in pooled)
    assert "<|endoftext|>" not in pooled


@pytest.mark.parametrize("shard", [None, "200KB"])
def test_tiny_bert_single_and_sharded(tmp_path, shard):
    d = tmp_path / "bert"
    d.mkdir()
    model = _tiny_bert(d)
    model.save_pretrained(d, **({"max_shard_size": shard} if shard else {}))
    assert os.path.isfile(d / te.SAFETENSORS_INDEX) == bool(shard)
    emb = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert torch.equal(emb.matrix, model.embeddings.word_embeddings.weight.detach())
    assert emb.matrix.shape == (30522, 8) and emb.tokens[101] == "[CLS]"


def test_bin_checkpoint_falls_back_to_the_model(tmp_path):
    d = tmp_path / "bert_bin"
    d.mkdir()
    model = _tiny_bert(d)
    model.config.save_pretrained(d)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    emb = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert torch.equal(emb.matrix, model.embeddings.word_embeddings.weight.detach())


def test_shipped_minilm_and_pool(tmp_path):
    emb = te.load_token_embeddings("minilm", cache_dir=tmp_path)
    assert emb.matrix.shape == (30522, 384) and emb.dim == 384
    from recbole_llm.llm.loading import load_model

    reference = load_model("minilm").embeddings.word_embeddings.weight.detach()
    assert torch.equal(emb.matrix, reference)
    rows = te.token_pool(emb, 500)
    words = [emb.tokens[i] for i in rows]
    assert len(words) == 500 and len(set(rows.tolist())) == 500
    assert all(w.isalpha() and not w.startswith("##") and w not in emb.special_tokens for w in words)
    assert "[CLS]" not in words and "[unused1]" not in words
    assert te.token_pool(emb, 0).numel() == 30522


def test_farthest_point_pool_is_deterministic_and_covers_the_table(tmp_path):
    emb = te.load_token_embeddings("minilm", cache_dir=tmp_path)
    words = te.word_tokens(emb)
    far = te.token_pool(emb, 256, mode="farthest")
    assert torch.equal(far, te.token_pool(emb, 256, mode="farthest"))  # deterministic
    assert len(set(far.tolist())) == 256 and set(far.tolist()) <= set(words.tolist())  # whole words only
    first = te.token_pool(emb, 256)
    x = torch.nn.functional.normalize(emb.matrix[words], dim=-1)

    def worst_cover(pool):  # the least covered word's best cosine to the pool
        return float((x @ torch.nn.functional.normalize(emb.matrix[pool], dim=-1).T).max(1).values.min())

    assert worst_cover(far) > worst_cover(first) + 0.05
    function_words = {"the", "of", "and", "in", "to", "was", "he", "is"}
    assert function_words <= {emb.tokens[i] for i in first}
    assert len(function_words & {emb.tokens[i] for i in far}) <= 2
    with pytest.raises(ValueError, match="token pool mode must be one of"):
        te.token_pool(emb, 8, mode="kmeans++")


def test_farthest_point_pool_by_hand():
    table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    pool = te.farthest_point_pool(table, torch.arange(5), 3)
    # mean direction ~ (0.32, 0.36): nearest is row 4; then the farthest from it, row 3; then row 1 or 0
    assert pool[:2].tolist() == [4, 3] and pool[2].item() in (0, 1)


def test_cache_is_reused_and_keyed_by_file(tmp_path, monkeypatch):
    d = tmp_path / "bert"
    d.mkdir()
    model = _tiny_bert(d)
    model.save_pretrained(d)
    first = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert len(os.listdir(tmp_path / "cache")) == 1

    def no_read(*a, **k):
        raise AssertionError("read the checkpoint again")

    monkeypatch.setattr(te, "_read_safetensors_embedding", no_read)
    again = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert torch.equal(again.matrix, first.matrix) and again.tokens == first.tokens
    monkeypatch.undo()
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(1.0)
    model.save_pretrained(d)  # new weights -> new key, fresh read
    changed = te.load_token_embeddings(str(d), cache_dir=tmp_path / "cache")
    assert torch.equal(changed.matrix, first.matrix + 1.0)
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_embedding_key_names():
    assert te.find_embedding_key(["model.embed_tokens.weight", "lm_head.weight"]) == "model.embed_tokens.weight"
    assert te.find_embedding_key(["shared.weight", "encoder.embed_tokens.weight"]) == "encoder.embed_tokens.weight"
    assert te.find_embedding_key(["decoder.embed_tokens.weight", "encoder.embed_tokens.weight"]) == \
        "encoder.embed_tokens.weight"
    assert te.find_embedding_key(["transformer.wte.weight", "transformer.wpe.weight"]) == "transformer.wte.weight"
    assert te.find_embedding_key(["lm_head.weight"], tied=True) == "lm_head.weight"
    assert te.find_embedding_key(["lm_head.weight"], tied=False) is None


def test_missing_or_unreadable_llm(tmp_path):
    with pytest.raises(LLMNotFoundError, match="does not exist"):
        te.load_token_embeddings(str(tmp_path / "nope"), cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(LLMNotFoundError, match="no model.safetensors"):
        te.load_token_embeddings(str(tmp_path / "empty"), cache_dir=tmp_path)
