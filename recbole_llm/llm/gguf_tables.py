"""Token-embedding tables and token strings read straight from a GGUF file (MLTFR §3, eq. 19).

``gguf.GGUFReader`` maps the file; only ``token_embd.weight`` is dequantised
(``gguf.quants.dequantize``: F32/F16/BF16 and every quantisation the ``gguf``
package knows, Q8_0, Q4_K, ...), so no model is built: SmolLM2-135M's 49152 x 576
table takes seconds instead of a model load.  Token strings and their types come
from the file's tokenizer metadata (``tokenizer.ggml.tokens`` / ``token_type``).
The table is returned as stored: a model that scales its embeddings in its forward
(Gemma multiplies by sqrt(d)) is not rescaled here.
"""
import importlib.util

import numpy as np
import torch

EMBEDDING_TENSOR = "token_embd.weight"
# gguf.TokenType: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
SPECIAL_TOKEN_TYPES = (2, 3, 5, 6)


def _gguf():
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading a GGUF model needs the gguf package: pip install gguf")
    import gguf

    return gguf


def _field_strings(field):
    return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]


def _embedding_tensor(reader, path):
    tensor = next((t for t in reader.tensors if t.name == EMBEDDING_TENSOR), None)
    if tensor is None:
        raise ValueError(f"{path} holds no {EMBEDDING_TENSOR} tensor")
    return tensor


def read_gguf_rows(path, rows):
    """``(table shape (V, d), float32 rows [len(rows), d])``: only those rows are dequantised.

    The file is memory-mapped and quantised blocks never cross a row, so a few rows
    of Gemma's 262144-row table cost milliseconds.
    """
    gguf = _gguf()
    tensor = _embedding_tensor(gguf.GGUFReader(path), path)
    vocab, dim = int(tensor.shape[1]), int(tensor.shape[0])  # GGUF lists dimensions innermost first
    data = tensor.data.reshape(vocab, -1)[np.asarray(rows)]
    values = np.array(gguf.quants.dequantize(data, tensor.tensor_type), dtype=np.float32)
    return (vocab, dim), torch.from_numpy(values.reshape(len(rows), dim))


def read_gguf_token_table(path):
    """``(matrix [V, d] float32 tensor, tokens [V] str, special tokens set)`` of a GGUF file."""
    gguf = _gguf()
    reader = gguf.GGUFReader(path)
    tensor = _embedding_tensor(reader, path)
    matrix = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    matrix = torch.from_numpy(np.array(matrix, dtype=np.float32)).reshape(-1, int(tensor.shape[0]))
    field = reader.fields.get("tokenizer.ggml.tokens")
    tokens = _field_strings(field) if field is not None else []
    tokens = (tokens + [""] * matrix.shape[0])[:matrix.shape[0]]
    types = reader.fields.get("tokenizer.ggml.token_type")
    special = set()
    if types is not None:
        for idx, part in zip(range(len(tokens)), types.data):
            if int(types.parts[part][0]) in SPECIAL_TOKEN_TYPES:
                special.add(tokens[idx])
    return matrix, tokens, special
