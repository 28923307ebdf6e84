"""RecBole's distributed training (``--nproc``, ``run_recboles``) on CPUs: the gloo backend
(``dist_backend``, :func:`recbole_llm.compat.init_distributed_device`), the command line's
distributed flags, and 2-process gloo runs of SASRec and MLTFR(SASRec) against one process.

How close a 2-process run can be to one process: each rank trains on its shard of every
batch and DDP averages the gradients, so with the whole training set in one batch
(``train_batch_size`` above its ~1.4k rows) and nothing random in the training forward pass
(no dropout, CE loss: no sampled negatives; for MLTFR ``token_filter: all``, the pool
without Gumbel noise), both runs take the same Adam steps from the same start (rank 0 is
seeded as the single process is, and DDP copies rank 0's weights to the others), except
that

* ``DistributedSampler`` pads the data to a multiple of the ranks by repeating rows: one
  training row (1 in ~1.4k), and with 79 users one evaluated user, which moves a metric by
  at most 1/80;
* an Adam step moves every entry by about ``learning_rate``, whatever the gradient's size,
  so an entry whose gradient is ~0 may step the other way: such entries differ by up to
  2 x lr per step, and may move one more user across the top-20.

So the tests ask for metrics within 2/79 (two users) and for at most 10% of the weights to
differ by more than 1e-4 (a tenth of a step).  Measured, seeds 2020-2022: metrics within
0.0134 (one user); 0.5-0.9% of SASRec's entries, 0.15-2.5% of MLTFR's (most in the
expert's attention W_k / W_v, whose gradients are small, and their copy in the consensus
expert); a run whose ranks do not average their gradients (RecBole's reduce hook disabled)
differs in 51% of SASRec's.
"""
import ast
import importlib.util
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from recbole.config import Config as RecBoleConfig

from conftest import TINY_SEQ
from recbole_llm.compat import ddp_on_module_device, dist_backend, load_checkpoint, preserved_anomaly_mode
from recbole_llm.config import Config
from recbole_llm.model.mltfr.consensus import fisher_importance
from recbole_llm.quick_start import run_recbole_llm
from recbole_llm.validation import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("run_recbole_llm", os.path.join(ROOT, "run_recbole_llm.py"))
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

USERS = 79                       # ml-100k users with 20 to 22 interactions
METRIC_TOLERANCE = 2 / USERS     # the padded duplicate user, and one user across the top-20 boundary
FAR, FAR_SHARE = 1e-4, 0.10      # at most 10% of the weights more than a tenth of an Adam step apart

