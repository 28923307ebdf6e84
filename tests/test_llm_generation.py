"""The shared causal-LM generator on a tiny GPT-2 saved locally: chat template, seeded sampling."""
import pytest
from llm_fixtures import save_tiny_gpt2

from recbole_llm.llm.generation import CausalLMGenerator

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny_chat_gpt2(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"), n_positions=128, chat_template=TEMPLATE)


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


def test_dtype_auto_follows_the_hardware(tiny_chat_gpt2, monkeypatch):
    import torch

    from recbole_llm.llm import generation

    monkeypatch.setattr(generation, "cpu_has_native_bf16", lambda: True)
    assert generation.resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(generation, "cpu_has_native_bf16", lambda: False)
    assert generation.resolve_dtype("auto", "cpu") == torch.float32
    assert generation.resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of"):
        generation.resolve_dtype("int4", "cpu")
    gen = CausalLMGenerator(tiny_chat_gpt2, max_new_tokens=4, dtype="bfloat16")
    assert next(gen.model.parameters()).dtype == torch.bfloat16
    assert len(gen.generate(["toy story", "heat"])) == 2
