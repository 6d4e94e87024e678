"""Stochastic depth (drop path) for residual branches."""

from __future__ import annotations

from torch import Tensor, nn


class DropPath(nn.Module):
    """Drops the whole residual branch per sample with probability p during training (identity in eval)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        if keep == 0.0:
            return x * 0.0
        noise = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(keep)  # (B, 1, ..., 1)
        return x * noise / keep
