"""Tiny local LLMs for the tests: built from configs and saved with save_pretrained (nothing downloaded)."""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from recbole_llm.llm.loading import load_tokenizer


def save_tiny_gpt2(path, n_positions=256, chat_template=None):
    """A 1-layer random GPT-2 with MiniLM's WordPiece tokenizer (and ``chat_template`` if given)."""
    tokenizer = load_tokenizer("minilm")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=n_positions,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
