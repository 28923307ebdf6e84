"""L3Rec end to end on a slice of ml-100k (tiny SASRec local models, q = 2, 1 epoch)."""
import copy
import sys
import warnings

import numpy as np
import pytest
import recbole.data
import recbole.data.utils
import torch
from recbole.data.dataset import Dataset
from recbole.model.abstract_recommender import GeneralRecommender, SequentialRecommender
from recbole.trainer import Trainer
from recbole.utils import ModelType

from recbole_llm.community.local_models import train_local_models
from recbole_llm.config import Config
from recbole_llm.model.l3rec import L3Rec, L3RecBase, L3RecTopN, L3RecTopNTrainer, L3RecTrainer
from recbole_llm.model.l3rec.global_data import global_training_view, prepare_global_data
from recbole_llm.model.l3rec.l3rec import L3REC_RULES
from recbole_llm.quick_start import build_model, load_data_and_model, prepare, run_recbole_llm
from recbole_llm.registry import get_trainer
from recbole_llm.validation import ConfigError, validate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_L3REC = {
    "num_local_models": 2,
    "local_model_epochs": 1,
    "global_epochs": 1,
    "local_config": {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1},
    "global_config": {"mlp_hidden_size": [32], "latent_dimension": 16},
    "MAX_ITEM_LIST_LENGTH": 10,
    "user_inter_num_interval": "[10,30]",  # 213 users, ~5k interactions
    "train_batch_size": 512,
    "eval_batch_size": 4096,
    "show_progress": False,
    "state": "WARNING",
    "seed": 2020,
}


@pytest.fixture
def tiny_l3rec(tmp_path):
    return dict(TINY_L3REC, checkpoint_dir=str(tmp_path / "saved"))


def build(config_dict):
    config = Config(model="L3Rec", dataset="ml-100k", config_dict=config_dict)
    _, train, valid, test = prepare(config)
    model = build_model(config, train)
    return config, model, train, valid, test


def test_end_to_end_reload_and_every_fusion(tiny_l3rec):
    result = run_recbole_llm(model="L3Rec", dataset="ml-100k", config_dict=tiny_l3rec, saved=True)
    test = result["test_result"]
    assert set(test) == {f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)}
    for k in (5, 10, 20):
        assert 0.0 <= test[f"ndcg@{k}"] <= test[f"hit@{k}"] <= 1.0
    assert test["hit@20"] > 0.0

    config, model, dataset, train, valid, test_data = load_data_and_model(result["saved_model_file"])
    assert bool(model.local_trained.all()) and model.test_weights.sum() > 0
    again = Trainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(again) == pytest.approx(dict(test), abs=1e-4)  # the checkpoint holds everything

    L3RecTrainer(config, model).measure_valid_ndcg(valid)
    members = model.test_weights > 0
    assert (model.valid_ndcg[~members] == 0).all() and (model.valid_ndcg[members] > 0).any()
    for fusion in ("count", "rrf", "wrrf_cf", "wrrf_valid"):
        model.fusion = fusion
        scores = Trainer(config, model).evaluate(test_data, load_best_model=False)
        assert 0.0 < scores["hit@20"] <= 1.0, fusion


