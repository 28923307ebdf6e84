"""Batched text generation with a local Hugging Face causal LM (shared LLM layer).

The model and tokenizer are resolved offline by :mod:`recbole_llm.llm.loading`;
prompts are left-padded so a whole batch is generated in one ``generate`` call,
and only the newly generated tokens are decoded.
"""
import torch

from recbole_llm.llm.loading import load_model, load_tokenizer


class CausalLMGenerator:
    """``generate(prompts) -> list[str]`` continuations, ``batch_size`` prompts at a time."""

    def __init__(self, spec, device="cpu", max_new_tokens=48, batch_size=8, do_sample=False,
                 max_prompt_tokens=512, seed=2020):
        self.tokenizer = load_tokenizer(spec)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = load_model(spec, auto_class="AutoModelForCausalLM").to(device).eval()
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.do_sample = bool(do_sample)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.seed = seed

    @torch.no_grad()
    def generate(self, prompts):
        outputs = []
        positions = getattr(self.model.config, "max_position_embeddings",
                            getattr(self.model.config, "n_positions", None))
        limit = self.max_prompt_tokens
        if positions:
            limit = max(1, min(limit, positions - self.max_new_tokens))
        if self.do_sample:
            torch.manual_seed(self.seed)
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(list(prompts[start:start + self.batch_size]), padding=True,
                                   truncation=True, max_length=limit, return_tensors="pt",
                                   return_token_type_ids=False).to(self.device)
            generated = self.model.generate(
                **batch, max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                pad_token_id=self.tokenizer.pad_token_id)
            new_tokens = generated[:, batch["input_ids"].shape[1]:]
            outputs.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return outputs
