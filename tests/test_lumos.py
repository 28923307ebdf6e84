"""LUMOS: tri-view InfoNCE, view generators, bad input, end-to-end runs of the three models."""
import math
import os

import numpy as np
import pytest
import torch

from federated_fixtures import TINY_FED, build, split_fixture  # noqa: F401
from llm_fixtures import save_tiny_gpt2

from recbole_llm.model.lumos.losses import tri_view_infonce
from recbole_llm.model.lumos.views import build_view_generator
from recbole_llm.model.lumos.views.augment import AugmentViewGenerator
from recbole_llm.model.lumos.views.llm import split_titles
from recbole_llm.model.lumos.views.semantic import SemanticViewGenerator
from recbole_llm.quick_start import run_recbole_llm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


split = split_fixture("LUMOS")


def test_tri_view_infonce_matches_hand_computation():
    anchor = torch.tensor([2.0, 0.0])  # cosine similarity ignores the norm
    positives = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # sim 1 and 0
    negatives = torch.tensor([[-1.0, 0.0]])  # sim -1
    tau = 0.5
    pos = math.exp(1 / tau) + math.exp(0 / tau)
    neg = math.exp(-1 / tau)
    expected = -math.log(pos / (pos + neg))
    assert float(tri_view_infonce(anchor, positives, negatives, tau)) == pytest.approx(expected, rel=1e-6)
    # without the counterfactual view, neg(u) counts one orthogonal view
    no_neg = tri_view_infonce(anchor, positives, negatives[:0], tau)
    assert float(no_neg) == pytest.approx(-math.log(pos / (pos + 1.0)), rel=1e-6)
    # batched anchors give the per-anchor losses
    batch = tri_view_infonce(anchor.repeat(3, 1), positives.repeat(3, 1, 1), negatives.repeat(3, 1, 1), tau)
    assert batch.shape == (3,) and torch.allclose(batch, torch.full((3,), expected))


def _check_views(views, sequences, n_items, max_len):
    for tv, seq in zip(views, sequences):
        for name in ("future", "paraphrase", "counterfactual"):
            items = getattr(tv, name)
            assert 1 <= len(items) <= max_len, name
            assert all(isinstance(v, int) and 1 <= v < n_items for v in items), name


def test_semantic_and_augment_generators_return_valid_item_ids():
    rng = np.random.default_rng(0)
    n_items, max_len = 60, 10
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    sequences = [[1, 2, 3], list(range(5, 30)), [7]]
    semantic = SemanticViewGenerator(emb, max_len, seed=3, future_length=4)
    views = semantic.generate(sequences, [1, 2, 3])
    _check_views(views, sequences, n_items, max_len)
    assert views[0].future[:3] == [1, 2, 3] and len(views[0].future) == 7  # S_u + 4 unseen items
    assert not set(views[0].future[3:]) & {1, 2, 3}
    assert len(views[1].paraphrase) == max_len and len(views[1].counterfactual) == max_len
    assert not set(views[1].counterfactual) & set(sequences[1])
    # the future items are the unseen items nearest the recent interest
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    scores = unit @ unit[[1, 2, 3]].mean(0)
    scores[[0, 1, 2, 3]] = -np.inf
    assert views[0].future[3:] == np.argsort(-scores)[:4].tolist()
    assert semantic.generate(sequences, [1, 2, 3]) == views  # per-user seeds: reproducible
    augment = AugmentViewGenerator(n_items, max_len, seed=3)
    aug = augment.generate(sequences, [1, 2, 3])
    _check_views(aug, sequences, n_items, max_len)
    assert all(set(tv.paraphrase) <= set(s) and set(tv.future) <= set(s) for tv, s in zip(aug, sequences))


