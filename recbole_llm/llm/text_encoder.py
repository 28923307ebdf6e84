"""Mean-pooled sentence embeddings from a local text encoder (default: shipped MiniLM).

Shared by every method that embeds item text (LUMOS views, title lookup).  The
weights are resolved by :mod:`recbole_llm.llm.loading` (offline only).
"""
import numpy as np
import torch

from recbole_llm.llm.loading import load_model, load_tokenizer


class TextEncoder:
    """``encode(texts) -> float32 [n, d]`` L2-normalised mean-pooled embeddings."""

    def __init__(self, spec="minilm", device="cpu", max_length=64):
        self.tokenizer = load_tokenizer(spec)
        self.model = load_model(spec).to(device).eval()
        self.device = device
        self.max_length = max_length

    @torch.no_grad()
    def encode(self, texts, batch_size=256):
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        if not chunks:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return torch.cat(chunks).numpy().astype(np.float32)


_ENCODERS = {}


def get_text_encoder(spec="minilm", device="cpu"):
    """A cached :class:`TextEncoder` (loading MiniLM once per process)."""
    key = (str(spec), str(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = TextEncoder(spec, device)
    return _ENCODERS[key]
