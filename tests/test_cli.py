"""The command line in a subprocess: a RecBole model with overrides, and a bad --model."""
import os
import subprocess
import sys

import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "run_recbole_llm.py")


def test_cli_runs_recbole_model_with_yaml_and_overrides(tmp_path):
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1,
                                    "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 1024,
                                    "show_progress": False, "epochs": 3}))
    out = subprocess.run(
        [sys.executable, CLI, "--model=SASRec", "--dataset=ml-100k", f"--config_files={conf}",
         "--epochs=1", "--topk=[20]", "--metrics=['Hit','NDCG']", "--valid_metric=NDCG@20",
         "--state=WARNING"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test result: {'hit@20':" in out.stdout
    ckpt = torch.load(next((tmp_path / "saved").glob("SASRec-*.pth")))
    assert ckpt["config"]["external_config_dict"]["epochs"] == 1  # --epochs beat the yaml
    assert ckpt["config"]["external_config_dict"]["hidden_size"] == 16  # from the yaml
    assert ckpt["epoch"] == 0


def test_cli_bad_model(tmp_path):
    out = subprocess.run([sys.executable, CLI, "--model=NoSuchModel", "--dataset=ml-100k"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2
    assert "Unknown model 'NoSuchModel'" in out.stderr and "SASRec" in out.stderr