def test_tiny_bandwidth_skips_communities_and_falls_back_to_global(tiny_l3rec):
    config, model, train, valid, _ = build(dict(tiny_l3rec, bandwidth=1e-3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        L3RecTrainer(config, model).fit(train, valid, saved=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "besides its anchor" in messages and "is skipped" in messages
    assert not model.local_trained.any()
    batch = next(iter(valid))[0]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch),
                                   model.global_scores(batch[model.USER_ID]))


def test_item_communities_refused_for_sequential_local_models(tiny_l3rec):
    with pytest.raises(ValueError, match="top-N local models only"):
        build(dict(tiny_l3rec, item_communities=True))


def test_bad_fusion_and_list_length_are_caught_before_training(tiny_l3rec):
    with pytest.raises(ConfigError, match="fusion must be one of .*'rrf'.*, got 'borda'"):
        build(dict(tiny_l3rec, fusion="borda"))
    with pytest.raises(ConfigError, match=r"fusion_list_length must be >= the largest topk \(20\), got 10"):
        build(dict(tiny_l3rec, fusion_list_length=10))
    with pytest.raises(ConfigError, match="num_local_models must be an integer >= 1, got 0"):
        build(dict(tiny_l3rec, num_local_models=0))
    with pytest.raises(ConfigError, match=r"num_local_models must be at most the number of users \(213\), got 214"):
        build(dict(tiny_l3rec, num_local_models=214))
    with pytest.raises(ConfigError, match="knn_index must be one of .*, got 'annoy'"):
        build(dict(tiny_l3rec, knn_index="annoy"))
    with pytest.raises(ConfigError,
                       match="knn_options must be a dict with keys among .*'nprobe'.*, got {'nprobes': 8}"):
        build(dict(tiny_l3rec, knn_options={"nprobes": 8}))


@pytest.mark.parametrize("key, value, message", [
    ("bandwidth", 0, "bandwidth must be a finite number > 0, got 0"),
    ("test_bandwidth", -1.0, "test_bandwidth must be a finite number > 0 or ~ (None), got -1.0"),
    ("kernel", "gauss", "kernel must be one of ('epanechnikov', 'uniform', 'triangular'), got 'gauss'"),
    ("parallel", "threads", "parallel must be one of ('none', 'process', 'ray'), got 'threads'"),
    ("rrf_k", -1, "rrf_k must be a finite number >= 0, got -1"),
    ("item_communities", "yes", "item_communities must be True or False, got 'yes'"),
    ("local_config", [1], "local_config must be a dict of config overrides or ~ (None), got [1]"),
])
def test_every_l3rec_key_has_one_rule_and_one_message(key, value, message):
    config = Config(model="L3Rec", dataset="ml-100k", config_dict={key: value}, command_line=False)
    with pytest.raises(ConfigError) as caught:
        validate(config, L3REC_RULES)
    assert str(caught.value) == message
    validate(Config(model="L3RecTopN", dataset="ml-100k", command_line=False), L3REC_RULES)  # defaults pass


def test_class_hierarchy_says_what_each_model_is():
    assert issubclass(L3Rec, L3RecBase) and issubclass(L3RecTopN, L3RecBase)
    assert issubclass(L3Rec, SequentialRecommender) and not issubclass(L3Rec, GeneralRecommender)
    assert issubclass(L3RecTopN, GeneralRecommender) and not issubclass(L3RecTopN, SequentialRecommender)
    assert not issubclass(L3RecTopN, L3Rec)
    assert (L3Rec.type, L3RecTopN.type) == (ModelType.SEQUENTIAL, ModelType.GENERAL)
    seq, topn = get_trainer(ModelType.SEQUENTIAL, "L3Rec"), get_trainer(ModelType.GENERAL, "L3RecTopN")
    assert issubclass(seq, L3RecTrainer) and not issubclass(seq, L3RecTopNTrainer)
    assert issubclass(topn, L3RecTopNTrainer) and issubclass(topn, L3RecTrainer)


def test_building_the_model_prepares_no_data(tiny_l3rec, monkeypatch):
    """The constructor builds configs and modules; datasets and loaders are the trainer's."""
    config = Config(model="L3Rec", dataset="ml-100k", config_dict=tiny_l3rec)
    _, train, valid, _ = prepare(config)

    def refuse(*args, **kwargs):
        raise AssertionError("data prepared while building the model")

    monkeypatch.setattr(Dataset, "__init__", refuse)  # no dataset is loaded, whatever the route
    modules = [recbole.data, recbole.data.utils] + [m for name, m in sys.modules.items()
                                                    if name.startswith("recbole_llm")]
    for module in modules:
        for name in ("create_dataset", "data_preparation"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    model = build_model(config, train)
    # the global model is built on the training interactions, in general form: the first item of
    # each user (only in its first row's history list) and every next-item target
    history = model.global_model.history_item_id
    inter = train._dataset.inter_feat
    first_user = int(inter["user_id"][0])
    items = set(history[first_user].tolist()) - {0}
    targets = set(inter["item_id"][inter["user_id"] == first_user].tolist())
    assert items == targets | {int(inter["item_id_list"][0, 0])}
    monkeypatch.undo()
    monkeypatch.setattr(sys.modules["recbole_llm.model.l3rec.global_data"], "create_dataset", refuse)
    with pytest.raises(AssertionError, match="data prepared"):  # the trainer's job: it does call it
        L3RecTrainer(config, model).train_global_model(train)


def test_global_model_ids_are_checked_before_training(tiny_l3rec):
    cfg = dict(tiny_l3rec, global_config=dict(tiny_l3rec["global_config"], user_inter_num_interval="[25,30]"))
    config, model, train, _, _ = build(cfg)
    before = copy.deepcopy(model.global_model.state_dict())
    with pytest.raises(RuntimeError, match="the global model's user_id ids differ from the local models'"):
        L3RecTrainer(config, model).fit(train, None, saved=False)
    for key, value in model.global_model.state_dict().items():
        assert torch.equal(value, before[key])  # nothing trained


def test_global_view_is_the_general_split_of_the_same_data(tmp_path):
    """Users with >= 4 interactions: the global model's view of L3Rec's training split is RecBole's
    general training split; users with 3 get their second item too (warned)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(1, 7):
        count = 3 if user == 1 else 6
        lines += [f"u{user}\ti{(user * 7 + k) % 20 + 1}\t{user * 100 + k}" for k in range(count)]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    cfg = dict(TINY_L3REC, data_path=str(tmp_path), topk=[5], fusion_list_length=5, MAX_ITEM_LIST_LENGTH=5,
               user_inter_num_interval=None, load_col=None, num_local_models=2, checkpoint_dir=str(tmp_path / "saved"))
    config = Config(model="L3Rec", dataset="tiny", config_dict=cfg, command_line=False)
    _, train, _, _ = prepare(config)
    model = build_model(config, train)
    view = global_training_view(train._dataset)
    assert type(view) is Dataset and view.field2id_token is train._dataset.field2id_token
    with pytest.warns(RuntimeWarning, match="fewer than 4 interactions"):
        general_train = prepare_global_data(model.global_config, train._dataset)[0]._dataset

    def items_of(dataset, token):
        uid = dataset.token2id("user_id", token)
        return sorted(dataset.inter_feat["item_id"][dataset.inter_feat["user_id"] == uid].tolist())

    for user in range(2, 7):
        assert items_of(view, f"u{user}") == items_of(general_train, f"u{user}")
        assert len(items_of(view, f"u{user}")) == 4
    assert len(items_of(general_train, "u1")) == 1 and len(items_of(view, "u1")) == 2
    uid = view.token2id("user_id", "u1")
    assert sorted(set(model.global_model.history_item_id[uid].tolist()) - {0}) == items_of(view, "u1")
    assert np.array_equal(view.inter_matrix().toarray(), train._dataset.inter_matrix().toarray())


def test_parallel_process_and_ray_train_the_same_local_models(tiny_l3rec):
    config, model, train, _, _ = build(tiny_l3rec)
    communities = [torch.arange(1, 25), torch.arange(25, 45)]  # two small hand-made communities
    for j, users in enumerate(communities):
        model.train_weights[j, users] = 1.0

    def tasks():
        made = L3RecTrainer(config, model).local_tasks(train)
        for task in made:
            task.num_threads = 1  # same arithmetic in every mode (Adam magnifies float noise)
        return made

    assert [len(t.dataset) for t in tasks()] == [
        int(torch.isin(train._dataset.inter_feat["user_id"], users).sum()) for users in communities]
    initial = [copy.deepcopy(m.state_dict()) for m in model.local_models]
    threads = torch.get_num_threads()
    reference = train_local_models(tasks(), "none")  # trains model.local_models in place
    assert torch.get_num_threads() == threads
    assert not torch.equal(model.local_models[0].state_dict()["item_embedding.weight"],
                           initial[0]["item_embedding.weight"])
    for mode in ("process", "ray"):
        for m, state in zip(model.local_models, initial):
            m.load_state_dict(state)
        results = train_local_models(tasks(), mode, workers=2)
        for ref, got in zip(reference, results):
            assert ref["index"] == got["index"]
            for key, value in ref["state_dict"].items():
                torch.testing.assert_close(got["state_dict"][key], value, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="parallel"):
        train_local_models(tasks(), "threads")


def test_top_n_variant_with_item_communities(tiny_l3rec):
    cfg = {k: v for k, v in tiny_l3rec.items() if k not in ("local_config", "MAX_ITEM_LIST_LENGTH")}
    cfg.update(item_communities=True, item_bandwidth=0.6, local_model_epochs=1,
               local_config={"embedding_size": 16})
    config = Config(model="L3RecTopN", dataset="ml-100k", config_dict=cfg)
    _, train, valid, test = prepare(config)
    model = build_model(config, train)
    L3RecTrainer(config, model).fit(train, valid, saved=False)
    assert model.local_trained.any()
    assert not model.item_members.all()  # some items are outside some communities
    batch, _, _, _ = next(iter(test))
    model.eval()
    with torch.no_grad():
        ranked = model.local_rank_lists(batch, model.affinity(batch["user_id"]))
    history = model.history_item_id[batch["user_id"]]
    for j in range(model.num_local_models):
        listed = ranked[:, j]
        assert model.item_members[j, listed[listed >= 0]].all()  # only community items
        for row in range(len(batch)):  # never the user's own training items
            assert not set(listed[row].tolist()) & (set(history[row].tolist()) - {0})
    result = Trainer(config, model).evaluate(test, load_best_model=False)
    assert 0.0 <= result["ndcg@10"] <= result["hit@10"] <= 1.0


def test_pod_local_models_end_to_end(tiny_l3rec, tmp_path):
    """The paper's configuration: POD (generative T5 recommender) as the local model."""
    from recbole_llm.llm.tiny_t5 import save_tiny_t5

    t5 = save_tiny_t5(tmp_path / "tiny-t5")
    cfg = dict(tiny_l3rec, user_inter_num_interval="[20,22]", local_model="POD",
               local_config={"pod_llm": str(t5), "beam_size": 20, "train_batch_size": 256,
                             "eval_batch_size": 256},
               fusion_list_length=20, min_community_users=2)
    config, model, train, valid, test = build(cfg)
    assert type(model.local_models[0]).__name__ == "POD"
    L3RecTrainer(config, model).fit(train, valid, saved=False)
    assert model.local_trained.any()
    result = Trainer(config, model).evaluate(test, load_best_model=False)
    assert 0.0 <= result["ndcg@20"] <= result["hit@20"] <= 1.0
    batch = next(iter(test))[0]
    model.eval()
    with torch.no_grad():
        ranked = model.local_rank_lists(batch, model.affinity(batch["user_id"]))
    assert (ranked >= 0).sum(-1).max() <= 20  # POD ranks only its beam; the rest are empty slots