DETERMINISTIC = dict(TINY_SEQ, user_inter_num_interval="[20,23)", train_batch_size=4096, epochs=2,
                     loss_type="CE", hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
MLTFR_DETERMINISTIC = dict(DETERMINISTIC, epochs=1, backbone="SASRec", llm_experts=["minilm"], token_pool=64,
                           num_tokens=4, expert_heads=1, fisher_batches=1, mltfr_loss="backbone",
                           token_filter="all", expert_dropout=0.0, dropout_prob=0.0)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


@pytest.fixture
def spawned_threads(monkeypatch):
    """Spawned ranks run one torch thread each (2 ranks on 2 cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _rank_group(config_dict):
    return dict(config_dict, local_rank=0, nproc=1, world_size=1, offset=0, ip="localhost", port=free_port())


# ---- the compat fix ------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the break on a machine without CUDA")
@pytest.mark.filterwarnings("ignore:Attempted to get default timeout for nccl")
def test_recbole_distributed_config_is_nccl_only(tiny_seq_config):
    with preserved_anomaly_mode(), pytest.raises(Exception, match="(?i)nccl"):  # backend="nccl"
        RecBoleConfig("SASRec", "ml-100k", config_dict=_rank_group(dict(tiny_seq_config, train_neg_sample_args=None)))
    assert not dist.is_initialized()


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks gloo only without CUDA")
def test_our_config_picks_gloo_on_cpu_and_ddp_accepts_the_cpu_model(tiny_seq_config):
    config = Config("SASRec", "ml-100k", config_dict=_rank_group(tiny_seq_config))
    try:
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert config["device"] == torch.device("cpu") and config["single_spec"] is False
        module = torch.nn.Linear(2, 2)
        with pytest.raises(ValueError, match="device_ids"):  # how RecBole's Trainer wraps the model
            torch.nn.parallel.DistributedDataParallel(module, device_ids=[config["local_rank"]])
        ddp_on_module_device(module, device_ids=[config["local_rank"]])
        module.register_buffer("trie", torch.eye(3).to_sparse(), persistent=False)  # as POD's ItemTrie
        with pytest.raises(RuntimeError, match="sparse"):    # DDP's broadcast, any backend
            torch.nn.parallel.DistributedDataParallel(module)
        ddp_on_module_device(module, device_ids=[config["local_rank"]])
    finally:
        dist.destroy_process_group()


def test_dist_backend_values(monkeypatch):
    assert dist_backend({"dist_backend": "gloo", "gpu_id": "0"}) == "gloo"
    assert dist_backend({"dist_backend": "nccl", "gpu_id": "0"}) == "nccl"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dist_backend({"dist_backend": "auto", "gpu_id": "0"}) == "nccl"
    assert dist_backend({"dist_backend": "auto", "gpu_id": ""}) == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dist_backend({"dist_backend": "auto", "gpu_id": "0"}) == "gloo"
    with pytest.raises(ConfigError, match="dist_backend must be one of auto, nccl, gloo"):
        dist_backend({"dist_backend": "mpi"})


# ---- the command line ----------------------------------------------------------------------

def test_cli_passes_the_distributed_flags(monkeypatch):
    seen = {}
    monkeypatch.setattr("recbole_llm.quick_start.run_recbole_llm",
                        lambda **kwargs: seen.update(kwargs) or {"best_valid_result": {}, "test_result": {}})
    assert cli.main(["--model=SASRec", "--nproc=2", "--world_size=4", "--ip=10.0.0.1", "--port=29500",
                     "--group_offset=2"]) == 0
    assert {k: seen[k] for k in ("nproc", "world_size", "ip", "port", "group_offset")} == dict(
        nproc=2, world_size=4, ip="10.0.0.1", port="29500", group_offset=2)
    assert cli.main(["--model=SASRec"]) == 0
    assert (seen["nproc"], seen["world_size"]) == (1, -1)  # RecBole's defaults: one process


def test_cli_bad_backend_is_one_line_before_any_process_starts(monkeypatch, capsys):
    monkeypatch.setattr("torch.multiprocessing.spawn", lambda *a, **k: pytest.fail("spawned"))
    assert cli.main(["--model=SASRec", "--nproc=2", "--dist_backend=mpi", "--state=ERROR"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: dist_backend must be one of auto, nccl, gloo, got 'mpi'"


@pytest.mark.parametrize("model,way", [("LUMOS", "fed_engine: flower"), ("L3Rec", "parallel: ray")])
def test_methods_that_scale_out_otherwise_refuse_nproc(model, way, monkeypatch, capsys):
    monkeypatch.setattr("torch.multiprocessing.spawn", lambda *a, **k: pytest.fail("spawned"))
    assert cli.main([f"--model={model}", "--nproc=2", "--state=ERROR"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: nproc must be 1 for {model}, got 2") and way in err


# ---- 2 gloo processes against one process ------------------------------------------------

def _far_share(a, b):
    keys = [k for k in a if a[k].is_floating_point() and k != "fisher_weights"]  # MLTFR's estimate: see below
    far = sum(int(((a[k] - b[k]).abs() > FAR).sum()) for k in keys)
    return far / sum(a[k].numel() for k in keys)


def _assert_close(single, ddp):
    for part in ("best_valid_result", "test_result"):
        assert dict(ddp[part]) == pytest.approx(dict(single[part]), abs=METRIC_TOLERANCE), part
    assert 0 < single["test_result"]["hit@20"]


def test_two_gloo_processes_train_sasrec_like_one_process(tmp_path, spawned_threads, capsys):
    single = run_recbole_llm("SASRec", "ml-100k", config_dict=dict(DETERMINISTIC, checkpoint_dir="single"))
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(dict(DETERMINISTIC, checkpoint_dir="ddp")))
    capsys.readouterr()
    assert cli.main(["--model=SASRec", f"--config_files={conf}", "--nproc=2", f"--port={free_port()}"]) == 0
    out = capsys.readouterr().out
    ddp = {part: ast.literal_eval(out.split(f"{label}: ", 1)[1].splitlines()[0])
           for part, label in (("best_valid_result", "best valid"), ("test_result", "test result"))}
    _assert_close(single, ddp)
    (ddp_file,) = (tmp_path / "ddp").glob("SASRec-*.pth")
    share = _far_share(load_checkpoint(single["saved_model_file"])["state_dict"],
                       load_checkpoint(ddp_file)["state_dict"])
    assert share <= FAR_SHARE


def test_two_gloo_processes_train_mltfr_like_one_process(tmp_path, spawned_threads):
    cfg = dict(MLTFR_DETERMINISTIC, llm_cache_dir=str(tmp_path / "llm"))
    single = run_recbole_llm("MLTFR", "ml-100k", config_dict=dict(cfg, checkpoint_dir="single"))
    ddp = run_recbole_llm("MLTFR", "ml-100k", config_dict=dict(cfg, checkpoint_dir="ddp"),
                          nproc=2, port=free_port())
    _assert_close(single, ddp)
    final = load_checkpoint(ddp["saved_model_file"])["state_dict"]
    round1 = load_checkpoint(ddp["saved_model_file"].replace(".pth", "-round1.pth"))["state_dict"]
    assert bool(final["sc_active"])                                   # both rounds ran
    assert all(torch.equal(final[k], round1[k]) for k in final if k.startswith("sc_expert."))
    # fisher_weights: one expert, so the estimate (here from each rank's half batch) weighs nothing
    assert _far_share(load_checkpoint(single["saved_model_file"])["state_dict"], final) <= FAR_SHARE


# ---- MLTFR's Fisher estimate is one estimate over the ranks' shards -----------------------

class _TwoExperts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(3, 5) for _ in range(2))

    def item_log_probs(self, x):
        return torch.log_softmax(self.experts[0](x) + 2 * self.experts[1](x), dim=-1)


def _batches(rank):
    return [torch.randn(4, 3, generator=torch.Generator().manual_seed(10 * rank + b)) for b in range(2)]


def _fisher_rank(rank, port, queue):
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://localhost:{port}")
    try:
        model = _TwoExperts()
        torch.manual_seed(100 + rank)
        queue.put((rank, fisher_importance(model, _batches(rank), list(model.experts)).tolist()))
    finally:
        dist.destroy_process_group()


def test_fisher_estimate_is_averaged_over_the_ranks(spawned_threads):
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_fisher_rank, args=(free_port(), queue), nprocs=2, join=True)
    got = dict(queue.get() for _ in range(2))          # plain lists: a tensor's memory dies with its rank
    assert got[0] == got[1]                            # every rank builds the same consensus expert
    model = _TwoExperts()
    expected = []
    for rank in range(2):                              # each rank's own estimate, in one process
        torch.manual_seed(100 + rank)
        expected.append(fisher_importance(model, _batches(rank), list(model.experts)))
    assert got[0] == pytest.approx(((expected[0] + expected[1]) / 2).tolist(), rel=1e-5)