def test_cached_views_are_aligned_like_the_anchor():
    """Row 0 of a client's view tensor is the anchor S_u exactly as the backbone sees it
    (last max_len items, left-aligned, 0-padded); every view row is padded the same way."""
    from recbole_llm.federated.client_data import make_client
    from recbole_llm.model.lumos.views import prepare_views

    emb = np.random.default_rng(1).normal(size=(60, 8)).astype(np.float32)
    max_len = 10
    clients = [make_client(1, list(range(5, 30)), max_len), make_client(2, [3, 9, 4], max_len)]
    prepare_views(clients, SemanticViewGenerator(emb, max_len, seed=0, future_length=3), max_len)
    for c in clients:
        anchor, anchor_len = c.anchor(max_len)
        assert torch.equal(c.views[0], anchor[0]) and int(c.view_lengths[0]) == int(anchor_len[0])
        # the anchor's last item is the last training item, as in RecBole's valid input
        assert int(c.views[0, c.view_lengths[0] - 1]) == int(c.sequence[-1])
        for row, n in zip(c.views, c.view_lengths.tolist()):
            assert 1 <= n <= max_len and (row[:n] >= 1).all() and (row[:n] < 60).all()
            assert (row[n:] == 0).all()
    assert c.view_lengths.tolist() == [3, 6, 3, 3]  # S_u, S_u + 3 future items, paraphrase, counterfactual


def test_each_evaluation_scores_the_new_global_model(split, monkeypatch):
    """The model RecBole's evaluator scores after a round holds the server's new average."""
    from recbole_llm.federated.server import FedAvgServer
    from recbole_llm.model.lumos import LUMOSTrainer

    config, dataset, train, valid, test = split
    old = {k: config[k] for k in ("rounds", "eval_step", "view_generator", "cl_weight")}
    config["rounds"], config["eval_step"] = 3, 1
    aggregated, evaluated = [], []
    aggregate, valid_epoch = FedAvgServer.aggregate, LUMOSTrainer._valid_epoch

    def spy_aggregate(self, updates):
        out = aggregate(self, updates)
        aggregated.append({k: v.clone() for k, v in out.items()})
        return out

    def spy_valid(self, *args, **kwargs):
        evaluated.append({k: v.detach().clone() for k, v in self.model.named_parameters()})
        return valid_epoch(self, *args, **kwargs)

    monkeypatch.setattr(FedAvgServer, "aggregate", spy_aggregate)
    monkeypatch.setattr(LUMOSTrainer, "_valid_epoch", spy_valid)
    try:
        model = build(config, train, view_generator="augment", cl_weight=0.1)
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        LUMOSTrainer(config, model).fit(train, valid, verbose=False, saved=False)
    finally:
        for k, v in old.items():
            config[k] = v
    assert len(aggregated) == len(evaluated) == 3
    for avg, seen in zip(aggregated, evaluated):
        assert set(avg) == set(seen)
        assert all(torch.equal(avg[k], seen[k]) for k in avg)
    moved = [max(float((a[k] - b[k]).abs().max()) for k in a) for a, b in zip(evaluated, [start] + evaluated)]
    assert min(moved) > 1e-5  # every round changed the global model


def _tiny_gpt2(path):
    return save_tiny_gpt2(path)


def _tiny_bert(path):
    """A tiny random text encoder (fast stand-in for MiniLM in the LLM tests)."""
    from transformers import BertConfig, BertModel

    from recbole_llm.llm.loading import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_llm_generator_end_to_end_with_a_tiny_gpt2(split, tmp_path):
    config, dataset, train, valid, test = split
    config["view_generator"], config["llm_path"] = "llm", _tiny_gpt2(tmp_path / "gpt2")
    config["text_encoder"] = _tiny_bert(tmp_path / "bert")
    config["llm_max_new_tokens"], config["llm_batch_size"] = 12, 4
    generator = build_view_generator(config, dataset)
    sequences = [[1, 2, 3, 4], [50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]]
    views = generator.generate(sequences, [1, 2])
    _check_views(views, sequences, dataset.item_num, 10)
    titles = generator.titles
    toy, golden = titles.index("Toy Story"), titles.index("GoldenEye")
    text = f"1. Toy Story\n2) GoldenEye, GoldenEye; ???\n- {titles[toy]}"
    assert split_titles(text)[:2] == ["Toy Story", "GoldenEye"]
    assert generator.map_to_items(text, exclude=()) == [toy, golden]  # duplicates and junk dropped
    assert generator.map_to_items(text, exclude=[toy]) == [golden]
    before = generator.titles_generated
    generator.map_to_items("Toy Story\nzzzz qqqq", exclude=())
    assert generator.titles_generated == before + 2 and 0 < generator.mapped_fraction <= 1
    config["text_encoder"] = "minilm"


