"""The built-in tasks: forecast, regression, classification and multilabel (registered by name).

Each defines its loss and metrics on head outputs; adapters build the heads. Missing targets are NaN for the
real-valued tasks (forecast, regression, multilabel) and are left out of losses and metrics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmsdk.contracts.losses import pinball_loss
from mmsdk.contracts.registry import register_task
from mmsdk.contracts.tasks import FORECAST, QUANTILES, Outputs, Task


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
    """Future values (B, horizon, C) in data units; the head de-normalizes.

    With quantile levels (`HeadConfig.quantiles`) the head returns {"forecast": (B, H, C), "quantiles":
    (B, H, C, Q)}; the loss is the forecast's MSE plus the mean pinball loss of the quantiles (TimesFM's pairing
    of a mean head and quantile heads), and the metrics add the pinball loss and the coverage of the widest
    central interval (the share of targets between the lowest and highest level).
    """

    name = "forecast"
    output = "sequence"
    monitor = ("mse", "min")
    quantile_outputs = True

    def evaluate(self, outputs: Outputs, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(outputs, dict):
            if self.quantiles is not None:
                raise ValueError(f"a forecast head with quantiles {self.quantiles} must return {{forecast, quantiles}}")
            return super().evaluate(outputs, targets)
        point, quantiles = outputs[FORECAST], outputs[QUANTILES].float()
        mse, metrics = super().evaluate(point, targets)
        targets = self._targets(point, targets).to(quantiles.dtype)
        pinball = pinball_loss(quantiles, targets, self.quantiles or ())
        finite = torch.isfinite(targets)
        inside = (targets >= quantiles[..., 0]) & (targets <= quantiles[..., -1]) & finite
        coverage = inside.sum() / finite.sum().clamp_min(1)
        return mse + pinball, metrics | {"pinball": pinball, "coverage": coverage}

    def example_targets(self, outputs: Outputs, generator: torch.Generator | None = None) -> Tensor:
        return super().example_targets(outputs[FORECAST] if isinstance(outputs, dict) else outputs, generator)


@register_task
class Regression(_RealValued):
    """Real-valued targets (B, num_outputs)."""

    name = "regression"
    output = "vector"
    monitor = ("mse", "min")


@register_task
class Classification(Task):
    """One of `num_outputs` classes: logits (B, classes), integer class ids (B,) (or class probabilities
    (B, classes), e.g. from mixup), cross-entropy and accuracy."""

    name = "classification"
    output = "vector"
    monitor = ("acc", "max")

    def evaluate(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = outputs.float()
        if targets.is_floating_point() and targets.shape == outputs.shape:
            return self._evaluate_soft(logits, targets.float())
        if targets.is_floating_point() or targets.is_complex():
            raise ValueError(
                f"classification targets must be integer class ids (B,) or class probabilities of the head's shape "
                f"{tuple(outputs.shape)}, got dtype {targets.dtype} shape {tuple(targets.shape)}"
            )
        targets = targets.reshape(-1).long()
        if targets.shape[0] != outputs.shape[0]:
            raise ValueError(f"got {targets.shape[0]} class targets for a batch of {outputs.shape[0]} inputs")
        classes = outputs.shape[-1]
        if targets.numel() and (targets.min() < 0 or targets.max() >= classes):
            raise ValueError(f"class ids must be in [0, {classes}), got values in [{targets.min()}, {targets.max()}]")
        loss = F.cross_entropy(logits, targets)
        return loss, {"acc": (logits.argmax(-1) == targets).float().mean()}

    @staticmethod
    def _evaluate_soft(logits: Tensor, probs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Soft targets (B, classes), e.g. mixup's blends of two one-hot labels: cross-entropy against the
        distribution; accuracy counts the most probable class."""
        total = probs.sum(-1)
        if not bool(((probs >= 0).all()) & ((total - 1).abs() < 1e-3).all()):
            raise ValueError("soft classification targets must be non-negative and sum to 1 per sample")
        loss = F.cross_entropy(logits, probs)
        return loss, {"acc": (logits.argmax(-1) == probs.argmax(-1)).float().mean()}

    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, outputs.shape[-1], (outputs.shape[0],), generator=generator)


@register_task
class Multilabel(Task):
    """Any subset of `num_outputs` labels (audio tagging, multi-fault detection): logits (B, labels), targets of
    0/1 (B, labels) (soft values in [0, 1] from mixup) with NaN for unknown labels; binary cross-entropy per label,
    mean average precision (macro, over labels with a positive in the epoch) once per epoch."""

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
        if known.numel() and not bool(((known >= 0) & (known <= 1)).all()):
            raise ValueError("multilabel targets must be in [0, 1]: 0/1 labels, soft ones from mixup, NaN unknown")
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
        binary = (targets >= 0.5).float()  # soft (mixup) labels count as present from 0.5
        return outputs.float(), torch.where(torch.isfinite(targets), binary, -1.0).long()

    def example_targets(self, outputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (torch.rand(outputs.shape, generator=generator) < 0.5).float()
