"""The shared LLM resolver: shipped MiniLM, local dirs, clear errors, never the network."""
import pytest

from recbole_llm.llm.loading import LLMNotFoundError, load_model, load_tokenizer, resolve_model_dir


def test_minilm_is_the_offline_default():
    tok = load_tokenizer("minilm")
    model = load_model("minilm")
    assert len(tok) == 30522 and model.config.hidden_size == 384
    assert resolve_model_dir("default") == resolve_model_dir("minilm")


def test_local_dir_and_errors(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "tiny")
    assert resolve_model_dir(str(tmp_path / "tiny")) == str(tmp_path / "tiny")
    with pytest.raises(LLMNotFoundError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLMNotFoundError, match="no config.json"):
        resolve_model_dir(str(tmp_path / "empty"))
    with pytest.raises(LLMNotFoundError, match="nothing is downloaded"):
        resolve_model_dir("some-org/not-in-cache-model")
