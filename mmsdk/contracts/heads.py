"""The head contract: the fine-tuning head config, and the rollout heads that re-enter the backbone.

Adapters build heads (:meth:`~mmsdk.contracts.adapter.Adapter.build_head`) for the tasks they list; a head is
called as `head(hidden (B, N, D), batch)` on its modality's features, or, for a :class:`RolloutHead`, as
`head(hidden, batch, encode)`.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from mmsdk.config import Config, require
from mmsdk.contracts.registry import TASKS
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.pooling import PooledHead, Pooling


@dataclass
class HeadConfig(Config):
    """The fine-tuning task and its head."""

    task: str = "classification"
    """A registered task: forecast (future values), classification (class logits), regression (real-valued
    targets), multilabel (independent label logits), or one another package registers."""
    num_outputs: int = 2
    """Forecast horizon, number of classes or labels, or number of regression targets."""
    pooling: Pooling | None = None
    """How token features become one vector: mean, max, mean_max, first (class token) or flatten; None = the
    adapter's default for the task (e.g. PatchTST flattens for forecasts and averages otherwise)."""
    dropout: float = 0.0
    """Dropout before the head's linear layer."""
    modality: str | None = None
    """Which modality's features the head reads, for models of several modalities (None: the only one)."""
    labels: tuple[str, ...] | None = None
    """Names of the classes or labels, in output order (saved with the model and written into exported ONNX
    metadata); None = unnamed. Recipes fill them from the dataset's class names when left out."""
    quantiles: tuple[float, ...] | None = None
    """Quantile levels a forecast head also predicts, increasing in (0, 1), e.g. (0.1, 0.2, ..., 0.9). The model
    then returns (and exports) two named outputs: "forecast" (B, H, C) and "quantiles" (B, H, C, Q). Heads with
    their own distribution (Moirai) read the quantiles off it and their point forecast stays the mixture's mean; the
    others (PatchTST, Timer-XL) learn them with the pinball loss beside a point forecast trained as before (MSE).
    None = a point forecast only."""
    quantile_scales: tuple[float, ...] | None = None
    """Per-level factors that widen (> 1) or narrow (< 1) each quantile's distance from the point forecast, one per
    level of `quantiles`, fitted on held-out windows by `mmsdk.calibrate_quantiles` (recalibration after training;
    the exported graph applies them too). None = the quantiles as trained."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.task in TASKS, self, "task", f"unknown task {self.task!r}; known: {TASKS.names()}")
        require(self.num_outputs >= 1, self, "num_outputs", f"must be >= 1, got {self.num_outputs}")
        require(0.0 <= self.dropout < 1.0, self, "dropout", f"must be in [0, 1), got {self.dropout}")
        if self.labels is not None:
            self.labels = tuple(str(label) for label in self.labels)
            require(
                len(self.labels) == self.num_outputs,
                self,
                "labels",
                f"names {len(self.labels)} labels but num_outputs={self.num_outputs}",
            )
        if self.quantiles is not None:
            self._check_quantiles()
        if self.quantile_scales is not None:
            scales = self.quantile_scales = tuple(float(v) for v in self.quantile_scales)
            levels = len(self.quantiles or ())
            require(levels > 0, self, "quantile_scales", "needs quantiles: scales recalibrate a head's quantile levels")
            require(len(scales) == levels, self, "quantile_scales", f"needs one per level ({levels}): {len(scales)}")
            require(all(0.0 < v < float("inf") for v in scales), self, "quantile_scales", f"must be > 0, got {scales}")

    def _check_quantiles(self) -> None:
        levels = self.quantiles = tuple(float(q) for q in self.quantiles or ())
        task = TASKS.get(self.task)
        require(
            getattr(task, "quantile_outputs", False),
            self,
            "quantiles",
            f"task {self.task!r} has no quantile outputs (forecast has)",
        )
        require(len(levels) > 0, self, "quantiles", "name at least one level, e.g. [0.1, 0.5, 0.9] (or leave it out)")
        require(all(0.0 < q < 1.0 for q in levels), self, "quantiles", f"levels must lie in (0, 1), got {list(levels)}")
        require(
            all(a < b for a, b in itertools.pairwise(levels)),
            self,
            "quantiles",
            f"levels must be strictly increasing, got {list(levels)}",
        )


class TokenPooledHead(PooledHead):
    """A pooled head for tokens whose count follows the input size (AST, VideoMAE): pool the real tokens (mean by
    default) or read the class token (`pooling: first`) → LayerNorm → dropout → linear, (B, N, D) → (B, outputs).

    Raises:
        ValueError: for `pooling: flatten`, whose width would change with the input size.
    """

    def __init__(self, head: HeadConfig, dim: int) -> None:
        pooling: Pooling = head.pooling or "mean"
        if pooling == "flatten":
            raise ValueError(
                f"HeadConfig.pooling={pooling!r}: the token count follows the input size; use mean, max, "
                "mean_max or first (the class token)"
            )
        super().__init__(dim, head.num_outputs, pooling, head.dropout)

    def forward(self, hidden: Tensor, batch: TokenBatch) -> Tensor:  # type: ignore[override]
        return super().forward(hidden, batch.padding_mask, batch.class_features)  # (B, outputs)


Encode = Callable[[Tensor], tuple[Tensor, TokenBatch]]
"""Raw inputs of the head's modality → (hidden (B, N, D), token batch) of that modality: tokenize and run the
backbone exactly as the task model does (other modalities' inputs stay as they were)."""


class RolloutHead(nn.Module, ABC):
    """Base of heads that feed their own outputs back through the backbone (autoregressive generation).

    :class:`~mmsdk.models.task_model.TaskModel` calls ordinary heads as `head(hidden, batch)` and rollout heads
    as `head(hidden, batch, encode)`, where `encode` (see :data:`Encode`) re-runs tokenization and the encoder on
    new raw inputs (e.g. the context extended by a predicted patch). The backbone stays owned by the task model, so
    its weights are neither duplicated in the head nor hidden from checkpoints and `freeze_backbone`.
    """

    uses_context_features: bool = True
    """False for heads that re-encode a modified input from the start (e.g. the context extended by masked
    forecast slots): the task model then skips encoding the plain context and passes `hidden=None`."""

    @abstractmethod
    def forward(self, hidden: Tensor | None, batch: TokenBatch, encode: Encode) -> Tensor:
        """Task output from the features (B, N, D) of `batch`, calling `encode` for every further step."""
