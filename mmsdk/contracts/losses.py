"""Losses on masked tokens. Adapters pick one (or write their own); objectives call them, never a model's `forward`."""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_targets(targets: Tensor, value_mask: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Per-token normalized targets (MAE's `norm_pix_loss`): zero mean, unit variance over the last dim.

    With `value_mask` (B, N, P) the statistics use observed elements only; unobserved elements become 0.
    """
    if value_mask is None:
        mean = targets.mean(dim=-1, keepdim=True)
        var = targets.var(dim=-1, keepdim=True, unbiased=False)
        return (targets - mean) / (var + eps).sqrt()
    weight = value_mask.to(targets.dtype)
    count = weight.sum(dim=-1, keepdim=True).clamp_min(1.0)
    filled = torch.where(value_mask, targets, torch.zeros_like(targets))
    mean = filled.sum(dim=-1, keepdim=True) / count
    var = (((filled - mean) * weight) ** 2).sum(dim=-1, keepdim=True) / count
    return (filled - mean) / (var + eps).sqrt() * weight


def denormalize_like(pred: Tensor, targets: Tensor, eps: float = 1e-6) -> Tensor:
    """Maps per-token normalized predictions back to data units with the statistics of `targets` (the inverse of
    :func:`normalize_targets`, as MAE's visualization does for `norm_pix_loss` models): pred·std + mean.

    Only for pictures and diagnostics: it reads the true targets' per-token mean and std, which a real forecast of a
    hidden token would not know.
    """
    mean = targets.mean(dim=-1, keepdim=True)
    var = targets.var(dim=-1, keepdim=True, unbiased=False)
    return pred * (var + eps).sqrt() + mean


def masked_mean(values: Tensor, token_mask: Tensor, value_mask: Tensor | None = None) -> Tensor:
    """Mean of per-element values over hidden tokens (and observed elements).

    Args:
        values: (B, N, P) per-element losses.
        token_mask: (B, N) bool, True for the tokens that count (hidden, non-padding).
        value_mask: (B, N, P) bool, True for observed elements; None = all observed.

    Returns:
        Scalar; 0 (with a gradient path) when nothing counts.
    """
    weight = token_mask.unsqueeze(-1).to(values.dtype).expand_as(values)
    if value_mask is not None:
        weight = weight * value_mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse(
    pred: Tensor,
    target: Tensor,
    token_mask: Tensor,
    value_mask: Tensor | None = None,
    normalize: bool = False,
) -> Tensor:
    """Mean squared error on the hidden tokens only.

    Args:
        pred: (B, N, P) predictions.
        target: (B, N, P) targets.
        token_mask: (B, N) bool, True for hidden tokens (the ones the loss is about).
        value_mask: (B, N, P) bool observed elements, or None.
        normalize: normalize each target token first (per-patch normalized targets).
    """
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if normalize:
        target = normalize_targets(target, value_mask)
    target = torch.nan_to_num(target) if value_mask is not None else target
    return masked_mean((pred - target) ** 2, token_mask, value_mask)


def masked_mae(pred: Tensor, target: Tensor, token_mask: Tensor, value_mask: Tensor | None = None) -> Tensor:
    """Mean absolute error on the hidden tokens only (same arguments as :func:`masked_mse`)."""
    if pred.shape != target.shape:
        raise ValueError(f"masked_mae: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    target = torch.nan_to_num(target) if value_mask is not None else target
    return masked_mean((pred - target).abs(), token_mask, value_mask)


def pinball_loss(quantiles: Tensor, target: Tensor, levels: tuple[float, ...] | list[float]) -> Tensor:
    """Mean pinball (quantile) loss over levels and finite targets: `max(τ (y - q), (τ - 1) (y - q))`.

    Args:
        quantiles: (..., Q) predicted quantiles at `levels`.
        target: (...) targets; NaN = missing (left out).
        levels: Q levels in (0, 1).

    Returns:
        Scalar; 0 with a gradient path when no target is finite.
    """
    if quantiles.shape[:-1] != target.shape or quantiles.shape[-1] != len(levels):
        raise ValueError(
            f"pinball_loss: quantiles must be (*target.shape, Q) = {(*target.shape, len(levels))}, "
            f"got {tuple(quantiles.shape)}"
        )
    tau = torch.tensor(list(levels), dtype=quantiles.dtype, device=quantiles.device)
    finite = torch.isfinite(target).unsqueeze(-1)  # (..., 1)
    diff = torch.nan_to_num(target).unsqueeze(-1).to(quantiles.dtype) - quantiles  # (..., Q)
    loss = torch.maximum(tau * diff, (tau - 1) * diff) * finite
    return loss.sum() / (finite.sum() * len(levels)).clamp_min(1)
