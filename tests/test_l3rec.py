"""L3Rec end to end on a slice of ml-100k (tiny SASRec local models, q = 2, 1 epoch)."""
import copy
import warnings

import pytest
import torch
from recbole.trainer import Trainer

from recbole_llm.community.local_models import train_local_models
from recbole_llm.config import Config
from recbole_llm.quick_start import build_model, load_data_and_model, prepare, run_recbole_llm
from recbole_llm.model.l3rec import L3RecTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_L3REC = {
    "num_local_models": 2,
    "local_model_epochs": 1,
    "global_epochs": 1,
    "local_config": {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1},
    "global_config": {"mlp_hidden_size": [32], "latent_dimension": 16},
    "MAX_ITEM_LIST_LENGTH": 10,
    "user_inter_num_interval": "[10,30]",  # 214 users, ~5k interactions
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
    with pytest.raises(ValueError, match="fusion must be one of"):
        build(dict(tiny_l3rec, fusion="borda"))
    with pytest.raises(ValueError, match="fusion_list_length"):
        build(dict(tiny_l3rec, fusion_list_length=10))
    with pytest.raises(ValueError, match="num_local_models"):
        build(dict(tiny_l3rec, num_local_models=0))
    with pytest.raises(ValueError, match="knn_index must be one of"):
        build(dict(tiny_l3rec, knn_index="annoy"))
    with pytest.raises(ValueError, match="knn_options accepts"):
        build(dict(tiny_l3rec, knn_options={"nprobes": 8}))


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
