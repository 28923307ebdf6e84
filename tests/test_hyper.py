"""Hyper-parameter tuning: ``objective_function`` (RecBole's HyperTuning contract) and ``run_hyper.py``.

Two tiny tuning runs (an exhaustive search over two values of one key): a RecBole model
through ``run_hyper.main`` and a federated model of this package through RecBole's
``HyperTuning`` with ``objective_function`` itself; the shipped params files; the grid
search; the CLI's refusals.
"""
import glob
import os
import sys

import pytest
import yaml
from recbole.trainer import HyperTuning

from conftest import TINY_SEQ
from federated_fixtures import TINY_FED
from recbole_llm.config import PROPERTIES_DIR, Config
from recbole_llm.quick_start import objective_function

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_hyper  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONTRACT = {"best_valid_score", "valid_score_bigger", "best_valid_result", "test_result"}
SMALL = {"hidden_size": 8, "inner_size": 16, "embedding_size": 8, "MAX_ITEM_LIST_LENGTH": 5}
# the model yaml that each shipped params file tunes
PARAMS_FILES = {"mltfr": "MLTFR", "lumos": "LUMOS", "l3rec": "L3Rec", "pod": "POD"}


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def check_trials(params2result, key, values, best_params, export_file):
    """Each value was one trial, the export file lists them all, the best params are the best trial's."""
    assert sorted(params2result) == sorted(f"{key}:{value}" for value in values)
    for result in params2result.values():
        assert CONTRACT <= set(result), result.keys()
        assert result["valid_score_bigger"] is True
    text = open(export_file, encoding="utf-8").read()
    for value in values:
        assert f"{key}:{value}\nValid result:\n" in text
    assert text.count("Valid result:") == text.count("Test result:") == len(values)
    assert best_params[key] in values
    best = params2result[HyperTuning.params2str(best_params)]["best_valid_score"]
    assert best == max(result["best_valid_score"] for result in params2result.values())


def test_run_hyper_tunes_a_recbole_model(tmp_path):
    """``run_hyper.main``: SASRec, exhaustive over two learning rates, fixed values from --key=value."""
    params_file = write(tmp_path / "lr.hyper", "# learning rates\nlearning_rate choice [0.001,0.01]\n")
    fixed = dict(TINY_SEQ, **SMALL, n_layers=1, n_heads=1)
    argv = ["--model=SASRec", "--dataset=ml-100k", f"--params_file={params_file}",
            "--output_file=sasrec.result", *(f"--{key}={value}" for key, value in fixed.items())]
    best_params, best_result, params2result = run_hyper.main(argv)

    check_trials(params2result, "learning_rate", [0.001, 0.01], best_params, "sasrec.result")
    assert best_result["model"] == "SASRec"
    assert set(best_result["best_valid_result"]) == {"hit@20", "ndcg@20"}  # the fixed --metrics/--topk held
    assert len(glob.glob("log/SASRec/*.log")) == 2  # one log file per trial


def test_hyper_tuning_with_objective_function_on_a_federated_model(tmp_path):
    """RecBole's HyperTuning calls ``objective_function`` directly: FedSeq (rounds, not epochs)."""
    fixed = dict(TINY_FED, **SMALL, model="FedSeq", dataset="ml-100k", client_fraction=0.01,
                 checkpoint_dir=str(tmp_path / "saved"))
    config_file = write(tmp_path / "fixed.yaml", yaml.safe_dump(fixed))
    params_file = write(tmp_path / "fed.hyper", "local_learning_rate choice [0.5,1.0]\n")
    params = run_hyper.read_params_file(params_file)
    hp = HyperTuning(objective_function, params_file=params_file, fixed_config_file_list=[config_file],
                     algo=run_hyper.grid_algo(params), max_evals=2)
    hp.run()
    hp.export_result(output_file="fed.result")

    check_trials(hp.params2result, "local_learning_rate", [0.5, 1.0], hp.best_params, "fed.result")
    assert {result["model"] for result in hp.params2result.values()} == {"FedSeq"}
    assert len(os.listdir(tmp_path / "saved")) == 2  # saved=True: one checkpoint per trial


@pytest.mark.parametrize("method", sorted(PARAMS_FILES))
def test_shipped_params_files(method):
    """``properties/hyper/<method>.hyper``: RecBole's format, a grid, keys of the method's model."""
    path = os.path.join(PROPERTIES_DIR, "hyper", f"{method}.hyper")
    params = run_hyper.read_params_file(path)
    assert len(params) >= 2
    run_hyper.check_exhaustive(params)  # every shipped file runs with the default --algo exhaustive
    assert HyperTuning._build_space_from_file(path).keys() == run_hyper.hyperopt_space(params).keys()
    config = Config(model=PARAMS_FILES[method], dataset="ml-100k", command_line=False)
    assert [name for name, _, _ in params if name not in config] == []


