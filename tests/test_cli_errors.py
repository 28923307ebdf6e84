"""Bad input through the command line: one line ``error: ...``, exit status 2, no traceback.

Every case runs ``run_recbole_llm.main(argv)`` in this process.  The config-only cases
must fail before the dataset is loaded (``prepare`` fails the test if it is called);
the few that need the data use a 20-user toy dataset written once for the module.
"""
import importlib.util
import os
import sys

import pytest
import torch
import yaml

import recbole_llm.quick_start as quick_start
from recbole_llm.errors import is_user_error, user_error_message
from recbole_llm.validation import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("run_recbole_llm", os.path.join(ROOT, "run_recbole_llm.py"))
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

TOY_USERS = 20


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The files the command lines name: a toy dataset, a tiny config, broken yaml files."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "toy").mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{(u * 7 + t) % 30 + 1}\t{t}" for u in range(1, TOY_USERS + 1) for t in range(8)]
    (root / "toy" / "toy.inter").write_text("\n".join(lines) + "\n")
    tiny = {"data_path": str(root), "load_col": None, "checkpoint_dir": str(root / "saved"),
            "state": "ERROR", "show_progress": False, "epochs": 1, "hidden_size": 8, "embedding_size": 8,
            "inner_size": 16, "n_layers": 1, "n_heads": 1, "MAX_ITEM_LIST_LENGTH": 5,
            "train_batch_size": 64, "eval_batch_size": 64, "view_generator": "none"}
    (root / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    (root / "broken.yaml").write_text("epochs: 1\nlearning_rate: [0.1, 0.2\n")
    (root / "list.yaml").write_text("- epochs\n- 1\n")
    (root / "debug.yaml").write_text("state: DEBUG\n")
    return root


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if the dataset is loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded for an error that needs only the config")
    monkeypatch.setattr(quick_start, "prepare", refuse)
    monkeypatch.setattr(quick_start, "create_dataset", refuse)


def run_cli(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_recbole_llm.py"] + argv)  # RecBole reads sys.argv
    before = sys.argv
    try:
        return cli.main(argv)
    finally:
        assert sys.argv is before  # main restores the command line it set for RecBole


# (id, command line, substrings of the error line: the key, the value, what is allowed)
CONFIG_ONLY = [
    ("rounds-type", ["--model=LUMOS", "--rounds=abc"], ["rounds", "'abc'", "integer >= 1"]),
    ("client-fraction-type", ["--model=LUMOS", "--client_fraction=two"], ["client_fraction", "'two'", "(0, 1]"]),
    ("client-fraction-zero", ["--model=LUMOS", "--client_fraction=0"], ["client_fraction", "got 0", "(0, 1]"]),
    ("cl-temperature", ["--model=LUMOS", "--cl_temperature=-1"], ["cl_temperature", "-1", "(0, 100]"]),
    ("local-optimizer", ["--model=FedSeq", "--local_optimizer=rmsprop"], ["local_optimizer", "rmsprop", "sgd"]),
    ("server-optimizer", ["--model=FedSeq", "--server_optimizer=fedprox"], ["server_optimizer", "fedprox", "fedavg"]),
    ("flower-individual", ["--model=FedSeq", "--fed_engine=flower", "--individual_learning=True"],
     ["individual_learning", "True", "flower"]),
    ("fed-engine", ["--model=ConFedSRS", "--fed_engine=spark"], ["fed_engine", "spark", "vectorized"]),
    ("lumos-views", ["--model=LUMOS", "--lumos_views=['counterfactual']"], ["lumos_views", "counterfactual"]),
    ("lumos-backbone", ["--model=LUMOS", "--backbone=BPR"], ["backbone", "'BPR'", "sequential"]),
    ("lumos-llm-path", ["--model=LUMOS", "--view_generator=llm", "--llm_path=/no/such/llm"],
     ["llm_path", "/no/such/llm", "save_pretrained directory"]),
    ("mltfr-unknown-backbone", ["--model=MLTFR", "--backbone=NoSuchRec"], ["backbone", "'NoSuchRec'", "SASRec"]),
    ("mltfr-refused-backbone", ["--model=MLTFR", "--backbone=SRGNN"], ["backbone", "'SRGNN'", "session graph"]),
    ("gumbel-tau", ["--model=MLTFR", "--gumbel_tau=2"], ["gumbel_tau", "2", "[0.3, 1.0]"]),
    ("num-tokens-vs-pool", ["--model=MLTFR", "--num_tokens=64", "--token_pool=32"],
     ["num_tokens", "64", "token_pool (32)"]),
    ("mltfr-llm-path", ["--model=MLTFR", "--llm_experts=['minilm','/no/such/llm']"],
     ["llm_experts", "/no/such/llm", "named LLM"]),
    ("expert-mode", ["--model=MLTFR", "--expert_mode=fancy"], ["expert_mode", "fancy", "filter"]),
    ("l3rec-q-zero", ["--model=L3Rec", "--num_local_models=0"], ["num_local_models", "got 0", ">= 1"]),
    ("l3rec-fusion", ["--model=L3Rec", "--fusion=median"], ["fusion", "median", "rrf"]),
    ("l3rec-local-model", ["--model=L3Rec", "--local_model=SASrec"], ["local_model", "'SASrec'", "'SASRec'"]),
    ("l3rec-list-length", ["--model=L3Rec", "--fusion_list_length=5", "--topk=[10]"],
     ["fusion_list_length", "5", "topk (10)"]),
    ("pod-inference", ["--model=POD", "--pod_inference=greedy"], ["pod_inference", "greedy", "beam"]),
    ("pod-beam", ["--model=POD", "--beam_size=3", "--topk=[5,10]"], ["beam_size=3", "topk=[5, 10]"]),
    ("cl4srec-weight", ["--model=CL4SRec", "--cl_weight=-1"], ["cl_weight", "-1", "[0, 100]"]),
    ("recbole-epochs", ["--model=SASRec", "--epochs=abc"], ["epochs", "'abc'", "integer"]),
    ("recbole-lr", ["--model=SASRec", "--learning_rate=0"], ["learning_rate", "got 0", "> 0"]),
    ("recbole-topk", ["--model=SASRec", "--topk=[0]"], ["topk", "0", "positive integer"]),
    ("unknown-model", ["--model=NoSuchModel"], ["model", "'NoSuchModel'", "SASRec"]),
    ("unknown-dataset", ["--model=SASRec", "--dataset=no-such-data", "--data_path={root}"],
     ["dataset", "'no-such-data'", "{root}"]),
    ("known-but-absent-dataset", ["--model=SASRec", "--dataset=ml-1m", "--data_path={root}"],
     ["dataset", "'ml-1m'", "downloads no dataset"]),
    ("missing-config-file", ["--model=SASRec", "--config_files=missing.yaml"], ["config_files", "missing.yaml"]),
    ("malformed-yaml", ["--model=SASRec", "--config_files={root}/broken.yaml"],
     ["config_files", "broken.yaml", "valid yaml", "line"]),
    ("yaml-not-a-mapping", ["--model=SASRec", "--config_files={root}/list.yaml"],
     ["config_files", "list.yaml", "key: value"]),
    ("duplicate-override", ["--model=SASRec", "--epochs=1", "--epochs=2"], ["--epochs", "'1'", "'2'"]),
    ("missing-value", ["--model"], ["--model"]),
]

# Checks that need the data: the toy dataset has 20 users.
NEEDS_DATA = [
    ("l3rec-q-vs-users", ["--model=L3Rec", "--num_local_models=50"], ["num_local_models", "50", "number of users"]),
    ("client-fraction-vs-users", ["--model=FedSeq", "--client_fraction=0.01"], ["client_fraction=0.01", "no client"]),
    ("num-tokens-vs-vocabulary", ["--model=MLTFR", "--llm_experts=['minilm']", "--token_pool=0",
                                  "--num_tokens=100000"], ["num_tokens", "100000", "pooled tokens"]),
]


def _fill(items, root):
    return [item.replace("{root}", str(root)) for item in items]


def _assert_one_error_line(capsys, expected):
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in expected:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.mark.parametrize("argv, expected", [case[1:] for case in CONFIG_ONLY], ids=[c[0] for c in CONFIG_ONLY])
def test_config_error_is_one_line_before_the_data(argv, expected, files, no_data, monkeypatch, capsys):
    assert run_cli(_fill(argv, files), monkeypatch) == 2
    _assert_one_error_line(capsys, _fill(expected, files))


@pytest.mark.parametrize("argv, expected", [case[1:] for case in NEEDS_DATA], ids=[c[0] for c in NEEDS_DATA])
def test_error_found_with_the_data_is_one_line(argv, expected, files, monkeypatch, capsys):
    argv = argv + ["--dataset=toy", f"--config_files={files}/tiny.yaml"]
    assert run_cli(argv, monkeypatch) == 2
    _assert_one_error_line(capsys, expected)


def test_there_are_enough_cases():
    assert len(CONFIG_ONLY) + len(NEEDS_DATA) >= 20


@pytest.mark.parametrize("extra", [["--debug"], ["--state=DEBUG"], ["--config_files={root}/debug.yaml"]],
                         ids=["--debug", "--state=DEBUG", "state-in-yaml"])
def test_debug_shows_the_exception(extra, files, no_data, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="rounds must be an integer"):
        run_cli(["--model=LUMOS", "--rounds=abc"] + _fill(extra, files), monkeypatch)
    assert "error:" not in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(no_data, monkeypatch):
    def bug(config):
        raise KeyError("not a user error")
    monkeypatch.setattr(quick_start, "check_config_before_data", bug)
    with pytest.raises(KeyError):
        run_cli(["--model=SASRec"], monkeypatch)


def test_what_is_a_user_error():
    try:  # a ValueError inside torch is a bug, not a refusal of the input
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    except ValueError as err:
        assert not is_user_error(err)
    from recbole_llm.registry import get_model
    try:  # raised on purpose in recbole_llm: a user error, its model lists shortened
        get_model("NoSuchModel")
    except ValueError as err:
        assert is_user_error(err)
        line = user_error_message(err)
        assert "\n" not in line and "in all)" in line and len(line) < len(str(err)) / 2
