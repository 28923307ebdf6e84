"""The item trie and the constrained beam search (no model: a fixed toy decoder)."""
import itertools

import pytest
import torch

from recbole_llm.model.pod.decoding import ItemTrie, constrained_beam_search

EOS, VOCAB = 1, 12


def catalogue():
    """Items 1..n with token sequences of different lengths sharing prefixes (like item_1, item_12)."""
    seqs = [[5, 6, d] for d in range(2, 12)]
    seqs += [[5, 6, a, b] for a, b in itertools.product(range(2, 7), range(7, 11))]
    return [s + [EOS] for s in seqs]


def prefix_key(prefix):
    """A hash of each prefix row (tokens after the decoder start) into 97 buckets."""
    weights = torch.tensor([31, 7, 3, 1, 1])[:prefix.shape[1]]
    return (prefix * weights).sum(1) % 97


def toy_decoder(n_rows, beam, seed=0, favour=()):
    """Deterministic next-token log-probs that depend on the row and the whole prefix."""
    table = torch.randn(n_rows, 97, VOCAB, generator=torch.Generator().manual_seed(seed))
    table[..., list(favour)] += 4.0  # steer the beams towards some tokens
    table = table.log_softmax(-1)

    previous = {}

    def next_log_probs(prefix, parents):
        if parents is not None:  # the contract a cached decoder relies on: row r extends parents[r]
            assert torch.equal(prefix[:, :-1], previous["prefix"][parents])
        previous["prefix"] = prefix
        return table[torch.arange(prefix.shape[0]) // beam, prefix_key(prefix)]

    def exact(seqs):  # log-likelihood of every sequence for every row, token by token
        scores = torch.zeros(n_rows, len(seqs))
        for j, seq in enumerate(seqs):
            for t, token in enumerate(seq):
                key = prefix_key(torch.tensor([seq[:t]], dtype=torch.long).view(1, t))
                scores[:, j] += table[:, key[0], token]
        return scores

    return next_log_probs, exact


def test_trie_admits_exactly_the_catalogue():
    seqs = catalogue()
    trie = ItemTrie(seqs, range(1, len(seqs) + 1))
    assert sorted(trie.items().tolist()) == list(range(1, len(seqs) + 1))
    for item, seq in enumerate(seqs, start=1):
        assert trie.lookup(seq) == item
        assert trie.lookup(seq[:-1]) == 0  # a prefix without EOS is no item
    assert trie.lookup([5, 6, 11, 7, EOS]) == 0 and trie.lookup([6, 5, 2, EOS]) == 0
    with pytest.raises(ValueError, match="same token sequence"):
        ItemTrie([[5, EOS], [5, EOS]], [1, 2])


@pytest.mark.parametrize("beam", [3, 8, 30])
def test_beam_search_returns_valid_distinct_items_with_their_log_likelihood(beam):
    seqs = catalogue()
    n_items = len(seqs) + 1
    trie = ItemTrie(seqs, range(1, n_items))
    next_log_probs, exact = toy_decoder(4, beam, favour=(2, 7, 8, 9, 10))
    banned = torch.zeros(4, n_items, dtype=torch.bool)
    banned[0, [1, 2, 3]] = True
    banned[1, [1] + [trie.lookup(seq) for seq in seqs if seq[2] == 2]] = True  # a whole subtree: a dead end
    items, scores = constrained_beam_search(next_log_probs, trie, 4, beam, banned)
    truth = exact(seqs)
    for row in range(4):
        found = items[row][scores[row] > float("-inf")]
        assert len(found) == min(beam, n_items - 1 - int(banned[row].sum()))
        assert len(set(found.tolist())) == len(found) and (found > 0).all()
        assert not banned[row, found].any()
        assert torch.allclose(scores[row][:len(found)], truth[row, found - 1], atol=1e-5)
        assert (scores[row][:-1] >= scores[row][1:]).all()  # descending
        if beam >= n_items - 1:  # nothing pruned: the beam is the exact top-B
            allowed = truth[row].masked_fill(banned[row, 1:], float("-inf"))
            assert found.tolist() == (allowed.topk(len(found)).indices + 1).tolist()