@pytest.fixture
def fake_trials(monkeypatch):
    """Trials without training: a constant score (never an improvement), the sampled params recorded."""
    seen = []

    def trial(self, config_dict=None, config_file_list=None):
        config_dict = dict(self.fixed, **config_dict)
        seen.append(config_dict)
        return {"model": config_dict["model"], "best_valid_score": 0.5, "valid_score_bigger": True,
                "best_valid_result": {"ndcg@10": 0.5}, "test_result": {"ndcg@10": 0.4}}

    monkeypatch.setattr(run_hyper.Objective, "__call__", trial)
    return seen


@pytest.mark.parametrize("algo, max_evals, trials", [("exhaustive", None, 12), ("exhaustive", 5, 5),
                                                     ("random", 3, 3), ("bayes", 3, 3)])
def test_search_algorithms(tmp_path, fake_trials, algo, max_evals, trials):
    """The exhaustive search walks the whole grid once (no early stop after 10 flat trials;
    ``--max_evals`` caps it); random and bayes run ``--max_evals`` trials."""
    params_file = write(tmp_path / "grid.hyper", "n_layers choice [1,2,3,4]\nhidden_act choice ['gelu','relu','tanh']\n")
    argv = ["--model=SASRec", "--dataset=ml-100k", f"--params_file={params_file}", f"--algo={algo}",
            "--seed=7", *([f"--max_evals={max_evals}"] if max_evals else [])]
    best_params, _, params2result = run_hyper.main(argv)
    assert len(fake_trials) == trials
    assert {trial["seed"] for trial in fake_trials} == {"7"}  # the fixed --key=value reaches every trial
    points = [(trial["n_layers"], trial["hidden_act"]) for trial in fake_trials]
    assert len(params2result) == len(set(points))  # a point sampled twice is one entry (RecBole's)
    if algo == "exhaustive":
        assert len(set(points)) == trials
    if max_evals is None:
        assert sorted(points) == sorted((n, a) for n in [1, 2, 3, 4] for a in ["gelu", "relu", "tanh"])
    assert (best_params["n_layers"], best_params["hidden_act"]) in points


def test_params_file_format(tmp_path):
    path = write(tmp_path / "p.hyper", "# comment with words\nlr loguniform -8,0\nh choice [8,16]\n"
                                       "d uniform 0.1,0.5\nn quniform 1,3,1\nshort line\n\n")
    assert run_hyper.read_params_file(path) == [
        ("lr", "loguniform", [-8.0, 0.0]), ("h", "choice", [8, 16]),
        ("d", "uniform", [0.1, 0.5]), ("n", "quniform", [1.0, 3.0, 1.0])]
    with pytest.raises(run_hyper.UsageError, match="continuous"):
        run_hyper.check_exhaustive(run_hyper.read_params_file(path))
    with pytest.raises(run_hyper.UsageError, match="normal"):
        run_hyper.read_params_file(write(tmp_path / "bad.hyper", "lr normal 0,1\n"))
    with pytest.raises(run_hyper.UsageError, match="low,high"):
        run_hyper.read_params_file(write(tmp_path / "bad2.hyper", "lr uniform 0.1\n"))
    with pytest.raises(run_hyper.UsageError, match="no parameter"):
        run_hyper.read_params_file(write(tmp_path / "empty.hyper", "# nothing\n"))


def test_cli_refusals(tmp_path, capsys):
    params_file = write(tmp_path / "lr.hyper", "learning_rate loguniform -8,0\n")
    with pytest.raises(run_hyper.UsageError, match="--algo random"):  # before any training
        run_hyper.main(["--model=SASRec", "--dataset=ml-100k", f"--params_file={params_file}"])
    with pytest.raises(SystemExit):
        run_hyper.main(["--model=SASRec", f"--params_file={params_file}", "stray"])
    assert "unrecognised argument 'stray'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_hyper.main(["--model=SASRec", f"--params_file={params_file}", "--tool=optuna"])


def test_ray_without_pyarrow_says_why(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    params_file = write(tmp_path / "lr.hyper", "learning_rate choice [0.001,0.01]\n")
    with pytest.raises(run_hyper.UsageError, match="pyarrow"):
        run_hyper.main(["--model=SASRec", "--dataset=ml-100k", f"--params_file={params_file}", "--tool=ray"])


def test_ray_tune_runs_the_grid(tmp_path):
    """``--tool ray`` (needs pyarrow<15 beside ray 2.6.3): the same grid, trials in Ray workers."""
    pytest.importorskip("pyarrow")
    params_file = write(tmp_path / "lr.hyper", "learning_rate choice [0.001,0.01]\n")
    fixed = dict(TINY_SEQ, **SMALL, n_layers=1, n_heads=1)
    argv = ["--model=SASRec", "--dataset=ml-100k", f"--params_file={params_file}", "--tool=ray",
            "--output_file=ray.result", *(f"--{key}={value}" for key, value in fixed.items())]
    best_params, _, params2result = run_hyper.main(argv)
    check_trials(params2result, "learning_rate", [0.001, 0.01], best_params, "ray.result")