def test_llm_views_are_cached_per_user_and_sequence(split, tmp_path):
    config, dataset, train, valid, test = split
    old = {k: config[k] for k in ("view_generator", "llm_path", "text_encoder", "lumos_view_cache")}
    config["view_generator"], config["llm_path"] = "llm", _tiny_gpt2(tmp_path / "gpt2")
    config["text_encoder"], config["lumos_view_cache"] = _tiny_bert(tmp_path / "bert"), str(tmp_path / "views")
    config["llm_max_new_tokens"] = 6
    try:
        first = build_view_generator(config, dataset)
        sequences = [[1, 2, 3, 4], [50, 60, 70]]
        views = first.generate(sequences, [1, 2])
        assert first.text_generator.generated_tokens > 0 and os.path.isfile(first.cache.path)
        again = build_view_generator(config, dataset)  # a new run with the same settings
        assert again.generate(sequences, [1, 2]) == views
        assert not hasattr(again._text_generator, "generate")  # every user cached: the LM was never loaded
        asked = []
        again.text_generator.generate = lambda prompts: asked.extend(prompts) or ["Toy Story"] * len(prompts)
        changed = again.generate([[1, 2, 3, 4], [50, 60, 70, 80]], [1, 2])
        assert len(asked) == 3 and changed[0] == views[0]  # only user 2, whose sequence changed
        config["llm_temperature"] = 0.5
        assert build_view_generator(config, dataset).cache.path != first.cache.path
    finally:
        config.final_config_dict.update(old)
        config["llm_temperature"] = 0.8


@pytest.mark.parametrize("model", ["LUMOS", "FedSeq", "ConFedSRS"])
def test_tiny_end_to_end_run(model, tmp_path):
    result = run_recbole_llm(model=model, dataset="ml-100k",
                             config_dict=dict(TINY_FED, rounds=2, checkpoint_dir=str(tmp_path)))
    test = result["test_result"]
    assert set(test) == {"hit@20", "ndcg@20"} and 0 <= test["ndcg@20"] <= test["hit@20"] <= 1
    assert result["best_valid_result"] is not None


def test_lumos_with_llm_views_and_ablation_runs(tmp_path):
    result = run_recbole_llm(model="LUMOS", dataset="ml-100k", config_dict=dict(
        TINY_FED, client_fraction=0.005, view_generator="llm", llm_path=_tiny_gpt2(tmp_path / "g"),
        llm_max_new_tokens=6, lumos_views=["future", "paraphrase"], text_encoder=_tiny_bert(tmp_path / "b"),
        checkpoint_dir=str(tmp_path)))
    assert 0 <= result["test_result"]["hit@20"] <= 1


def test_cli_runs_lumos(monkeypatch, capsys):
    import run_recbole_llm as cli

    args = ["run_recbole_llm.py", "--model=LUMOS", "--dataset=ml-100k", "--rounds=1", "--local_epochs=1"]
    args += [f"--{k}={v}" for k, v in TINY_FED.items() if k not in ("rounds", "local_epochs", "metrics", "topk")]
    monkeypatch.setattr("sys.argv", args)
    assert cli.main(args[1:]) == 0
    assert "test result" in capsys.readouterr().out


