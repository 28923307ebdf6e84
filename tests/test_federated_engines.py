"""Vectorized engine's work-removing paths: trimmed chunks and rand-mask dropout."""
import pytest
import torch
from torch.func import vmap

from federated_fixtures import build, split_fixture  # noqa: F401

from recbole_llm.federated.client_data import make_client
from recbole_llm.federated.client_update import (LocalTrainingSpec, SequentialEngine,
                                                 trainable_parameters)
from recbole_llm.federated.server import FedAvgServer
from recbole_llm.federated.vectorized import (VectorizedEngine, rand_mask_dropout_layers,
                                              stack_client_batches)
from recbole_llm.model.lumos.views import prepare_views
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

split = split_fixture("FedSeq")


def _round(config, train, engine_cls, clients):
    model = build(config, train, backbone="SASRec", view_generator="augment", cl_weight=0.1, local_epochs=2)
    server = FedAvgServer(trainable_parameters(model))
    updates, loss = engine_cls(model, LocalTrainingSpec.from_config(config)).run_round(server.broadcast(), clients)
    return server.aggregate(updates), loss, model


def test_trimmed_chunks_of_short_clients_equal_the_sequential_engine(split):
    """Clients shorter than MAX_ITEM_LIST_LENGTH: the cut right padding changes nothing."""
    config, dataset, train, valid, test = split
    g = torch.Generator().manual_seed(3)
    clients = [make_client(u, torch.randint(1, dataset.item_num, (k,), generator=g).tolist(), 10)
               for u, k in zip(range(1, 7), (3, 4, 5, 5, 6, 7))]  # one row each, 2..6 targets
    prepare_views(clients, AugmentViewGenerator(dataset.item_num, 10, seed=1), 10)
    batch = stack_client_batches(clients, True, 10, trim=True)
    assert batch[0].shape[-1] == 6 and batch[3].shape[-1] < 10  # both cut below max_len 10
    seq, seq_loss, model = _round(config, train, SequentialEngine, clients)
    assert model.causal
    vec, vec_loss, _ = _round(config, train, VectorizedEngine, clients)
    for name in seq:
        assert torch.allclose(seq[name], vec[name], atol=2e-5, rtol=1e-4), name
    assert vec_loss == pytest.approx(seq_loss, rel=1e-4)


def test_rand_mask_dropout_keeps_dropout_semantics_and_restores_the_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Dropout(0.25), torch.nn.Dropout(0.0))
    x = torch.ones(4, 20000)
    with rand_mask_dropout_layers(model):
        model.train()
        y = vmap(model, randomness="different")(x)
        kept = y != 0
        assert torch.allclose(y[kept], torch.tensor(1 / 0.75))  # kept entries scaled by 1 / (1 - p)
        assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
        assert not torch.equal(kept[0], kept[1])  # every vmapped client draws its own mask
        model.eval()
        assert torch.equal(model(x), x)
    assert "forward" not in vars(model[0])  # nn.Dropout.forward is back
