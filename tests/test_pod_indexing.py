"""POD item indexing: P5 sequential IDs, collaborative IDs, tokenisation round trip, collisions."""
import numpy as np
import pytest
import torch

from recbole_llm.llm.tiny_t5 import build_tiny_t5_tokenizer
from recbole_llm.model.pod.indexing import (ItemTokens, collaborative_indexing, sequential_indexing)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_t5_tokenizer()


def test_sequential_indexing_numbers_items_by_first_appearance():
    names = sequential_indexing([5, 3, 5, 7, 3, 2], n_items=9)
    assert names[0] is None
    assert [names[i] for i in (5, 3, 7, 2)] == ["item_1", "item_2", "item_3", "item_4"]
    assert sorted(names[i] for i in (1, 4, 6, 8)) == ["item_5", "item_6", "item_7", "item_8"]
    assert len(set(names[1:])) == 8


def test_tokenisation_round_trip(tokenizer):
    names = sequential_indexing(np.random.default_rng(0).permutation(np.arange(1, 1700)), 1700)
    tokens = ItemTokens(names, tokenizer)
    for item in (1, 9, 10, 99, 100, 1234, 1699):
        pieces = tokens.table[item, :tokens.length[item]].tolist()
        assert len(pieces) > 2  # split into sub-word pieces: ▁item, _, digits
        assert tokenizer.decode(pieces) == names[item]
    assert len({tuple(s) for s in tokens.sequences()}) == 1699  # no collisions
    labels = tokens.target_labels(torch.tensor([5, 1234]))
    for row, item in zip(labels, (5, 1234)):
        n = int(tokens.length[item])
        assert row[:n].tolist() == tokens.table[item, :n].tolist()
        assert row[n] == tokenizer.eos_token_id and (row[n + 1:] == -100).all()


def test_collaborative_indexing_is_collision_free_and_groups_co_consumed_items(tokenizer):
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 121
    # two communities: users 0-99 consume items 1-60, users 100-199 items 61-120
    users = np.repeat(np.arange(n_users), 15)
    items = np.where(users < 100, rng.integers(1, 61, users.size), rng.integers(61, 121, users.size))
    names = collaborative_indexing(users, items, n_users, n_items, n_clusters=4, dim=8)
    assert len(set(names[1:])) == n_items - 1 and all(n.startswith("item_") for n in names[1:])
    top = lambda i: names[i].split("_")[1]  # noqa: E731  first cluster of the path
    assert len({top(i) for i in range(1, 61)} & {top(i) for i in range(61, 121)}) == 0
    tokens = ItemTokens(names, tokenizer)
    assert all(tokenizer.decode(s[:-1]) == names[i + 1] for i, s in enumerate(tokens.sequences()))


def test_collisions_and_unknown_pieces_are_refused(tokenizer):
    with pytest.raises(ValueError, match="collision: items 1 and 3"):
        ItemTokens([None, "item_1", "item_2", "item_1"], tokenizer)
    with pytest.raises(ValueError, match="cannot spell item IDs"):
        ItemTokens([None, "item_1", "item_€"], tokenizer)
