"""The shared causal-LM generator on a tiny GPT-2 saved locally: chat template, seeded sampling."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from recbole_llm.llm.generation import CausalLMGenerator
from recbole_llm.llm.loading import load_tokenizer

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny_chat_gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tokenizer = load_tokenizer("minilm")
    tokenizer.chat_template = TEMPLATE
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=128,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_chat_template_wraps_prompts_when_the_model_has_one(tiny_chat_gpt2):
    chat = CausalLMGenerator(tiny_chat_gpt2, max_new_tokens=4)
    assert chat.use_chat_template
    assert chat.format_prompt("hi") == "<|user|>hi<|assistant|>"
    plain = CausalLMGenerator(tiny_chat_gpt2, max_new_tokens=4, chat_template="never")
    assert plain.format_prompt("hi") == "hi"
    outputs = chat.generate(["a user watched toy story", "b", "c"])
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
    assert chat.generated_tokens > 0


def test_sampling_is_seeded_and_greedy_is_deterministic(tiny_chat_gpt2):
    prompts = ["toy story", "goldeneye", "heat", "casino"]
    runs = [CausalLMGenerator(tiny_chat_gpt2, max_new_tokens=8, batch_size=2, do_sample=True, seed=s,
                              temperature=1.5).generate(prompts) for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    greedy = CausalLMGenerator(tiny_chat_gpt2, max_new_tokens=8, batch_size=4)
    assert greedy.generate(prompts) == greedy.generate(prompts)
    with pytest.raises(ValueError, match="chat_template must be one of"):
        CausalLMGenerator(tiny_chat_gpt2, chat_template="sometimes")
