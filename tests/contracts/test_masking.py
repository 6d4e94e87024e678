"""Masking strategies: invertible, fixed kept counts, the right tokens hidden, deterministic when seeded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from mmsdk.contracts.mask_strategies import (
    MaskingConfig,
    apply_strategy,
    block_mask,
    group_mask,
    random_mask,
    tail_mask,
)
from mmsdk.contracts.masking import Mask, mask_from_noise, num_kept, unshuffle
from mmsdk.contracts.tokens import TokenBatch, gather_tokens

B, N = 4, 20
VARIATES, STEPS = 4, 5  # N = VARIATES * STEPS, variate-major


def _variate_ids() -> Tensor:
    return (torch.arange(N) // STEPS).expand(B, N).contiguous()


def _time_ids() -> Tensor:
    return (torch.arange(N) % STEPS).expand(B, N).contiguous()


def _batch(b: int = B, n: int = N, **ids: Tensor) -> TokenBatch:
    """A token batch of b x n tokens with the given ids (strategies read ids and padding, not the tokens)."""
    return TokenBatch(torch.zeros(b, n, 1), **ids)


STRATEGIES: dict[str, Callable[[torch.Generator | None], Mask]] = {
    "random": lambda g: random_mask(B, N, 0.6, generator=g),
    "block": lambda g: block_mask(B, N, 0.5, span=3, generator=g),
    "group": lambda g: group_mask(_variate_ids(), 0.4, generator=g),
    "tail": lambda g: tail_mask(B, N, 6),
    "tail_time_ids": lambda g: tail_mask(B, N, 2, time_ids=_time_ids()),
}


def _check_consistent(mask: Mask) -> None:
    """ids_keep, ids_restore and mask describe the same partition."""
    b, n = mask.hidden.shape
    k = mask.num_keep
    assert mask.ids_keep.shape == (b, k) and mask.ids_restore.shape == (b, n)
    assert bool((mask.hidden.sum(dim=1) == n - k).all())  # same kept count in every sequence
    assert not bool(torch.gather(mask.hidden, 1, mask.ids_keep).any())  # kept ids are exactly the visible tokens
    assert bool((mask.ids_restore.sort(dim=1).values == torch.arange(n)).all())  # a permutation


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_masks_are_invertible(name: str) -> None:
    mask = STRATEGIES[name](torch.Generator().manual_seed(1))
    _check_consistent(mask)
    x = torch.randn(B, N, 3)
    kept = gather_tokens(x, mask.ids_keep)  # (B, K, 3)
    hidden_ids = torch.stack([torch.nonzero(row).squeeze(-1) for row in mask.hidden])  # (B, N-K)
    # the hidden tokens in shuffled order: everything after the K kept ones
    shuffled = torch.argsort(mask.ids_restore, dim=1)  # ids_shuffle
    hidden = gather_tokens(x, shuffled[:, mask.num_keep :])
    assert set(shuffled[0, mask.num_keep :].tolist()) == set(hidden_ids[0].tolist())
    restored = gather_tokens(torch.cat([kept, hidden], dim=1), mask.ids_restore)
    torch.testing.assert_close(restored, x)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_unshuffle_puts_fill_exactly_at_hidden(name: str) -> None:
    mask = STRATEGIES[name](torch.Generator().manual_seed(2))
    x = torch.randn(B, N, 3) + 10.0  # never equal to the fill
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = unshuffle(gather_tokens(x, mask.ids_keep), fill, mask.ids_restore)
    assert out.shape == (B, N, 3)
    torch.testing.assert_close(out[mask.hidden], fill.expand(int(mask.hidden.sum()), 3))
    torch.testing.assert_close(out[~mask.hidden], x[~mask.hidden])


@pytest.mark.parametrize(("ratio", "expected"), [(0.4, 12), (0.75, 5), (0.0, 19), (1.0, 1), (0.99, 1), (0.01, 19)])
def test_random_mask_kept_count(ratio: float, expected: int) -> None:
    assert num_kept(N, ratio) == expected
    mask = random_mask(B, N, ratio)
    assert mask.num_keep == expected
    _check_consistent(mask)


def test_num_kept_single_token() -> None:
    assert num_kept(1, 0.5) == 1
    assert num_kept(2, 0.9) == 1 and num_kept(2, 0.1) == 1


def test_random_mask_is_random_per_sequence() -> None:
    mask = random_mask(8, N, 0.5)
    assert len({tuple(row.tolist()) for row in mask.hidden}) > 1


def test_seeded_generator_is_deterministic() -> None:
    for name, make in STRATEGIES.items():
        first = make(torch.Generator().manual_seed(7))
        second = make(torch.Generator().manual_seed(7))
        assert torch.equal(first.hidden, second.hidden), name
        assert torch.equal(first.ids_keep, second.ids_keep), name
    other = random_mask(B, N, 0.5, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other.hidden, random_mask(B, N, 0.5, generator=torch.Generator().manual_seed(7)).hidden)


def test_group_mask_hides_same_number_per_group() -> None:
    for seed in range(5):
        mask = group_mask(_variate_ids(), 0.4, generator=torch.Generator().manual_seed(seed))
        per_group = mask.hidden.view(B, VARIATES, STEPS).sum(dim=-1)  # (B, V)
        assert bool((per_group == 2).all()), per_group  # 40% of 5 tokens in each of 4 groups


def test_group_mask_with_interleaved_groups() -> None:
    groups = (torch.arange(N) % VARIATES).expand(B, N)  # time-major layout
    mask = group_mask(groups, 0.6, generator=torch.Generator().manual_seed(3))
    for g in range(VARIATES):
        assert bool((mask.hidden[:, groups[0] == g].sum(dim=1) == 3).all())


def test_block_mask_hides_contiguous_spans() -> None:
    span = 4
    mask = block_mask(B, N, 0.4, span=span, generator=torch.Generator().manual_seed(0))
    assert mask.num_keep == 12
    blocks = mask.hidden.view(B, N // span, span)
    hidden_per_block = blocks.sum(dim=-1)
    assert bool(((hidden_per_block == 0) | (hidden_per_block == span)).all())  # whole spans: 8 = 2 spans


def test_block_mask_partial_span_is_a_suffix() -> None:
    span = 4
    for seed in range(5):
        mask = block_mask(B, N, 0.5, span=span, generator=torch.Generator().manual_seed(seed))  # 10 hidden
        blocks = mask.hidden.view(B, N // span, span)
        counts = blocks.sum(dim=-1)
        partial = (counts > 0) & (counts < span)
        assert bool((partial.sum(dim=1) <= 1).all())
        for b, j in partial.nonzero().tolist():
            row = blocks[b, j]
            assert bool(row[span - int(counts[b, j]) :].all())  # hidden part is contiguous


def test_block_mask_differs_from_random_structure() -> None:
    mask = block_mask(1, 64, 0.5, span=8, generator=torch.Generator().manual_seed(0))
    changes = (mask.hidden[0, 1:] != mask.hidden[0, :-1]).sum()
    assert int(changes) <= 8  # 4 hidden spans of 8 at most 8 boundaries; random masking would have ~32


def test_tail_mask_hides_last_steps() -> None:
    mask = tail_mask(B, N, 6)
    expected = torch.arange(N) >= N - 6
    assert bool((mask.hidden == expected).all())
    assert bool((mask.ids_keep == torch.arange(N - 6)).all())


def test_tail_mask_with_time_ids_hides_last_steps_of_every_variate() -> None:
    times = _time_ids()
    mask = tail_mask(B, N, 2, time_ids=times)
    torch.testing.assert_close(mask.hidden, times >= STEPS - 2)
    assert mask.num_keep == VARIATES * (STEPS - 2)


def test_apply_strategy_dispatch() -> None:
    g = torch.Generator().manual_seed(0)
    random = apply_strategy(MaskingConfig("random", 0.5), _batch(), g)
    assert random.num_keep == 10
    block = apply_strategy(MaskingConfig("block", 0.4, span=4), _batch(), g)
    assert bool(((block.hidden.view(B, 5, 4).sum(-1) % 4) == 0).all())
    group = apply_strategy(MaskingConfig("group", 0.4), _batch(variate_ids=_variate_ids()), g)
    assert bool((group.hidden.view(B, VARIATES, STEPS).sum(-1) == 2).all())
    tail = apply_strategy(MaskingConfig("tail", 0.4), _batch(time_ids=_time_ids()))
    torch.testing.assert_close(tail.hidden, _time_ids() >= STEPS - 2)  # round(5 * 0.4) = 2 steps
    plain_tail = apply_strategy(MaskingConfig("tail", 0.25), _batch())
    assert int(plain_tail.hidden.sum(dim=1)[0]) == 5
    with pytest.raises(ValueError, match="group"):
        apply_strategy(MaskingConfig("group", 0.4), _batch(), g)


@pytest.mark.parametrize("strategy", ["random", "block", "group"])
def test_padding_is_dropped_before_real_tokens(strategy: str) -> None:
    real = torch.ones(B, N, dtype=torch.bool)
    real[0, -6:] = False
    real[1, :4] = False  # left padding
    real[2, ::3] = False  # scattered
    config = MaskingConfig(strategy, 0.5, span=2)  # type: ignore[arg-type]
    for seed in range(3):
        batch = _batch(padding_mask=real, variate_ids=_variate_ids())
        mask = apply_strategy(config, batch, torch.Generator().manual_seed(seed))
        _check_consistent(mask)
        assert bool(torch.gather(real, 1, mask.ids_keep).all())  # no padding among the kept tokens
        assert bool(mask.hidden[~real].all())  # every padded token is hidden (dropped)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="num_keep"):
        mask_from_noise(torch.rand(2, 5), 0)
    with pytest.raises(ValueError, match="num_keep"):
        mask_from_noise(torch.rand(2, 5), 6)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        mask_from_noise(torch.rand(2, 5, 1), 2)
    with pytest.raises(ValueError, match="num_keep"):
        tail_mask(B, N, N)  # nothing would stay visible


def test_group_mask_accepts_group_ids_larger_than_the_sequence() -> None:
    groups = torch.tensor([[7, 7, 9, 9]])
    mask = group_mask(groups, 0.5, generator=torch.Generator().manual_seed(0))
    assert int(mask.hidden[0, :2].sum()) == 1 and int(mask.hidden[0, 2:].sum()) == 1


def test_tail_mask_with_right_padding_hides_padding_and_the_last_real_steps() -> None:
    padding = torch.tensor([[True] * 6 + [False] * 2, [True] * 8])  # row 0 has 6 real tokens
    mask = tail_mask(2, 8, num_masked=2, padding_mask=padding)
    # row 0: real steps 4, 5 and both padded tokens hidden; row 1: its last steps, with the same kept count
    assert mask.hidden[0].tolist() == [False] * 4 + [True] * 4
    assert mask.hidden[1, 6:].all() and mask.num_keep == 4
    assert mask.hidden.sum(dim=1).tolist() == [4, 4]


def test_ratio_range_draws_within_bounds_and_is_seeded() -> None:
    from mmsdk.contracts.mask_strategies import draw_ratio

    config = MaskingConfig(strategy="random", ratio=0.15, ratio_max=0.5)
    draws = [draw_ratio(config, "cpu", torch.Generator().manual_seed(s)) for s in range(200)]
    assert all(0.15 <= r <= 0.5 for r in draws)
    assert max(draws) - min(draws) > 0.25  # actually varies across batches
    again = draw_ratio(config, "cpu", torch.Generator().manual_seed(7))
    assert again == draws[7]
    mask = apply_strategy(config, _batch(4, 40), torch.Generator().manual_seed(3))
    hidden = int(mask.hidden[0].sum())
    assert round(40 * 0.15) <= hidden <= round(40 * 0.5)


def test_ratio_max_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="ratio_max"):
        MaskingConfig(ratio=0.3, ratio_max=0.2)
    with pytest.raises(ValueError, match="ratio_max"):
        MaskingConfig(ratio=0.3, ratio_max=1.0)


def test_sample_tail_mask_hides_the_tail_of_every_packed_sample() -> None:
    from mmsdk.contracts.mask_strategies import sample_tail_mask

    # row 0: sample 0 with 2 variates x 4 steps, sample 1 with 1 variate x 10 steps, 2 padding tokens
    t0 = [0, 1, 2, 3, 0, 1, 2, 3, *range(10), 0, 0]
    s0 = [0] * 8 + [1] * 10 + [2, 2]
    # row 1: one sample of 20 steps
    t1 = list(range(20))
    s1 = [0] * 20
    time_ids = torch.tensor([t0, t1])
    sample_ids = torch.tensor([s0, s1])
    padding = torch.tensor([[True] * 18 + [False] * 2, [True] * 20])
    mask = sample_tail_mask(time_ids, sample_ids, 0.5, padding)
    hidden = mask.hidden
    # sample 0 hides steps 2, 3 of both variates; sample 1 hides steps 5..9; padding hidden
    expected0 = [False, False, True, True] * 2 + [False] * 5 + [True] * 5 + [True, True]
    assert hidden[0].tolist() == expected0
    # row 1 hides its last 10 steps, then also its latest visible steps to match row 0's count (11)
    assert int(hidden[1].sum()) == int(hidden[0].sum()) == 11
    assert hidden[1, 10:].all() and hidden[1, 9] and not hidden[1, :9].any()
    # kept tokens are exactly the visible ones
    kept = torch.zeros_like(hidden).scatter_(1, mask.ids_keep, True)
    assert torch.equal(kept, ~hidden)


def test_apply_strategy_tail_uses_sample_ids_when_packed() -> None:
    time_ids = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    sample_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    config = MaskingConfig(strategy="tail", ratio=0.25)
    packed = apply_strategy(config, _batch(1, 8, time_ids=time_ids, sample_ids=sample_ids))
    assert packed.hidden[0].tolist() == [False, False, False, True] * 2
