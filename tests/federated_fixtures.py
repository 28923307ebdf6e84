"""Shared helpers of the federated/LUMOS tests: one tiny ml-100k split per module."""
import os

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm.config import Config
from recbole_llm.utils import get_model

TINY_FED = {
    "hidden_size": 16, "inner_size": 32, "embedding_size": 16, "n_layers": 1, "n_heads": 1,
    "MAX_ITEM_LIST_LENGTH": 10, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0,
    "dropout_prob": 0.0, "dropout_probs": [0.0, 0.0], "num_layers": 1, "state": "WARNING", "show_progress": False, "rounds": 1,
    "local_epochs": 1, "client_fraction": 0.02, "eval_step": 1, "metrics": ["Hit", "NDCG"],
    "topk": [20], "valid_metric": "NDCG@20", "seed": 2020,
}


def tiny_split(tmp_dir, model="FedSeq", **overrides):
    """``(config, dataset, train, valid, test)`` of ml-100k for a tiny federated model."""
    cwd = os.getcwd()
    os.chdir(tmp_dir)
    try:
        config = Config(model=model, dataset="ml-100k", config_dict=dict(TINY_FED, **overrides))
        dataset = create_dataset(config)
        return (config, dataset, *data_preparation(config, dataset))
    finally:
        os.chdir(cwd)


def build(config, train, **overrides):
    for key, value in overrides.items():
        config[key] = value
    torch.manual_seed(0)
    return get_model(config["model"])(config, train.dataset)


def split_fixture(model):
    """A module-scoped fixture: :func:`tiny_split` of ``model``, built once per test module."""

    @pytest.fixture(scope="module")
    def split(tmp_path_factory):
        return tiny_split(tmp_path_factory.mktemp(model), model=model)

    return split
