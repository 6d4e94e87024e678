"""Point and probabilistic forecast metrics over observed targets (NaN = missing, left out everywhere).

Shapes: forecasts and targets (B, H, C); quantile forecasts (Q, B, H, C) at `levels` (Q,) in (0, 1); contexts
(B, L, C) for the scaled errors. Every function returns a float averaged over the observed target values.

- `mase`: MAE scaled by the in-sample MAE of the seasonal naive forecast on each window's own context (per window
  and channel, as in Chronos' and the M4 protocol), averaged over windows and channels.
- `weighted_quantile_loss`: the pinball loss summed over levels, times 2, divided by the sum of |target| (the
  "mean weighted quantile loss" of GluonTS / Chronos when divided by the number of levels; we report that mean).
- `crps_from_quantiles`: the continuous ranked probability score estimated from quantiles: CRPS = 2 ∫ pinball_τ dτ,
  approximated by the average pinball loss over evenly spread levels, times 2 (exact as the levels fill (0, 1)).
- `interval_coverage`: the share of observed targets inside [lower, upper].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _observed(target: Tensor) -> Tensor:
    return torch.isfinite(target)


def _check_levels(quantiles: Tensor, levels: Sequence[float], target: Tensor) -> Tensor:
    if quantiles.dim() != target.dim() + 1 or quantiles.shape[0] != len(levels) or quantiles.shape[1:] != target.shape:
        raise ValueError(
            f"quantiles must be (Q={len(levels)}, *target.shape={tuple(target.shape)}), got {tuple(quantiles.shape)}"
        )
    tau = torch.tensor(list(levels), dtype=torch.float64)
    if not bool(((tau > 0) & (tau < 1)).all()):
        raise ValueError(f"quantile levels must lie in (0, 1), got {list(levels)}")
    return tau.view(-1, *([1] * target.dim()))


def pinball(quantiles: Tensor, levels: Sequence[float], target: Tensor) -> Tensor:
    """Pinball (quantile) loss per level and value: (Q, *target.shape), 0 at unobserved targets."""
    tau = _check_levels(quantiles, levels, target)
    y = torch.nan_to_num(target.double()).unsqueeze(0)
    diff = y - quantiles.double()
    loss = torch.maximum(tau * diff, (tau - 1) * diff)
    return torch.where(_observed(target).unsqueeze(0), loss, torch.zeros_like(loss))


def weighted_quantile_loss(quantiles: Tensor, levels: Sequence[float], target: Tensor) -> float:
    """Mean over levels of 2 · Σ pinball_τ / Σ |target| (GluonTS' mean weighted quantile loss)."""
    scale = torch.nan_to_num(target.double()).abs().sum().clamp_min(1e-12)
    per_level = 2 * pinball(quantiles, levels, target).flatten(1).sum(1) / scale
    return float(per_level.mean())


def crps_from_quantiles(quantiles: Tensor, levels: Sequence[float], target: Tensor) -> float:
    """CRPS estimated as 2 · mean over levels of the pinball loss, averaged over observed values (data units)."""
    count = _observed(target).sum().clamp_min(1)
    return float(2 * pinball(quantiles, levels, target).mean(0).sum() / count)


def interval_coverage(lower: Tensor, upper: Tensor, target: Tensor) -> float:
    """The share of observed targets with lower <= target <= upper (0.8 for a calibrated 10 %–90 % interval)."""
    observed = _observed(target)
    inside = (target >= lower) & (target <= upper) & observed
    return float(inside.sum() / observed.sum().clamp_min(1))


def mase(forecast: Tensor, target: Tensor, context: Tensor, period: int = 1) -> float:
    """Mean absolute scaled error: each window's and channel's MAE over the MAE of its context's period-step
    differences (the in-sample seasonal naive error); windows whose context has no such pair are left out.

    Raises:
        ValueError: for a context not longer than `period`.
    """
    if context.shape[1] <= period:
        raise ValueError(f"MASE with period {period} needs contexts longer than {period} steps, got {context.shape[1]}")
    steps = (context[:, period:] - context[:, :-period]).double().abs()  # (B, L - m, C)
    finite = torch.isfinite(steps)
    scale = torch.where(finite, steps, torch.zeros_like(steps)).sum(1) / finite.sum(1).clamp_min(1)  # (B, C)
    observed = _observed(target)
    errors = torch.where(observed, (forecast - torch.nan_to_num(target)).double().abs(), torch.zeros_like(forecast))
    mae = errors.sum(1) / observed.sum(1).clamp_min(1)  # (B, C)
    valid = (finite.sum(1) > 0) & (scale > 0) & (observed.sum(1) > 0)
    if not bool(valid.any()):
        return float("nan")
    return float((mae[valid] / scale[valid]).mean())


def forecast_metrics(
    mean: Tensor,
    target: Tensor,
    context: Tensor,
    quantiles: Tensor | None = None,
    levels: Sequence[float] = (),
    period: int = 1,
) -> dict[str, float]:
    """MSE, MAE, MASE and, with quantiles, weighted quantile loss, CRPS and the coverage of the outermost interval
    (e.g. levels 0.1 … 0.9 give the 80 % interval's coverage, `coverage_80`)."""
    observed = _observed(target)
    diff = torch.where(
        observed, (mean - torch.nan_to_num(target)).double(), torch.zeros_like(mean, dtype=torch.float64)
    )
    count = observed.sum().clamp_min(1)
    out = {"mse": float((diff**2).sum() / count), "mae": float(diff.abs().sum() / count)}
    out["mase"] = mase(mean, target, context, period)
    if quantiles is not None:
        out["wql"] = weighted_quantile_loss(quantiles, levels, target)
        out["crps"] = crps_from_quantiles(quantiles, levels, target)
        low, high = min(range(len(levels)), key=lambda i: levels[i]), max(range(len(levels)), key=lambda i: levels[i])
        width = round(100 * (levels[high] - levels[low]))
        out[f"coverage_{width}"] = interval_coverage(quantiles[low], quantiles[high], target)
    return out
