"""Task-head config and the modality-agnostic pieces heads are built from (pooling, pooled linear head)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mmsdk.config import Config, require
from mmsdk.tokens import TokenBatch

Task = Literal["forecast", "classification", "regression"]
Pooling = Literal["mean", "max", "mean_max", "first", "flatten"]


@dataclass
class HeadConfig(Config):
    """The fine-tuning task and its head."""

    task: Task = "classification"
    """forecast (future values), classification (class logits) or regression (real-valued targets)."""
    num_outputs: int = 2
    """Forecast horizon, number of classes, or number of regression targets."""
    pooling: Pooling | None = None
    """How token features become one vector: mean, max, mean_max, first (class token) or flatten; None = the
    adapter's default for the task (e.g. PatchTST flattens for forecasts and averages otherwise)."""
    dropout: float = 0.0
    """Dropout before the head's linear layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_outputs >= 1, self, "num_outputs", f"must be >= 1, got {self.num_outputs}")
        require(0.0 <= self.dropout < 1.0, self, "dropout", f"must be in [0, 1), got {self.dropout}")


def pool_tokens(hidden: Tensor, pooling: Pooling, padding_mask: Tensor | None = None) -> Tensor:
    """Pools (B, N, D) token features to (B, D) (or (B, 2D) for mean_max, (B, N·D) for flatten), ignoring
    padding."""
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


Encode = Callable[[Tensor], tuple[Tensor, TokenBatch]]
"""Raw inputs → (hidden (B, N, D), token batch): tokenize and run the backbone exactly as the task model does."""


class RolloutHead(nn.Module, ABC):
    """Base of heads that feed their own outputs back through the backbone (autoregressive generation).

    :class:`~mmsdk.models.TaskModel` calls ordinary heads as `head(hidden, batch)` and rollout heads as
    `head(hidden, batch, encode)`, where `encode` (see :data:`Encode`) re-runs tokenization and the encoder on new
    raw inputs (e.g. the context extended by a predicted patch). The backbone stays owned by the task model, so
    its weights are neither duplicated in the head nor hidden from checkpoints and `freeze_backbone`.
    """

    uses_context_features: bool = True
    """False for heads that re-encode a modified input from the start (e.g. the context extended by masked
    forecast slots): the task model then skips encoding the plain context and passes `hidden=None`."""

    @abstractmethod
    def forward(self, hidden: Tensor | None, batch: TokenBatch, encode: Encode) -> Tensor:
        """Task output from the features (B, N, D) of `batch`, calling `encode` for every further step."""


class PooledHead(nn.Module):
    """Pool tokens → dropout → linear: the generic classification/regression head."""

    def __init__(self, config: HeadConfig, dim: int, num_tokens: int | None = None) -> None:
        super().__init__()
        self.pooling: Pooling = config.pooling or "mean"
        width = {"mean_max": 2 * dim, "flatten": dim * (num_tokens or 0)}.get(self.pooling, dim)
        if width == 0:
            raise ValueError("HeadConfig.pooling='flatten' needs a fixed number of tokens")
        self.dropout = nn.Dropout(config.dropout)
        self.linear = nn.Linear(width, config.num_outputs)

    def forward(self, hidden: Tensor, batch: TokenBatch) -> Tensor:
        return self.linear(self.dropout(pool_tokens(hidden, self.pooling, batch.padding_mask)))  # (B, outputs)
