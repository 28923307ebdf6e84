"""eval_exclude_history: full-sort ranking of sequential models without the user's earlier items."""
import time

import numpy as np
import pytest
import torch
from recbole.trainer import Trainer

from recbole_llm.config import Config
from recbole_llm.history_exclusion import HistoryCollate, exclude_history
from recbole_llm.quick_start import build_model, prepare

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Each user's items in time order (item tokens 1..12).  With the LS split the
# second-to-last item is the valid target and the last the test target.
SEQUENCES = {
    "1": [1, 2, 3, 4, 5, 6],
    "2": [7, 8, 9, 10, 11, 12, 1],
    "3": [2, 4, 6, 8, 2],          # test target 2 was consumed before: must stay rankable
    "4": [3, 5, 7, 9, 11, 3, 5],   # valid target 3 and test target 5 are repeats too
}


def expected_history(phase):
    """By hand: every item the user had before the phase's target, except that target itself."""
    cut = -2 if phase == "valid" else -1
    return {user: set(seq[:cut]) - {seq[cut]} for user, seq in SEQUENCES.items()}


def test_the_hand_built_expectation():
    # MAX_ITEM_LIST_LENGTH is 3: user 2's valid input sequence is (9, 10, 11), so 7 and 8 are older
    assert expected_history("valid")["2"] == {7, 8, 9, 10, 11}
    assert expected_history("test")["3"] == {4, 6, 8}
    assert expected_history("valid")["4"] == {5, 7, 9, 11}
    assert expected_history("test")["4"] == {3, 7, 9, 11}


@pytest.fixture
def tiny_config(tmp_path):
    root = tmp_path / "hist"
    root.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    t = 0
    for user, seq in SEQUENCES.items():
        for item in seq:
            t += 1
            lines.append(f"{user}\t{item}\t{t}")
    (root / "hist.inter").write_text("\n".join(lines) + "\n")
    return dict(
        data_path=str(tmp_path), load_col=None, checkpoint_dir=str(tmp_path / "saved"),
        hidden_size=8, embedding_size=8, n_layers=1, n_heads=1, inner_size=16, MAX_ITEM_LIST_LENGTH=3,
        epochs=1, train_batch_size=64, eval_batch_size=3,  # 4 users: two eval batches, of 3 and 1
        eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        metrics=["Hit", "NDCG", "MRR"], topk=[3], valid_metric="MRR@3",
        show_progress=False, state="WARNING", seed=2020,
    )


def masked_pairs(dataset, loader):
    """{(user token, item token)} masked by ``loader``'s history_index, and the positives."""
    masked, positives = set(), set()
    for interaction, history_index, positive_u, positive_i in loader:
        users = dataset.id2token(dataset.uid_field, interaction[dataset.uid_field])
        rows, items = history_index
        assert rows.dtype == items.dtype == torch.int64
        assert int(rows.max()) < len(interaction)
        item_tokens = dataset.id2token(dataset.iid_field, items)
        masked |= {(users[r], int(i)) for r, i in zip(rows.tolist(), item_tokens)}
        pos_tokens = dataset.id2token(dataset.iid_field, positive_i)
        positives |= {(users[r], int(i)) for r, i in zip(positive_u.tolist(), pos_tokens)}
    return masked, positives


def test_valid_and_test_loaders_mask_exactly_the_earlier_items(tiny_config):
    config = Config("SASRec", "hist", config_dict=dict(tiny_config, eval_exclude_history=True))
    dataset, _, valid, test = prepare(config)
    for phase, loader in (("valid", valid), ("test", test)):
        assert isinstance(loader.collate_fn, HistoryCollate)
        masked, positives = masked_pairs(dataset, loader)
        expected = {(u, i) for u, items in expected_history(phase).items() for i in items}
        assert masked == expected, phase
        cut = -2 if phase == "valid" else -1
        assert positives == {(u, seq[cut]) for u, seq in SEQUENCES.items()}
        assert not masked & positives  # the repeats (user 3's 2, user 4's 3 and 5) stay rankable


