"""Token budgets per modality (4M): static counts, disjoint inputs and targets, Dirichlet shares, availability."""

from __future__ import annotations

import pytest
import torch

from mmsdk.contracts.budgets import dirichlet_shares, draw_budget_mask, quotas
from mmsdk.contracts.masking import unshuffle

SLICES = {"a": slice(0, 20), "b": slice(20, 40), "c": slice(40, 60)}


def _draw(available: torch.Tensor, k_in: int = 12, k_t: int = 9, alpha: float = 1.0, seed: int = 0):
    return draw_budget_mask(available, SLICES, k_in, k_t, alpha, alpha, torch.Generator().manual_seed(seed))


def _counts(mask: torch.Tensor) -> torch.Tensor:
    return torch.stack([mask[:, where].sum(dim=1) for where in SLICES.values()], dim=1)  # (B, M)


def test_every_row_has_the_budgets_disjoint_and_on_available_tokens() -> None:
    available = torch.ones(64, 60, dtype=torch.bool)
    available[::2, 20:40] = False  # every other sample lacks modality b
    available[1::4, 55:] = False  # some padding at the end of c
    mask = _draw(available)
    inputs = ~mask.hidden
    assert mask.ids_keep.shape == (64, 12) and mask.target_ids.shape == (64, 9)
    assert bool(mask.keep_valid.all())  # every quota fits the tokens a modality has
    assert inputs.sum(1).eq(12).all() and torch.equal(mask.target.sum(1), mask.target_valid.sum(1))
    assert bool((mask.target_valid.sum(1) >= 5).all())  # targets may run short where the inputs took a modality
    assert not bool((inputs & mask.target).any())  # disjoint
    assert not bool(((inputs | mask.target) & ~available).any())  # never an absent or padding token
    assert torch.equal(torch.gather(inputs, 1, mask.ids_keep), mask.keep_valid)
    assert torch.equal(torch.gather(mask.target, 1, mask.target_ids), mask.target_valid)
    again = _draw(available)
    assert torch.equal(again.ids_keep, mask.ids_keep) and torch.equal(again.target_ids, mask.target_ids)
    assert not torch.equal(_draw(available, seed=1).ids_keep, mask.ids_keep)


def test_ids_restore_puts_the_inputs_back_in_place() -> None:
    mask = _draw(torch.ones(4, 60, dtype=torch.bool))
    x = torch.randn(4, 60, 3)
    kept = torch.gather(x, 1, mask.ids_keep.unsqueeze(-1).expand(-1, -1, 3))
    restored = unshuffle(kept, torch.zeros(3), mask.ids_restore)
    inputs = ~mask.hidden
    torch.testing.assert_close(restored[inputs], x[inputs])
    assert bool((restored[~inputs] == 0).all())


def test_alpha_sets_how_many_modalities_a_sample_mixes() -> None:
    available = torch.ones(400, 60, dtype=torch.bool)
    one = _counts(~_draw(available, alpha=0.0).hidden)
    assert bool(((one > 0).sum(dim=1) == 1).all())  # alpha 0: every input from one modality
    assert (one.sum(0).float() / one.sum()).sub(1 / 3).abs().max() < 0.08  # each modality chosen about as often
    even = _counts(~_draw(available, alpha=1e6).hidden)
    assert bool(((even - 4).abs() <= 1).all())  # alpha -> inf: equal shares of 12 = 4 each
    uniform = _counts(~_draw(available, alpha=1.0).hidden).float()
    assert uniform.std(dim=1).mean() > 1.0  # alpha 1 varies the mix per sample ...
    assert (uniform.mean(0) - 4).abs().max() < 0.5  # ... symmetrically


def test_a_mixture_of_alphas_draws_one_per_row() -> None:
    available = torch.ones(400, 60, dtype=torch.bool)
    mask = draw_budget_mask(available, SLICES, 12, 9, [0.0, 1e6], 1.0, torch.Generator().manual_seed(0))
    mixed = (_counts(~mask.hidden) > 0).sum(dim=1)
    assert set(mixed.tolist()) == {1, 3}  # one modality (alpha 0) or all three in equal shares (alpha -> inf)
    assert 0.4 < float((mixed == 1).float().mean()) < 0.6


def test_a_modality_that_runs_out_leaves_its_slots_empty() -> None:
    available = torch.ones(200, 60, dtype=torch.bool)
    available[:, 2:20] = False  # modality a has 2 tokens
    mask = _draw(available, k_in=30, alpha=1e6)
    counts = _counts(~mask.hidden)
    assert bool((counts == torch.tensor([2, 10, 10])).all())  # quotas 10 each; a has only 2
    assert bool((mask.keep_valid.sum(1) == 22).all())


def test_quotas_sum_to_the_budget_by_largest_remainder() -> None:
    shares = torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.55, 0.45], [0.0, 0.0, 1.0]])
    assert quotas(shares, 7).tolist() == [[4, 2, 1], [3, 2, 2], [0, 4, 3], [0, 0, 7]]


def test_rows_with_too_few_tokens_split_them_and_flag_empty_slots() -> None:
    available = torch.zeros(3, 60, dtype=torch.bool)
    available[0] = True
    available[1, :7] = True  # 7 tokens for budgets 12 + 9
    available[2, 40:41] = True  # a single token
    mask = _draw(available)
    assert mask.keep_valid[0].all() and mask.target_valid[0].all()
    assert int(mask.keep_valid[1].sum()) == 7 * 12 // 21 and int(mask.target_valid[1].sum()) == 7 - 7 * 12 // 21
    assert int(mask.keep_valid[2].sum()) == 1 and int(mask.target_valid[2].sum()) == 0
    assert not bool(((~mask.hidden | mask.target) & ~available).any())


def test_bad_budgets_are_errors() -> None:
    available = torch.ones(2, 60, dtype=torch.bool)
    with pytest.raises(ValueError, match="budgets must be >= 1"):
        _draw(available, k_in=0)
    with pytest.raises(ValueError, match="budgets must be >= 1"):
        _draw(available, k_t=0)
    shrunk = _draw(available, k_in=40, k_t=40)  # budgets above the 60 tokens shrink in their proportion
    assert shrunk.ids_keep.shape == (2, 30) and shrunk.target_ids.shape == (2, 30)
    with pytest.raises(ValueError, match="cannot hold an input and a target"):
        draw_budget_mask(torch.ones(2, 1, dtype=torch.bool), {"a": slice(0, 1)}, 1, 1)


def test_dirichlet_shares_sum_to_one_over_available_modalities() -> None:
    available = torch.tensor([[True, False, True], [False, False, True]])
    shares = dirichlet_shares(available, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(shares.sum(1), torch.ones(2))
    assert bool((shares[~available] == 0).all()) and float(shares[1, 2]) == pytest.approx(1.0)
