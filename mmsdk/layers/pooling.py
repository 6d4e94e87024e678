"""Pooling token features (B, N, D) into one vector per sequence, ignoring padding, and the pooled linear head."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Pooling = Literal["mean", "max", "mean_max", "first", "flatten"]


def pool_tokens(
    hidden: Tensor, pooling: Pooling, padding_mask: Tensor | None = None, class_features: Tensor | None = None
) -> Tensor:
    """Pools (B, N, D) token features to (B, D) (or (B, 2D) for mean_max, (B, N·D) for flatten), ignoring
    padding (`padding_mask` (B, N) bool, True = real). "first" takes the first class token's features
    (`class_features` (B, P, D)); the other poolings never include class tokens (timm's convention).

    Raises:
        ValueError: for "first" without class features.
    """
    if pooling == "flatten":
        return hidden.flatten(1)
    if pooling == "first":
        if class_features is None:
            raise ValueError("pooling 'first' reads the class token: the model needs ModelConfig.class_tokens >= 1")
        return class_features[:, 0]
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


class PooledHead(nn.Module):
    """AST/VideoMAE's classification head: pool the tokens (mean over real tokens by default) → LayerNorm →
    dropout → linear, (B, N, D) → (B, outputs)."""

    def __init__(
        self, dim: int, num_outputs: int, pooling: Pooling = "mean", dropout: float = 0.0, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.pooling: Pooling = pooling
        width = 2 * dim if pooling == "mean_max" else dim
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(width, num_outputs)

    def forward(
        self, hidden: Tensor, padding_mask: Tensor | None = None, class_features: Tensor | None = None
    ) -> Tensor:
        pooled = pool_tokens(hidden, self.pooling, padding_mask, class_features)  # (B, D)
        return self.linear(self.dropout(self.norm(pooled)))  # (B, outputs)