def test_cli_runs_lumos_with_llm_views(monkeypatch, capsys, tmp_path):
    import run_recbole_llm as cli
    from recbole_llm.model.lumos.views import LLMViewGenerator

    calls = []
    real = LLMViewGenerator.generate
    monkeypatch.setattr(LLMViewGenerator, "generate", lambda self, seqs, users: calls.append(len(seqs))
                        or real(self, seqs, users))
    args = ["--model=LUMOS", "--dataset=ml-100k", "--rounds=1", "--local_epochs=1", "--view_generator=llm",
            f"--llm_path={_tiny_gpt2(tmp_path / 'g')}", f"--text_encoder={_tiny_bert(tmp_path / 'b')}",
            "--llm_max_new_tokens=6", "--client_fraction=0.005"]
    args += [f"--{k}={v}" for k, v in TINY_FED.items()
             if k not in ("rounds", "local_epochs", "metrics", "topk", "client_fraction")]
    monkeypatch.setattr("sys.argv", ["run_recbole_llm.py"] + args)
    assert cli.main(args) == 0
    assert calls and sum(calls) == 5  # the round's sampled clients (0.5 % of 943) got LLM views
    assert "test result" in capsys.readouterr().out


@pytest.mark.parametrize("backbone,message", [
    ("NoSuchRec", "unknown backbone 'NoSuchRec'"),
    ("BPR", "'BPR' is not a sequential recommender"),
    ("FedSeq", "'FedSeq' is not a sequential recommender"),  # would build itself without end
    ("BERT4Rec", r"needs forward\(item_seq, item_seq_len\), 'BERT4Rec' has forward\(item_seq\)"),
    ("Caser", r"'Caser' has forward\(user, item_seq\)"),
])
def test_bad_backbones_are_refused_before_training(split, backbone, message):
    config, dataset, train, valid, test = split
    old = config["backbone"]
    try:
        with pytest.raises(ValueError, match=message):
            build(config, train, backbone=backbone)
    finally:
        config["backbone"] = old


@pytest.mark.parametrize("key,value,message", [
    ("cl_weight", -0.1, "cl_weight"), ("cl_weight", float("nan"), "cl_weight"),
    ("cl_temperature", 0.0, "cl_temperature"), ("client_fraction", 0.0001, "selects no client"),
    ("client_fraction", 0.0, "client_fraction"), ("lumos_views", ["counterfactual"], "positive view"),
])
def test_bad_settings_are_refused_before_training(split, key, value, message):
    config, dataset, train, valid, test = split
    old = config[key]
    try:
        with pytest.raises(ValueError, match=message):
            build(config, train, **{key: value})
    finally:
        config[key] = old


def test_missing_llm_is_refused(split, tmp_path):
    from recbole_llm.llm.loading import LLMNotFoundError

    config, dataset, train, valid, test = split
    with pytest.raises(LLMNotFoundError):
        build(config, train, view_generator="llm", cl_weight=0.1, llm_path=str(tmp_path / "nope"))
    with pytest.raises(LLMNotFoundError):
        build(config, train, view_generator="llm", llm_path=None)
    config["view_generator"] = "semantic"


def test_dataset_without_item_text_is_refused(tmp_path):
    from recbole_llm.llm.item_text import MissingItemTextError

    root = tmp_path / "toy"
    root.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{(u * 7 + t) % 30 + 1}\t{t}" for u in range(1, 21) for t in range(8)]
    (root / "toy.inter").write_text("\n".join(lines) + "\n")
    config = dict(TINY_FED, data_path=str(tmp_path), load_col=None, checkpoint_dir=str(tmp_path / "saved"))
    with pytest.raises(MissingItemTextError, match="item"):
        run_recbole_llm(model="LUMOS", dataset="toy", config_dict=config)
    # the augment and none generators need no text
    result = run_recbole_llm(model="ConFedSRS", dataset="toy", config_dict=dict(config, client_fraction=0.2))
    assert result["test_result"] is not None
