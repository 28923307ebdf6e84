"""Client and server optimisers of the federated engines, the server's input checks, ConFedSRS redraws."""
import math

import numpy as np
import pytest
import torch

from federated_fixtures import build, split_fixture  # noqa: F401

from recbole_llm.federated.client_data import build_clients
from recbole_llm.federated.client_update import (DecoupledSGD, LocalTrainingSpec, SequentialEngine,
                                                 client_optimizer, trainable_parameters)
from recbole_llm.federated.server import FedAvgServer, ParameterUpdate
from recbole_llm.federated.server_optimizers import ServerOptimizer, ServerOptimizerSpec
from recbole_llm.federated.vectorized import VectorizedEngine
from recbole_llm.model.lumos.views import prepare_views
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator
from recbole_llm.validation import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

split = split_fixture("FedSeq")

CLIENT_OPTIMIZERS = {
    "sgd": dict(local_optimizer="sgd", local_learning_rate=0.5, local_momentum=0.9, local_weight_decay=0.01),
    "adam": dict(local_optimizer="adam", local_learning_rate=1e-3, local_momentum=0.0, local_weight_decay=1e-5),
    "adamw": dict(local_optimizer="adamw", local_learning_rate=1e-3, local_momentum=0.0, local_weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(CLIENT_OPTIMIZERS))
def test_each_client_optimizer_gives_the_same_round_on_both_engines(split, name):
    config, dataset, train, valid, test = split
    clients = build_clients(train.dataset, 10)
    cohort = [clients[i] for i in (0, 3, 50, 200, 400)]
    results = []
    for engine_cls in (SequentialEngine, VectorizedEngine):
        model = build(config, train, backbone="SASRec", view_generator="none", cl_weight=0.0, local_epochs=3,
                      **CLIENT_OPTIMIZERS[name])
        spec = LocalTrainingSpec.from_config(config)
        assert spec.optimizer == name
        server = FedAvgServer(trainable_parameters(model))
        start = server.broadcast()
        updates, _ = engine_cls(model, spec).run_round(server.broadcast(), cohort)
        results.append(server.aggregate(updates))
    for key, value in CLIENT_OPTIMIZERS["sgd"].items():  # the module's config back to a known state
        config[key] = value
    moved = max(float((results[0][k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-4
    for k in start:
        assert torch.allclose(results[0][k], results[1][k], atol=2e-5, rtol=1e-4), (name, k)


def test_decoupled_sgd_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = DecoupledSGD([p], lr=0.1, momentum=0.5, weight_decay=0.2)
    g1, g2 = torch.tensor([1.0, 1.0, -1.0]), torch.tensor([0.5, 0.0, 2.0])
    theta = p.detach().clone()
    p.grad = g1.clone()
    opt.step()
    theta = theta * (1 - 0.1 * 0.2) - 0.1 * g1          # buffer = g1
    torch.testing.assert_close(p.detach(), theta)
    p.grad = g2.clone()
    opt.step()
    theta = theta * (1 - 0.1 * 0.2) - 0.1 * (0.5 * g1 + g2)  # buffer = 0.5 g1 + g2
    torch.testing.assert_close(p.detach(), theta)


def test_client_sgd_moves_a_row_in_proportion_to_its_gradient_adam_does_not():
    """The measured cause of federated Adam's popularity collapse, in one step."""
    grad = torch.tensor([[1e-2] * 4, [1e-6] * 4])  # a seen item's row, an unseen item's row
    moves = {}
    for name in ("sgd", "adam"):
        p = torch.nn.Parameter(torch.zeros(2, 4))
        opt = client_optimizer(LocalTrainingSpec(optimizer=name, learning_rate=1e-3), [p])
        p.grad = grad.clone()
        opt.step()
        moves[name] = p.detach().abs().mean(1)
    assert moves["sgd"][0] / moves["sgd"][1] == pytest.approx(1e4, rel=1e-3)
    assert moves["adam"][0] / moves["adam"][1] < 1.01  # ≈ lr·sign(g): the same move


def _rounds(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    current = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}
    return current, [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in current.items()} for _ in range(n)]


SERVER_SPECS = [ServerOptimizerSpec("fedavg", 0.5), ServerOptimizerSpec("fedavgm", 0.7, momentum=0.9),
                ServerOptimizerSpec("fedadam", 0.05, momentum=0.9, beta2=0.99, tau=1e-3),
                ServerOptimizerSpec("fedyogi", 0.05, momentum=0.8, beta2=0.95, tau=1e-2)]


@pytest.mark.parametrize("spec", SERVER_SPECS, ids=lambda s: s.name)
def test_server_optimizers_equal_flowers_strategies(spec, monkeypatch):
    """Our one in-process implementation against Flower 1.42's own aggregate_train, three rounds.

    Flower's replies are Messages, which need a running Flower app; its weighted mean of
    replies is replaced by the mean we hand it, so what is compared is the server step.
    """
    pytest.importorskip("flwr", reason="flwr: pip install 'recbole_llm[federated]'")
    from flwr.app import Array, ArrayRecord, MetricRecord
    from flwr.serverapp.strategy.fedavg import FedAvg

    from recbole_llm.federated.flower.strategies import flower_server_step, flower_strategy

    current, means = _rounds()
    ours, theirs = ServerOptimizer(spec), flower_strategy(spec)
    flower_current = {k: v.numpy().copy() for k, v in current.items()}
    for rnd, mean in enumerate(means, start=1):
        monkeypatch.setattr(FedAvg, "aggregate_train", lambda self, r, replies, m=mean: (
            ArrayRecord({k: Array(v.numpy().copy()) for k, v in m.items()}), MetricRecord({})))
        current = ours.step(current, mean)
        flower_current = flower_server_step(theirs, flower_current, [], rnd)
        for k in current:
            np.testing.assert_allclose(current[k].numpy(), flower_current[k], rtol=1e-5, atol=1e-6)
    start, _ = _rounds()
    assert not torch.allclose(current["w"], means[-1]["w"])  # a real step, not the plain average
    assert not torch.allclose(current["w"], start["w"])


def test_plain_fedavg_is_the_weighted_mean():
    current, (a, b) = _rounds(n=2)
    server = FedAvgServer(current)
    new = server.aggregate([ParameterUpdate(a, 1.0), ParameterUpdate(b, 3.0)])
    torch.testing.assert_close(new["w"], 0.25 * a["w"] + 0.75 * b["w"])


def _bad(current, **change):
    tensors = {k: v.clone() for k, v in current.items()}
    tensors.update(change.pop("tensors", {}))
    return ParameterUpdate(tensors, change.get("weight", 1.0), source="user 17")


@pytest.mark.parametrize("update,error,message", [
    (dict(weight=math.inf), ValueError, r"update 1 \(from user 17\): weight must be a finite positive number, got inf"),
    (dict(weight=math.nan), ValueError, "weight must be a finite positive number, got nan"),
    (dict(weight=-1.0), ValueError, "weight must be a finite positive number"),
    (dict(weight="3"), TypeError, r"update 1 \(from user 17\): weight must be a number, got str '3'"),
    (dict(weight=True), TypeError, "weight must be a number, got bool"),
    (dict(tensors={"w": torch.full((3, 4), math.nan)}), ValueError, "'w' holds non-finite values"),
    (dict(tensors={"b": torch.tensor([1.0, math.inf, 0, 0, 0])}), ValueError, "'b' holds non-finite values"),
    (dict(tensors={"b": torch.zeros(5, dtype=torch.long)}), TypeError, "'b' is not a float tensor"),
])
def test_server_refuses_bad_updates_naming_the_client(update, error, message):
    current, (good,) = _rounds(n=1)
    server = FedAvgServer(current)
    with pytest.raises(error, match=message):
        server.aggregate([ParameterUpdate(good, 1.0), _bad(current, **update)])
    torch.testing.assert_close(server.global_params["w"], current["w"])  # nothing was applied


def test_confedsrs_redraws_views_every_round_independently_of_the_cohort(split):
    config, dataset, train, valid, test = split
    clients = build_clients(train.dataset, 10)
    gen = AugmentViewGenerator(dataset.item_num, 10, seed=1)
    a, b, c = clients[5], clients[6], clients[7]
    prepare_views([a, b], gen, 10, round_index=0)
    first = a.views.clone()
    prepare_views([a], gen, 10, round_index=0)
    assert torch.equal(a.views, first)  # same (user, round): same draw, whoever else trains
    prepare_views([a, c], gen, 10, round_index=1)
    assert not torch.equal(a.views, first)  # a new round: new augmentations (CL4SRec)
    assert torch.equal(a.views[0], first[0])  # the anchor S_u stays the user's sequence


@pytest.mark.parametrize("key,value", [("local_optimizer", "rmsprop"), ("local_learning_rate", 0),
                                       ("local_momentum", 1.0), ("server_optimizer", "fedprox"),
                                       ("server_tau", 0)])
def test_bad_optimizer_settings_are_refused(split, key, value):
    config, dataset, train, valid, test = split
    with pytest.raises(ConfigError, match=key):
        build(config, train, **{key: value})
    config[key] = {"local_optimizer": "sgd", "local_learning_rate": 1.0, "local_momentum": 0.0,
                   "server_optimizer": "fedavg", "server_tau": 1e-3}[key]
