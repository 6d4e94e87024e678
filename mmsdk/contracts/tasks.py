"""The task contract: what a fine-tuning head outputs, the loss that trains it and the metrics that judge it.

A task is registered by name (entry-point group `mmsdk.tasks`, or
:func:`~mmsdk.contracts.registry.register_task`) and named by `HeadConfig.task`. The head itself is built by the
adapter (:meth:`~mmsdk.contracts.adapter.Adapter.build_head`), which knows the token geometry; the task knows the
output's meaning. The built-in tasks (forecast, regression, classification, multilabel) are in
:mod:`mmsdk.models.tasks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from mmsdk.contracts.registry import TASKS, concrete_subclass_of

Output = Literal["vector", "sequence"]

FORECAST, QUANTILES = "forecast", "quantiles"
"""Output names of a head with quantiles (`HeadConfig.quantiles`): the point forecast (B, H, C) and the quantiles
(B, H, C, Q), returned as a dict in this order and exported as two named ONNX outputs."""

Outputs = Tensor | dict[str, Tensor]
"""What a head returns: one tensor, or named tensors (the first is the primary output)."""


class Task(ABC):
    """A fine-tuning task for heads with `num_outputs` outputs.

    Class attributes:
        name: the registry name (`HeadConfig.task`).
        output: "vector" for (B, num_outputs) outputs (pooled heads: classes, labels, regression targets) or
            "sequence" for (B, num_outputs, C) outputs (forecasts of C variables).
        monitor: the validation metric that `select_best` should watch, and whether lower is better.
        quantile_outputs: whether heads of the task may also predict quantiles (`HeadConfig.quantiles`); the task
            is then built with the levels and scores the {"forecast", "quantiles"} outputs.
    """

    name: ClassVar[str]
    output: ClassVar[Output] = "vector"
    monitor: ClassVar[tuple[str, Literal["min", "max"]]] = ("loss", "min")
    quantile_outputs: ClassVar[bool] = False

    def __init__(self, num_outputs: int, quantiles: tuple[float, ...] | None = None) -> None:
        self.num_outputs = num_outputs
        self.quantiles = quantiles

    @classmethod
    def from_head(cls, head: Any) -> Task:
        """The task of a :class:`~mmsdk.contracts.heads.HeadConfig`: its outputs and quantile levels."""
        return cls(head.num_outputs, getattr(head, "quantiles", None))

    @abstractmethod
    def evaluate(self, outputs: Outputs, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, per-batch metrics) of a batch; metrics are averaged over an epoch weighted by batch size.

        Raises:
            ValueError: for targets of the wrong shape, dtype or range for this task (naming what was expected).
        """

    def epoch_metrics(self) -> dict[str, Any]:
        """Metrics that do not average over batches (e.g. mean average precision), as fresh `torchmetrics`
        metrics; the training system updates them with :meth:`metric_inputs` and logs them once per epoch."""
        return {}

    def metric_inputs(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(predictions, targets) in the form the :meth:`epoch_metrics` take."""
        return outputs, targets

    @abstractmethod
    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Valid random targets for a batch of head outputs (the contract tests train every head on them)."""


TASKS.set_check(concrete_subclass_of(Task))
