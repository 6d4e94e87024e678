"""The built-in tasks: forecast, regression, classification and multilabel (registered by name).

Each defines its loss and metrics on head outputs; adapters build the heads. Missing targets are NaN for the
real-valued tasks (forecast, regression, multilabel) and are left out of losses and metrics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmsdk.contracts.registry import register_task
from mmsdk.contracts.tasks import Task


class _RealValued(Task):
    """MSE loss, MSE and MAE metrics over finite targets only (NaN = missing)."""

    def _targets(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if targets.dim() == 1 and outputs.shape == (len(targets), 1):
            targets = targets.unsqueeze(-1)  # (B,) targets of a single-output head
        if targets.shape != outputs.shape:
            raise ValueError(
                f"{self.name} targets have shape {tuple(targets.shape)} but the head predicts "
                f"{tuple(outputs.shape)}; check HeadConfig.num_outputs and the dataset's targets"
            )
        if not targets.is_floating_point():
            targets = targets.float()
        return targets

    def evaluate(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = outputs.float()
        targets = self._targets(outputs, targets)
        finite = torch.isfinite(targets)
        count = finite.sum().clamp_min(1)
        diff = torch.where(finite, outputs - torch.nan_to_num(targets.to(outputs.dtype)), torch.zeros_like(outputs))
        mse = (diff**2).sum() / count
        return mse, {"mse": mse, "mae": diff.abs().sum() / count}

    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(outputs.shape, generator=generator)


@register_task
class Forecast(_RealValued):
    """Future values (B, horizon, C) in data units; the head de-normalizes."""

    name = "forecast"
    output = "sequence"
    monitor = ("mse", "min")


@register_task
class Regression(_RealValued):
    """Real-valued targets (B, num_outputs)."""

    name = "regression"
    output = "vector"
    monitor = ("mse", "min")


@register_task
class Classification(Task):
    """One of `num_outputs` classes: logits (B, classes), integer class ids (B,), cross-entropy and accuracy."""

    name = "classification"
    output = "vector"
    monitor = ("acc", "max")

    def evaluate(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if targets.is_floating_point() or targets.is_complex():
            raise ValueError(f"classification targets must be integer class ids, got dtype {targets.dtype}")
        targets = targets.reshape(-1).long()
        if targets.shape[0] != outputs.shape[0]:
            raise ValueError(f"got {targets.shape[0]} class targets for a batch of {outputs.shape[0]} inputs")
        classes = outputs.shape[-1]
        if targets.numel() and (targets.min() < 0 or targets.max() >= classes):
            raise ValueError(f"class ids must be in [0, {classes}), got values in [{targets.min()}, {targets.max()}]")
        logits = outputs.float()
        loss = F.cross_entropy(logits, targets)
        return loss, {"acc": (logits.argmax(-1) == targets).float().mean()}

    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, outputs.shape[-1], (outputs.shape[0],), generator=generator)


@register_task
class Multilabel(Task):
    """Any subset of `num_outputs` labels (audio tagging, multi-fault detection): logits (B, labels), targets of
    0/1 (B, labels) with NaN for unknown labels; binary cross-entropy per label, mean average precision (macro, over
    labels with a positive in the epoch) once per epoch."""

    name = "multilabel"
    output = "vector"
    monitor = ("map", "max")

    def _targets(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if targets.shape != outputs.shape:
            raise ValueError(
                f"multilabel targets must be (batch, labels) = {tuple(outputs.shape)} of 0/1, got shape "
                f"{tuple(targets.shape)}"
            )
        targets = targets.float()
        known = targets[torch.isfinite(targets)]
        if known.numel() and not bool(((known == 0) | (known == 1)).all()):
            raise ValueError("multilabel targets must be 0 or 1 (NaN for unknown labels)")
        return targets

    def evaluate(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = outputs.float()
        targets = self._targets(logits, targets)
        known = torch.isfinite(targets)
        losses = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
        loss = (losses * known).sum() / known.sum().clamp_min(1)
        hits = ((logits > 0) == (targets > 0.5)) & known
        return loss, {"label_acc": hits.sum() / known.sum().clamp_min(1)}

    def epoch_metrics(self) -> dict[str, Any]:
        from torchmetrics.classification import MultilabelAveragePrecision

        # ignore_index: unknown labels (NaN targets) become -1 in `metric_inputs`
        return {"map": MultilabelAveragePrecision(num_labels=self.num_outputs, average="macro", ignore_index=-1)}

    def metric_inputs(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        targets = self._targets(outputs, targets)
        return outputs.float(), torch.where(torch.isfinite(targets), targets, -1.0).long()

    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (torch.rand(outputs.shape, generator=generator) < 0.5).float()
