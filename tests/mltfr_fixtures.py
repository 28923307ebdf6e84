"""Shared tiny MLTFR setup for tests/test_mltfr*.py (a filtered ml-100k: 122 users)."""
import pytest
from recbole.data.interaction import Interaction

from conftest import TINY_SEQ
from recbole_llm.config import Config
from recbole_llm.quick_start import build_model, prepare

MLTFR_TINY = dict(
    TINY_SEQ,
    user_inter_num_interval="[20,23)",   # ~75 users, ~1.5k interactions: batches in milliseconds
    train_batch_size=256,
    llm_experts=["minilm", "minilm"],
    token_pool=128,
    num_tokens=8,
    expert_heads=2,
    fisher_batches=2,
)


@pytest.fixture(scope="session")
def llm_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("token_cache"))


@pytest.fixture
def mltfr_config(llm_cache, tmp_path):
    return dict(MLTFR_TINY, llm_cache_dir=llm_cache, checkpoint_dir=str(tmp_path / "saved"))


def build(config_dict, model="MLTFR"):
    """(config, model, train, valid) for ``config_dict`` on the tiny ml-100k."""
    config = Config(model=model, dataset="ml-100k", config_dict=config_dict)
    _, train, valid, _ = prepare(config)
    return config, build_model(config, train), train, valid


def first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


def as_interaction(batch):
    return batch if isinstance(batch, Interaction) else Interaction(batch)
