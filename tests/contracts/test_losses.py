"""Masked losses: only hidden tokens and observed values count."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mmsdk.contracts.losses import masked_mae, masked_mean, masked_mse, normalize_targets


def test_masked_mse_counts_only_hidden_tokens() -> None:
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [100.0, 100.0], [3.0, 3.0]], [[2.0, 2.0], [50.0, 50.0], [0.0, 0.0]]])
    hidden = torch.tensor([[True, False, True], [True, False, False]])
    loss = masked_mse(pred, target, hidden)
    expected = (1 + 1 + 9 + 9 + 4 + 4) / 6
    torch.testing.assert_close(loss, torch.tensor(expected))


def test_masked_mse_counts_only_observed_values() -> None:
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[2.0, float("nan"), 4.0], [1e6, 1e6, 1e6]]])
    observed = torch.tensor([[[True, False, True], [True, True, True]]])
    hidden = torch.tensor([[True, False]])
    loss = masked_mse(pred, target, hidden, observed)
    torch.testing.assert_close(loss, torch.tensor((4.0 + 16.0) / 2))
    assert torch.isfinite(loss)


def test_masked_mae() -> None:
    pred = torch.ones(1, 3, 1)
    target = torch.tensor([[[3.0], [-1.0], [100.0]]])
    loss = masked_mae(pred, target, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(loss, torch.tensor(2.0))


def test_loss_gradient_only_reaches_hidden_tokens() -> None:
    pred = torch.randn(2, 4, 3, requires_grad=True)
    hidden = torch.tensor([[True, False, False, True], [False, False, True, False]])
    masked_mse(pred, torch.randn(2, 4, 3), hidden).backward()
    assert pred.grad is not None
    assert bool((pred.grad[~hidden] == 0).all())
    assert bool((pred.grad[hidden] != 0).any())


def test_nothing_hidden_gives_zero_with_gradient() -> None:
    pred = torch.randn(2, 3, 2, requires_grad=True)
    loss = masked_mse(pred, torch.randn(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and bool((pred.grad == 0).all())


def test_masked_mean_weights() -> None:
    values = torch.arange(8.0).view(1, 4, 2)
    token = torch.tensor([[True, True, False, False]])
    value = torch.tensor([[[True, False], [True, True], [True, True], [True, True]]])
    torch.testing.assert_close(masked_mean(values, token, value), torch.tensor((0.0 + 2.0 + 3.0) / 3))


def test_normalize_targets_zero_mean_unit_variance() -> None:
    targets = torch.randn(3, 5, 16) * 7 + 4
    norm = normalize_targets(targets)
    torch.testing.assert_close(norm.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-4, rtol=0)
    constant = normalize_targets(torch.full((1, 1, 4), 3.0))
    assert torch.isfinite(constant).all() and bool((constant == 0).all())


def test_masked_mse_normalize_uses_normalized_targets() -> None:
    target = torch.randn(2, 3, 8) * 5 + 10
    pred = normalize_targets(target)
    hidden = torch.ones(2, 3, dtype=torch.bool)
    assert float(masked_mse(pred, target, hidden, normalize=True)) < 1e-8
    assert float(masked_mse(pred, target, hidden)) > 1.0


def test_normalize_ignores_missing_values() -> None:
    target = torch.tensor([[[1.0, float("nan"), 3.0, 5.0]]])
    observed = ~torch.isnan(target)
    hidden = torch.ones(1, 1, dtype=torch.bool)
    observed_values = target[observed]
    expected = (observed_values - observed_values.mean()) / observed_values.std(unbiased=False)
    pred = torch.zeros_like(target)
    pred[observed] = expected
    assert float(masked_mse(pred, target, hidden, observed, normalize=True)) < 1e-6


@pytest.mark.parametrize("loss", [masked_mse, masked_mae])
def test_shape_mismatch_raises(loss: Callable[..., torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
