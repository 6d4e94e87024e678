"""Pooling token features (B, N, D) into one vector per sequence, ignoring padding."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Pooling = Literal["mean", "max", "mean_max", "first", "flatten"]


def pool_tokens(hidden: Tensor, pooling: Pooling, padding_mask: Tensor | None = None) -> Tensor:
    """Pools (B, N, D) token features to (B, D) (or (B, 2D) for mean_max, (B, N·D) for flatten), ignoring
    padding (`padding_mask` (B, N) bool, True = real)."""
    if pooling == "flatten":
        return hidden.flatten(1)
    if pooling == "first":
        return hidden[:, 0]
    weight = None if padding_mask is None else padding_mask.unsqueeze(-1).to(hidden.dtype)  # (B, N, 1)
    if weight is None:
        mean, peak = hidden.mean(dim=1), hidden.amax(dim=1)
    else:
        mean = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        peak = hidden.masked_fill(weight == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    if pooling == "mean":
        return mean
    if pooling == "max":
        return peak
    return torch.cat([mean, peak], dim=-1)
