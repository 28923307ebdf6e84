"""Shared fixtures: every test runs in its own temporary directory (RecBole
writes ./log, ./saved and ./log_tensorboard to the working directory)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _llm_cache_of_the_session(tmp_path_factory):
    """LLM caches (token tables, generated views) go to one directory of this test session, not ~."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECBOLE_LLM_CACHE", str(tmp_path_factory.mktemp("llm_cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    from recbole_llm.compat import silence_recbole_future_warnings

    silence_recbole_future_warnings()  # pytest resets warning filters for every test
    monkeypatch.chdir(tmp_path)
    # RecBole reads --key=value from sys.argv: keep pytest's own flags out of configs.
    monkeypatch.setattr("sys.argv", ["pytest"])
    yield


TINY_SEQ = {
    "epochs": 1,
    "hidden_size": 16,
    "inner_size": 32,
    "embedding_size": 16,
    "n_layers": 1,
    "n_heads": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 1024,
    "eval_batch_size": 4096,
    "show_progress": False,
    "state": "WARNING",
    "metrics": ["Hit", "NDCG"],
    "topk": [20],
    "valid_metric": "NDCG@20",
    "seed": 2020,
}


@pytest.fixture
def tiny_seq_config(tmp_path):
    """A tiny sequential config (seconds per epoch on ml-100k, 2 CPU cores)."""
    return dict(TINY_SEQ, checkpoint_dir=str(tmp_path / "saved"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread: its ops are tiny, and on 2 shared cores
    OpenMP spin-waiting made them up to 100x slower. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
