"""Federated engine: client data, causal pass, FedAvg server, privacy boundary, engines."""
import pytest
import torch

from federated_fixtures import build, split_fixture  # noqa: F401

from recbole_llm.federated.client_data import (build_clients, causal_windows, make_client,
                                               training_sequences)
from recbole_llm.federated.client_update import (LocalTrainingSpec, SequentialEngine,
                                                 trainable_parameters)
from recbole_llm.federated.sampling import check_client_fraction, sample_clients
from recbole_llm.federated.server import FedAvgServer, ParameterUpdate
from recbole_llm.federated.vectorized import VectorizedEngine
from recbole_llm.model.lumos.views import prepare_views
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


split = split_fixture("FedSeq")


def test_training_sequences_follow_recbole_leave_one_out(split):
    config, dataset, train, valid, test = split
    seqs = training_sequences(train.dataset)
    assert len(seqs) == dataset.user_num - 1
    # the valid sample's history is the training sequence (its last max_len items)
    feat = valid.dataset.inter_feat
    for row in range(0, len(feat), 97):
        uid = int(feat["user_id"][row])
        n = int(feat["item_length"][row])
        assert feat["item_id_list"][row][:n].tolist() == seqs[uid][-10:]
    # and training targets + valid target + test target are all the user's targets, in time order
    raw = dataset.inter_feat  # RecBole's prefix samples of the whole dataset
    uid = int(feat["user_id"][0])
    targets = raw["item_id"][raw["user_id"] == uid].tolist()
    assert targets == seqs[uid][1:] + [int(feat["item_id"][0]), int(test.dataset.inter_feat["item_id"][0])]


def test_windows_predict_every_target_once():
    seq = list(range(1, 24))  # 22 targets, max_len 10 -> windows of 2, 10, 10
    x, y, lengths = causal_windows(seq, 10)
    assert lengths.tolist() == [2, 10, 10]
    assert sorted(y[y > 0].tolist()) == seq[1:]
    for row in range(3):  # every target follows its input item
        n = int(lengths[row])
        assert (y[row, :n - 1] == x[row, 1:n]).all()
    assert y[-1, 9] == 23 and x[-1, 0] == 13  # most recent targets get the full context


@pytest.mark.parametrize("backbone", ["SASRec", "GRU4Rec"])
def test_causal_pass_equals_sum_of_prefix_sample_losses(split, backbone):
    config, dataset, train, valid, test = split
    model = build(config, train, backbone=backbone, causal_pass="auto")
    model.causal = True
    model.eval()
    seq = [5, 17, 3, 99, 42, 7, 8]  # within max_len
    causal = make_client(0, seq, 10, causal=True)
    prefix = make_client(0, seq, 10, causal=False)
    table = model.backbone.item_embedding.weight
    one_pass = model.all_positions(causal.inputs, causal.lengths) @ table.t()
    pass_losses = torch.nn.functional.cross_entropy(one_pass[0, :6], causal.targets[0, :6], reduction="sum")
    outputs = model.backbone(prefix.inputs, prefix.lengths)  # RecBole's per-prefix forward
    prefix_losses = torch.nn.functional.cross_entropy(outputs @ table.t(), torch.tensor(seq[1:]),
                                                      reduction="sum")
    assert torch.allclose(pass_losses, prefix_losses, rtol=1e-5)
    model.causal = False
    assert torch.allclose(model.next_item_loss(prefix.inputs, prefix.targets, prefix.lengths) * 6,
                          prefix_losses, rtol=1e-5)


def test_fedavg_of_identical_clients_is_the_client_and_weights_apply():
    theta = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    server = FedAvgServer({k: torch.zeros_like(v) for k, v in theta.items()})
    new = server.aggregate([ParameterUpdate({k: v.clone() for k, v in theta.items()}, 1.0)
                            for _ in range(5)])
    for k in theta:
        assert torch.allclose(new[k], theta[k], atol=1e-7)
    a, b = {"w": torch.ones(3, 4), "b": torch.ones(4)}, {"w": torch.zeros(3, 4), "b": torch.zeros(4)}
    new = server.aggregate([ParameterUpdate(a, 3.0), ParameterUpdate(b, 1.0)])
    assert torch.allclose(new["w"], torch.full((3, 4), 0.75))


def test_server_refuses_anything_but_parameter_tensors():
    server = FedAvgServer({"w": torch.zeros(2)})
    client = make_client(1, [1, 2, 3], 10)
    with pytest.raises(TypeError):
        server.aggregate([client])
    with pytest.raises(TypeError):
        server.aggregate([ParameterUpdate({"w": torch.tensor([1, 2])}, 1.0)])  # an id sequence
    with pytest.raises(ValueError):
        server.aggregate([ParameterUpdate({"w": torch.zeros(2), "seq": torch.zeros(2)}, 1.0)])


def test_client_fraction_that_selects_no_client_is_refused():
    with pytest.raises(ValueError, match="selects no client"):
        check_client_fraction(0.001, 94)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        check_client_fraction(1.5, 94)
    g = torch.Generator().manual_seed(0)
    assert len(sample_clients(943, 0.1, g)) == 94


