"""POD on ml-100k with a tiny offline T5: end to end, beam vs exact, variants, bad input."""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm.config import Config
from recbole_llm.llm.loading import LLMNotFoundError
from recbole_llm.llm.tiny_t5 import save_tiny_t5
from recbole_llm.model.pod import POD
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm
from tests.pod_fixtures import TINY_POD


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny-t5")


@pytest.fixture(scope="module")
def data(tiny_t5, tmp_path_factory):
    config = Config("POD", "ml-100k", config_dict=dict(TINY_POD, pod_llm=tiny_t5))
    return config, data_preparation(config, create_dataset(config))


def build(data, **overrides):
    config, (train, _, test) = data
    saved = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        torch.manual_seed(0)
        return POD(config, train._dataset).eval(), test
    finally:  # the module's config is shared: leave it as it was
        for key, value in saved.items():
            config[key] = value


def first_batch(test):
    return next(iter(test))[0]


def test_end_to_end_on_ml100k_and_reload(tiny_t5, tmp_path):
    result = run_recbole_llm("POD", "ml-100k", config_dict=dict(
        TINY_POD, pod_llm=tiny_t5, checkpoint_dir=str(tmp_path / "saved")))
    test = result["test_result"]
    assert set(test) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}
    assert 0 <= test["ndcg@5"] <= test["hit@5"] <= test["hit@10"] <= 1
    _, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    batch = first_batch(test_data)
    with torch.no_grad():
        scores = model.eval().full_sort_predict(batch)
    assert scores.shape == (len(batch), model.n_items)
    assert (torch.isfinite(scores).sum(1) == TINY_POD["beam_size"]).all()


def test_beam_top_b_equals_exact_top_b(data):
    model, test = build(data, beam_size=10)
    batch = first_batch(test)[:3]
    with torch.no_grad():
        hidden, mask = model.encode(batch)
        banned = model.history_mask(batch[model.ITEM_SEQ])
        exact = model.exact_scores(hidden, mask).masked_fill(banned, float("-inf"))
        model.beam_size = model.n_items - 1  # nothing pruned: beam search must be exact
        wide = model.beam_scores(hidden, mask, banned)
        model.beam_size = 10
        narrow = model.beam_scores(hidden, mask, banned)
        predicted = model.predict(batch)  # log-likelihood of the true next item
    assert torch.equal(wide.topk(20).indices, exact.topk(20).indices)
    assert torch.allclose(wide.topk(20).values, exact.topk(20).values, atol=1e-4)
    true_item = batch[model.ITEM_ID]
    assert torch.allclose(predicted, exact.gather(1, true_item.unsqueeze(1)).squeeze(1), atol=1e-4)
    for row in range(3):  # a narrow beam: valid, distinct, non-history items with exact scores
        found = torch.isfinite(narrow[row]).nonzero().squeeze(1)
        assert len(found) == 10 and not banned[row, found].any() and (found > 0).all()
        assert torch.allclose(narrow[row, found], exact[row, found], atol=1e-4)


@pytest.mark.parametrize("variant", [
    dict(pod_prompt="discrete", pod_task="topn", pod_whole_word=False),
    dict(item_indexing="collaborative", pod_inference="exact"),
])
def test_variants_train_and_rank(data, variant):
    model, test = build(data, **variant)
    batch = first_batch(test)[:4]
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert model.t5.get_input_embeddings().weight.grad.abs().sum() > 0
    with torch.no_grad():
        scores = model.eval().full_sort_predict(batch)
    best = scores.argmax(1)
    assert (best > 0).all() and torch.isfinite(scores.max(1).values).all()
    assert not model.history_mask(batch[model.ITEM_SEQ]).gather(1, best.unsqueeze(1)).any()


def test_topn_prompt_ignores_history_order(data):
    model, test = build(data, pod_task="topn")
    batch = first_batch(test)[:2]
    seq, length = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    shuffled = seq.clone()
    for row in range(2):
        n = int(length[row])
        shuffled[row, :n] = seq[row, torch.randperm(n)]
    assert torch.equal(model.prompt_tokens(seq, length)[0], model.prompt_tokens(shuffled, length)[0])
    model.task = "sequential"
    assert not torch.equal(model.prompt_tokens(seq, length)[0], model.prompt_tokens(shuffled, length)[0])


def test_prompt_is_template_then_history_ids(data):
    model, test = build(data, pod_prompt="discrete", pod_prompt_length=3)
    batch = first_batch(test)[:1]
    tokens, words, _ = model.prompt_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    from recbole_llm.llm.loading import load_tokenizer

    text = load_tokenizer(data[0]["pod_llm"]).decode(tokens[0])
    n = int(batch[model.ITEM_SEQ_LEN][0])
    names = [model.item_tokens.id_strings[i] for i in batch[model.ITEM_SEQ][0, :n].tolist()]
    assert text == data[0]["pod_template"].replace("{history}", " ".join(names)) + "</s>"
    assert words[0].max() == n and words[0].unique().numel() == n + 1  # one whole word per item


def test_bad_input_is_refused_before_training(data, tiny_t5, tmp_path):
    with pytest.raises(ValueError, match="beam_size=5 is smaller than the largest K"):
        build(data, beam_size=5, topk=[5, 10])
    with pytest.raises(ValueError, match="pod_prompt must be one of"):
        build(data, pod_prompt="soft")
    with pytest.raises(LLMNotFoundError, match="pod_llm=.*does not exist"):
        build(data, beam_size=10, pod_llm=str(tmp_path / "no-such-t5"))
    mismatched = save_tiny_t5(tmp_path / "small-vocab")
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=8, d_ff=16, d_kv=4, num_layers=1,
                                        num_heads=2)).save_pretrained(mismatched)
    with pytest.raises(ValueError, match="tokenizer/model mismatch.*only 50 rows"):
        build(data, pod_llm=mismatched)


def test_training_fits_a_batch_and_beam_search_finds_its_targets(data):
    model, test = build(data, pod_whole_word=True)
    batch = first_batch(test)[:8]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    model.train()
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():
        scores = model.eval().full_sort_predict(batch)
    hits = (scores.topk(10).indices == batch[model.ITEM_ID].unsqueeze(1)).any(1)
    assert hits.float().mean() >= 0.5  # the memorised targets are generated (random: 10/1682)
