"""CL4SRec augmentations (recbole_llm.augmentation): kept items, padding, lengths, bad rates."""
import pytest
import torch

from recbole_llm.augmentation import item_crop, item_mask, item_reorder, random_augmentation

MASK = 99


def _batch(seed=0, batch=64, max_len=12):
    """Distinct item ids per row (so multisets identify items), varied lengths incl. 0 and full."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (batch,), generator=g)
    lengths[:3] = torch.tensor([0, 1, max_len])
    seq = torch.zeros(batch, max_len, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        seq[b, :n] = torch.randperm(50, generator=g)[:n] + 1
    return seq, lengths


def _assert_layout(seq, lengths):
    pos = torch.arange(seq.shape[1]).unsqueeze(0)
    inside = pos < lengths.unsqueeze(1)
    assert (seq[inside] != 0).all(), "padding emitted inside a sequence"
    assert (seq[~inside] == 0).all(), "item emitted after a sequence's end"


def test_crop_keeps_a_contiguous_run_of_floor_eta_n_items():
    seq, lengths = _batch()
    out, out_len = item_crop(seq, lengths, eta=0.6, generator=torch.Generator().manual_seed(1))
    _assert_layout(out, out_len)
    expected = torch.maximum(torch.floor(lengths * 0.6).long(), lengths.clamp_max(1))
    assert torch.equal(out_len, expected)
    for row, n, orig, m in zip(out, out_len.tolist(), seq, lengths.tolist()):
        run = row[:n].tolist()
        original = orig[:m].tolist()
        starts = [i for i in range(m - n + 1) if original[i:i + n] == run]
        assert starts, f"{run} is not a contiguous run of {original}"


def test_crop_starts_vary_and_cover_both_ends():
    seq = torch.arange(1, 11).repeat(2000, 1)
    lengths = torch.full((2000,), 10)
    out, _ = item_crop(seq, lengths, eta=0.5)
    assert set(out[:, 0].tolist()) == {1, 2, 3, 4, 5, 6}  # every start 0..5 drawn


def test_mask_replaces_exactly_floor_gamma_n_items_and_keeps_the_rest():
    seq, lengths = _batch(seed=2)
    out, out_len = item_mask(seq, lengths, gamma=0.3, mask_token=MASK,
                             generator=torch.Generator().manual_seed(3))
    _assert_layout(out, out_len)
    assert torch.equal(out_len, lengths)
    masked = out == MASK
    assert torch.equal(masked.sum(1), torch.floor(lengths * 0.3).long())
    assert torch.equal(out[~masked], seq[~masked])  # unmasked items are untouched, in place


def test_mask_rejects_padding_as_mask_token():
    seq, lengths = _batch()
    with pytest.raises(ValueError, match="mask_token"):
        item_mask(seq, lengths, gamma=0.3, mask_token=0)


def test_reorder_permutes_one_window_and_keeps_the_rest():
    seq, lengths = _batch(seed=4)
    out, out_len = item_reorder(seq, lengths, beta=0.5, generator=torch.Generator().manual_seed(5))
    _assert_layout(out, out_len)
    assert torch.equal(out_len, lengths)
    for row, orig, n in zip(out, seq, lengths.tolist()):
        assert sorted(row[:n].tolist()) == sorted(orig[:n].tolist())
        changed = (row[:n] != orig[:n]).nonzero().flatten().tolist()
        if changed:  # all moved items lie in one window of floor(beta * n) positions
            assert changed[-1] - changed[0] + 1 <= int(n * 0.5)


def test_reorder_actually_shuffles():
    seq = torch.arange(1, 11).repeat(200, 1)
    out, _ = item_reorder(seq, torch.full((200,), 10), beta=1.0)
    assert (out != seq).any(1).float().mean() > 0.9


def test_generator_makes_views_reproducible():
    seq, lengths = _batch(seed=6)
    a = random_augmentation(seq, lengths, 0.6, 0.3, 0.6, MASK, torch.Generator().manual_seed(7))
    b = random_augmentation(seq, lengths, 0.6, 0.3, 0.6, MASK, torch.Generator().manual_seed(7))
    c = random_augmentation(seq, lengths, 0.6, 0.3, 0.6, MASK, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_random_augmentation_mixes_all_three_per_sequence():
    seq = torch.arange(1, 11).repeat(600, 1)
    lengths = torch.full((600,), 10)
    out, out_len = random_augmentation(seq, lengths, eta=0.5, gamma=0.5, beta=1.0, mask_token=MASK,
                                       generator=torch.Generator().manual_seed(0))
    _assert_layout(out, out_len)
    cropped = out_len == 5
    masked = (out == MASK).any(1)
    reordered = ~cropped & ~masked
    assert not (cropped & masked).any()
    for kind in (cropped, masked, reordered):
        assert 150 < int(kind.sum()) < 250  # ~1/3 each
    assert (out[reordered] != seq[reordered]).any(1).all()
    assert torch.equal(seq, torch.arange(1, 11).repeat(600, 1))  # input untouched


@pytest.mark.parametrize("kwargs, name", [
    (dict(eta=1.5, gamma=0.3, beta=0.6), "eta"),
    (dict(eta=0.6, gamma=-0.1, beta=0.6), "gamma"),
    (dict(eta=0.6, gamma=0.3, beta=2), "beta"),
    (dict(eta="0.6", gamma=0.3, beta=0.6), "eta"),
])
def test_rates_out_of_range_raise_a_clear_error(kwargs, name):
    seq, lengths = _batch()
    with pytest.raises(ValueError, match=f"{name}.* must be a finite number in \\[0.0, 1.0\\]"):
        random_augmentation(seq, lengths, mask_token=MASK, **kwargs)


def test_lengths_longer_than_the_padded_sequence_raise():
    seq, lengths = _batch(max_len=5)
    with pytest.raises(ValueError, match="lengths must lie in"):
        item_crop(seq, lengths + 6, eta=0.5)