def test_switch_off_keeps_recboles_protocol(tiny_config):
    config = Config("SASRec", "hist", config_dict=tiny_config)
    assert config["eval_exclude_history"] is False  # the default of properties/overall.yaml
    _, _, valid, test = prepare(config)
    for loader in (valid, test):
        assert not isinstance(loader.collate_fn, HistoryCollate)
        assert all(history_index is None for _, history_index, _, _ in loader)


def test_trained_model_never_ranks_history_and_scores_no_lower(tiny_config):
    config = Config("SASRec", "hist", config_dict=dict(tiny_config, epochs=30))
    _, train, valid, test = prepare(config)
    model = build_model(config, train)
    trainer = Trainer(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)

    def evaluate():
        """RecBole's Trainer.evaluate, recording the scores it ranks."""
        ranked = []
        batch_eval = trainer._full_sort_batch_eval

        def spy(batched_data):
            interaction, scores, positive_u, positive_i = batch_eval(batched_data)
            ranked.append((interaction, scores.clone()))
            return interaction, scores, positive_u, positive_i

        trainer._full_sort_batch_eval = spy
        try:
            result = trainer.evaluate(test, load_best_model=False, show_progress=False)
        finally:
            del trainer._full_sort_batch_eval
        history = expected_history("test")
        top_history = 0
        for interaction, scores in ranked:
            users = train.dataset.id2token(train.dataset.uid_field, interaction[train.dataset.uid_field])
            for user, top in zip(users, scores.topk(3, dim=1).indices):
                items = {int(i) for i in train.dataset.id2token(train.dataset.iid_field, top)}
                top_history += len(items & history[user])
        return result, top_history

    before, top_history_before = evaluate()
    exclude_history(config, train, valid, test)  # same model, same weights
    after, top_history_after = evaluate()
    assert top_history_before > 0  # without the switch the model does rank the user's history
    assert top_history_after == 0
    assert set(after) == set(before) == {"hit@3", "ndcg@3", "mrr@3"}
    for metric, value in after.items():
        assert value >= before[metric], metric


@pytest.mark.parametrize("mode", ["uni5", {"valid": "full", "test": "pop5"}])
def test_sampled_evaluation_is_refused_naming_the_key(tiny_config, mode):
    eval_args = dict(tiny_config["eval_args"], mode=mode)
    config = Config("SASRec", "hist", config_dict=dict(tiny_config, eval_args=eval_args,
                                                       eval_exclude_history=True))
    with pytest.raises(ValueError, match=r"eval_exclude_history.*eval_args\.mode"):
        prepare(config)


def test_general_models_keep_recboles_own_history(tiny_config):
    config = Config("BPR", "hist", config_dict=dict(tiny_config, eval_exclude_history=True))
    _, _, valid, _ = prepare(config)
    assert not isinstance(valid.collate_fn, HistoryCollate)
    assert all(history_index is not None for _, history_index, _, _ in valid)


def test_ml100k_masks_every_earlier_interaction_in_well_under_a_second(tiny_seq_config):
    config = Config("SASRec", "ml-100k", config_dict=dict(tiny_seq_config, eval_exclude_history=True))
    dataset, train, valid, test = prepare(config)
    start = time.perf_counter()
    exclude_history(config, train, valid, test)  # again: replaces, does not stack
    assert time.perf_counter() - start < 1.0
    assert not isinstance(test.collate_fn.collate, HistoryCollate)
    # ml-100k has no repeated (user, item): valid masks all but the 2 last, test all but the last
    users = dataset.user_num - 1
    assert users == 943 and len(dataset.inter_feat) + users == 100_000  # a row per item but the first
    for loader, left_out in ((valid, 2), (test, 1)):
        pairs = [torch.stack(h).numpy() for _, h, _, _ in loader]
        assert sum(p.shape[1] for p in pairs) == 100_000 - left_out * users
        keys = np.concatenate([p[1] for p in pairs])
        assert keys.min() > 0  # never the padding item
