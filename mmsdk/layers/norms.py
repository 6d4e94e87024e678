"""Normalization layers by name: LayerNorm, RMSNorm, and BatchNorm over the features of (B, N, D) tokens."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

NormKind = Literal["layernorm", "rmsnorm", "batchnorm"]


class BatchNorm(nn.Module):
    """BatchNorm1d over the feature axis of (B, N, D) tokens (PatchTST's "batchnorm"; statistics over B·N).

    Statistics include every token of the batch, padding too, so it suits fixed-length inputs (patched series)
    rather than padded variable-length ones. In eval mode it applies the running statistics.

    The tokens are normalized as (B·N, D) rows, a free reshape, rather than as (B, D, N) through two transposes:
    the same statistics, with no copies in training and no Transpose nodes in an exported graph.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.batchnorm(x.reshape(-1, x.shape[-1])).view_as(x)  # (B·N, D) rows: BatchNorm1d's (N, C) form


def build_norm(kind: NormKind, dim: int, eps: float = 1e-6) -> nn.Module:
    """LayerNorm, RMSNorm or token BatchNorm by name."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    if kind == "batchnorm":
        return BatchNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose layernorm, rmsnorm or batchnorm")
