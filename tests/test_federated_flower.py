"""Flower deployment engine: 2 rounds on 127.0.0.1 (1 SuperLink, 2 SuperNodes) == in-process engine.

The run uses Flower's own FedAdam strategy on the server, client SGD with momentum and
ConFedSRS's per-round redrawn views, so that all three agree across the engines.
"""
import os

import pytest
import torch

pytest.importorskip("flwr", reason="optional extra: pip install 'recbole_llm[federated]'")

from federated_fixtures import TINY_FED  # noqa: E402
from recbole_llm.federated.flower import local  # noqa: E402
from recbole_llm.quick_start import run_recbole_llm  # noqa: E402


def _processes_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_flower_two_rounds_equal_in_process_engine(tmp_path, monkeypatch):
    started = {}
    original = local.run_local_federation

    def spy(job, **kwargs):
        result = original(job, workdir=str(tmp_path / "flower"), **kwargs)
        started.update(result)
        return result

    monkeypatch.setattr(local, "run_local_federation", spy)
    config = dict(TINY_FED, rounds=2, eval_step=2, client_fraction=0.01, view_generator="augment",
                  cl_weight=0.1, flower_timeout=240, checkpoint_dir=str(tmp_path / "saved"),
                  server_optimizer="fedadam", server_learning_rate=0.01, local_momentum=0.5)
    flower = run_recbole_llm(model="ConFedSRS", dataset="ml-100k", config_dict=dict(config, fed_engine="flower"))
    inproc = run_recbole_llm(model="ConFedSRS", dataset="ml-100k",
                             config_dict=dict(config, fed_engine="sequential"))
    assert [r["clients"] for r in started["rounds"]] == [9, 9]
    a = torch.load(flower["saved_model_file"])["state_dict"]
    b = torch.load(inproc["saved_model_file"])["state_dict"]
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    assert flower["test_result"] == pytest.approx(inproc["test_result"], abs=1e-3)
    # every process started for the federation is gone, with its children
    for pid in started["started"]:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert _processes_with(str(tmp_path / "flower" / "flwr_home")) == []
