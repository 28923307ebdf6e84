"""Individual learning, the no-federation reference of LUMOS Fig. 2."""
import pytest
import torch

from federated_fixtures import TINY_FED, build, split_fixture  # noqa: F401

from recbole_llm.federated.client_data import build_clients
from recbole_llm.federated.client_update import (LocalTrainingSpec, SequentialEngine, local_update,
                                                 trainable_parameters)
from recbole_llm.federated.individual import IndividualModels, train_own_models
from recbole_llm.federated.vectorized import VectorizedEngine
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

split = split_fixture("FedSeq")


def _setup(config, train):
    model = build(config, train, backbone="SASRec", local_epochs=2)
    clients = build_clients(train.dataset, model.max_seq_length, model.causal)
    return model, clients, LocalTrainingSpec.from_config(config)


@pytest.mark.parametrize("engine_cls", [SequentialEngine, VectorizedEngine])
def test_each_client_trains_only_its_own_model(split, engine_cls):
    """Two rounds: a client sampled twice continues from its own model; unsampled users keep θ_0."""
    config, dataset, train, valid, test = split
    model, clients, spec = _setup(config, train)
    theta0 = {k: v.clone() for k, v in trainable_parameters(model).items()}
    individual = IndividualModels(model, dataset.user_num)
    first, second = clients[:4], clients[2:5]  # clients 2 and 3 are in both rounds
    engine = engine_cls(model, spec)
    train_own_models(engine, individual, first)
    train_own_models(engine, individual, second)

    expected = {}
    for c in clients[:5]:  # the reference: local_update from the client's own previous model
        params = theta0
        for cohort in (first, second):
            if c in cohort:
                params, _ = local_update(model, params, c, spec)
        expected[c.user_id] = params
    for user, params in expected.items():
        own = individual.own_parameters(user)
        for name in params:
            assert torch.allclose(own[name], params[name], atol=2e-5, rtol=1e-4), (user, name)
    untouched = clients[5].user_id
    assert all(torch.equal(individual.own_parameters(untouched)[k], theta0[k]) for k in theta0)
    moved = individual.own_parameters(clients[2].user_id)
    assert not all(torch.equal(moved[k], theta0[k]) for k in theta0)


def test_individual_models_score_each_user_with_that_users_parameters(split):
    config, dataset, train, valid, test = split
    model, clients, spec = _setup(config, train)
    individual = IndividualModels(model, dataset.user_num)
    a, b = clients[0], clients[1]
    theta_a, _ = local_update(model, individual.own_parameters(a.user_id), a, spec)
    individual.table[a.user_id] = torch.cat([theta_a[k].reshape(-1) for k in individual.shapes])
    batch = next(iter(test))[0]
    users = batch[model.USER_ID].tolist()
    i, j = users.index(a.user_id) if a.user_id in users else None, users.index(b.user_id) if b.user_id in users else None
    assert i is not None and j is not None, "tiny split: the first test batch holds the first users"
    scores = individual.full_sort_predict(batch).view(len(users), -1)
    for row, params in ((i, theta_a), (j, individual.own_parameters(b.user_id))):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
        reference = model.full_sort_predict(batch[row:row + 1]).view(1, -1)
        assert torch.allclose(scores[row], reference[0], atol=1e-5)
    assert not torch.allclose(scores[i], scores[j])


def test_individual_learning_runs_end_to_end_reloads_and_refuses_flower(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dict(TINY_FED, rounds=2, client_fraction=0.05, individual_learning=True)
    result = run_recbole_llm(model="FedSeq", dataset="ml-100k", config_dict=config, saved=True)
    assert 0.0 <= result["test_result"]["hit@20"] <= 1.0
    _, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert isinstance(model, IndividualModels)
    trained = [u for u in range(1, model.table.shape[0]) if not torch.equal(model.table[u], model.table[0])]
    assert trained, "the reloaded table holds the clients' own models"
    batch = next(iter(test_data))[0]
    assert model.full_sort_predict(batch).shape == (len(batch), model.model.n_items)
    with pytest.raises(ValueError, match="individual_learning"):
        run_recbole_llm(model="FedSeq", dataset="ml-100k", config_dict=dict(config, fed_engine="flower"))