def _engines_round(config, train, backbone, engine_cls, clients, weighting):
    model = build(config, train, backbone=backbone, view_generator="augment", cl_weight=0.1,
                  local_epochs=3, fed_weighting=weighting)
    spec = LocalTrainingSpec.from_config(config)
    server = FedAvgServer(trainable_parameters(model))
    updates, loss = engine_cls(model, spec).run_round(server.broadcast(), clients)
    return server.aggregate(updates), loss, updates


@pytest.mark.parametrize("backbone,weighting", [("SASRec", "uniform"), ("GRU4Rec", "samples"),
                                               ("NARM", "uniform")])
def test_vectorized_engine_equals_sequential_engine(split, backbone, weighting):
    """Same global model from both engines; NARM (not causal) trains on RecBole prefix samples."""
    config, dataset, train, valid, test = split
    config["causal_pass"] = "auto"
    clients = build_clients(train.dataset, 10, causal=backbone != "NARM")
    cohort = [clients[i] for i in (0, 3, 50, 200, 400, 900)]  # unequal numbers of windows
    assert len({c.num_rows for c in cohort}) > 2
    prepare_views(cohort, AugmentViewGenerator(dataset.item_num, 10, seed=1), 10)
    seq, seq_loss, _ = _engines_round(config, train, backbone, SequentialEngine, cohort, weighting)
    assert build(config, train, backbone=backbone).causal == (backbone != "NARM")
    vec, vec_loss, updates = _engines_round(config, train, backbone, VectorizedEngine, cohort, weighting)
    assert sum(u.num_clients for u in updates) == len(cohort)
    start = trainable_parameters(build(config, train, backbone=backbone))
    moved = 0.0
    for name in seq:
        assert torch.allclose(seq[name], vec[name], atol=2e-5, rtol=1e-4), name
        moved = max(moved, float((seq[name] - start[name]).abs().max()))
    assert moved > 1e-4  # the round did change the model
    assert vec_loss == pytest.approx(seq_loss, rel=1e-4)


def test_server_side_never_receives_sequences_or_views(split, monkeypatch):
    from recbole_llm.model.lumos import FedSeqTrainer

    config, dataset, train, valid, test = split
    config["view_generator"], config["cl_weight"] = "augment", 0.1
    model = build(config, train, view_generator="augment", cl_weight=0.1)
    received = []
    original = FedAvgServer.aggregate

    def spy(self, updates):
        updates = list(updates)
        received.append(updates)
        return original(self, updates)

    monkeypatch.setattr(FedAvgServer, "aggregate", spy)
    trainer = FedSeqTrainer(config, model)
    trainer.fit(train, None, verbose=False, saved=False)
    names = set(trainable_parameters(model))
    assert received and all(received)
    for updates in received:
        for update in updates:
            assert type(update) is ParameterUpdate
            assert set(update.tensors) == names
            assert all(t.is_floating_point() for t in update.tensors.values())
    # sequences, views and generated items stay in the clients
    assert any(c.views is not None for c in trainer.clients)
    assert not any(isinstance(v, torch.Tensor) and not v.is_floating_point()
                   for u in received[0] for v in vars(u).values())


def test_federated_trainer_runs_recboles_fit_one_round_per_epoch(split, monkeypatch):
    """No fit loop of its own: RecBole's Trainer.fit drives the rounds (early stopping, callbacks,
    wandb and tensorboard logging, checkpoints), _train_epoch runs one FedAvg round."""
    from recbole.trainer import Trainer

    from recbole_llm.federated.trainer import FederatedTrainer
    from recbole_llm.model.lumos import FedSeqTrainer

    assert "fit" not in {k for k, v in vars(FederatedTrainer).items() if v is Trainer.fit}
    assert not hasattr(FederatedTrainer, "_fit")
    config, dataset, train, valid, test = split
    old = {k: config[k] for k in ("rounds", "eval_step", "stopping_step")}
    config["rounds"], config["eval_step"], config["stopping_step"] = 4, 1, 1
    try:
        model = build(config, train)
        trainer = FedSeqTrainer(config, model)
        rounds, calls, logged = [], [], []
        original = FederatedTrainer._train_epoch

        def spy(self, *args, **kwargs):
            rounds.append(args[1])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(FederatedTrainer, "_train_epoch", spy)
        monkeypatch.setattr(trainer.wandblogger, "log_metrics", lambda m, head: logged.append(head))
        scores = []
        monkeypatch.setattr(Trainer, "_valid_epoch", lambda self, data, show_progress=False: (
            scores.append(1) or (1.0 / len(scores), {"ndcg@20": 1.0 / len(scores)})))
        best, result = trainer.fit(train, valid, verbose=False, saved=False,
                                   callback_fn=lambda epoch, score: calls.append(epoch))
    finally:
        for k, v in old.items():
            config[k] = v
    # scores fall after the first round: RecBole's early stopping stops once more than
    # stopping_step=1 evaluations have not improved, i.e. after round 2 of 4
    assert rounds == [0, 1, 2] and calls == [0, 1, 2]
    assert best == 1.0 and result == {"ndcg@20": 1.0}
    assert logged.count("train") == 3 and logged.count("valid") == 3
    assert [r for r, _ in trainer.valid_history] == [0, 1, 2]
