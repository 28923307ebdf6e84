"""Each compat fix, with a test that shows the break it mends."""
import subprocess
import sys

import pytest
import torch
from recbole.trainer import Trainer

from recbole_llm.compat import load_checkpoint, with_safe_checkpoints
from recbole_llm.config import Config
from recbole_llm.quick_start import build_model, prepare


@pytest.fixture
def tiny_setup(tiny_seq_config):
    config = Config("SASRec", "ml-100k", config_dict=tiny_seq_config)
    _, train, valid, test = prepare(config)
    return config, build_model(config, train), test


def test_stock_recbole_checkpoint_breaks_on_safe_torch_load(tiny_setup):
    config, model, _ = tiny_setup
    trainer = Trainer(config, model)                  # RecBole's own trainer
    trainer._save_checkpoint(0, verbose=False)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(trainer.saved_model_file)         # what Trainer.evaluate does
    with pytest.raises(RuntimeError, match="not a recbole_llm checkpoint"):
        load_checkpoint(trainer.saved_model_file)     # we never unpickle it


def test_safe_checkpoint_reloads_in_recbole_evaluate(tiny_setup):
    config, model, test = tiny_setup
    trainer = with_safe_checkpoints(Trainer)(config, model)
    trainer._save_checkpoint(0, verbose=False)
    ckpt = torch.load(trainer.saved_model_file)       # weights_only=True default
    assert ckpt["config"]["model"] == "SASRec" and ckpt["config"]["dataset"] == "ml-100k"
    assert ckpt["config"]["external_config_dict"]["hidden_size"] == 16
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)                               # the reload must undo this
    result = trainer.evaluate(test, load_best_model=True)  # RecBole's own evaluate
    assert "ndcg@20" in result
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(model.state_dict()[k], v)


def _anomaly_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport torch;print(torch.is_anomaly_enabled())"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_recbole_import_turns_anomaly_detection_on_and_we_turn_it_off():
    assert _anomaly_after("import recbole.model.sequential_recommender") == "True"  # the break
    assert _anomaly_after("import recbole_llm; from recbole_llm.utils import get_model; "
                          "get_model('SASRec')") == "False"


def test_detect_anomaly_can_be_turned_on_by_config(tiny_seq_config):
    config = Config("SASRec", "ml-100k", config_dict=dict(tiny_seq_config, detect_anomaly=True))
    try:
        prepare(config)
        assert torch.is_anomaly_enabled()
    finally:
        torch.autograd.set_detect_anomaly(False)
    prepare(Config("SASRec", "ml-100k", config_dict=tiny_seq_config))
    assert not torch.is_anomaly_enabled()


def test_recbole_graph_models_need_dok_update_which_scipy_removed(tiny_seq_config):
    # the break: RecBole's LightGCN calls dok_matrix._update, gone from SciPy>=1.12
    out = subprocess.run([sys.executable, "-c", "import scipy.sparse as sp; print(hasattr(sp.dok_matrix, '_update'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    import numpy as np
    from recbole_llm.quick_start import run_recbole_llm

    config = Config("LightGCN", "ml-100k", config_dict=dict(tiny_seq_config, embedding_size=8, n_layers=1))
    _, train, _, _ = prepare(config)
    model = build_model(config, train)        # fails without the fix
    adj = model.norm_adj_matrix.to_dense().numpy()
    inter = train._dataset.inter_matrix(form="coo").astype(np.float32)
    n_u, n_i = inter.shape
    full = np.zeros((n_u + n_i, n_u + n_i), dtype=np.float32)
    full[:n_u, n_u:] = (inter.toarray() > 0)
    full[n_u:, :n_u] = full[:n_u, n_u:].T
    d = 1.0 / np.sqrt(full.sum(1) + 1e-7)
    np.testing.assert_allclose(adj, d[:, None] * full * d[None, :], rtol=1e-5, atol=1e-7)
    result = run_recbole_llm("LightGCN", "ml-100k", config_dict=dict(tiny_seq_config, embedding_size=8,
                                                                     n_layers=1), saved=False)
    assert 0.0 < result["test_result"]["hit@20"] <= 1.0


def test_import_is_cheap_and_changes_nothing():
    code = ("import sys, scipy.sparse as sp, recbole_llm, recbole_llm.utils, recbole_llm.quick_start\n"
            "from recbole_llm.registry import RECBOLE_MODEL_PACKAGES as P\n"
            "print(sorted({m.split('.')[2] for m in sys.modules if m.startswith('recbole.model.')"
            " and m.split('.')[2] in P}), hasattr(sp.dok_matrix, '_update'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False"  # no RecBole model package imported, SciPy untouched
    # the SciPy fix is applied when a model that needs it is looked up, and only then
    code = ("import scipy.sparse as sp\nfrom recbole_llm.utils import get_model\nget_model('SASRec')\n"
            "a = hasattr(sp.dok_matrix, '_update')\nget_model('LightGCN')\nprint(a, hasattr(sp.dok_matrix, '_update'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False True"


def test_recbole_future_warnings_are_silenced_and_only_those():
    import warnings

    from recbole_llm.compat import silence_recbole_future_warnings

    def warn_from(module, message, category=FutureWarning):
        exec(compile(f"import warnings\nwarnings.warn({message!r}, {category.__name__})", module, "exec"),
             {"__name__": module, "FutureWarning": FutureWarning, "DeprecationWarning": DeprecationWarning})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_recbole_future_warnings()
        warn_from("recbole.data.dataset.dataset", "A value is trying to be set on a copy")
        warn_from("recbole.trainer.trainer", "`torch.cuda.amp.GradScaler(args...)` is deprecated")
        warn_from("recbole.trainer.trainer", "something else is deprecated")  # not RecBole's known one
        warn_from("recbole.data.dataset.dataset", "a real problem", DeprecationWarning)  # other category
        warn_from("recbole_llm.quick_start", "our own deprecation")  # this package's warnings still show
    assert sorted(str(w.message) for w in caught) == ["a real problem", "our own deprecation",
                                                      "something else is deprecated"]


def _racing_makedirs(monkeypatch, module):
    """Another process creates the directory between ``ensure_dir``'s check and its create."""
    real = module.os.makedirs

    def other_process_was_first(path, *args, **kwargs):
        real(path, exist_ok=True)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module.os, "makedirs", other_process_was_first)


def test_recbole_ensure_dir_races_and_ours_does_not(tiny_seq_config, tmp_path, monkeypatch):
    import recbole.utils.logger as recbole_logger
    import recbole.utils.utils as recbole_utils

    original = recbole_utils.ensure_dir
    monkeypatch.setattr(recbole_logger, "ensure_dir", original)
    _racing_makedirs(monkeypatch, recbole_utils)
    with pytest.raises(FileExistsError):  # RecBole's check-then-create (Ray Tune trials, DDP ranks)
        original(str(tmp_path / "a"))
    Config("SASRec", "ml-100k", config_dict=tiny_seq_config)
    assert recbole_logger.ensure_dir is not original
    recbole_logger.ensure_dir(str(tmp_path / "b"))  # init_logger's call: no error when the race is lost
    assert (tmp_path / "b").is_dir()
