"""Training that survives a diverging step: non-finite losses and gradients skip the update instead of poisoning
the weights, and a run that keeps diverging stops with a message that says where and why.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from mmsdk.hub.integrity import first_nonfinite, nonfinite_summary

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """Training stopped because its loss, gradients or weights stopped being finite."""


def _learning_rate(trainer: L.Trainer) -> float:
    try:
        return float(trainer.optimizers[0].param_groups[0]["lr"])
    except (IndexError, KeyError, AttributeError):
        return math.nan


def _last_good_checkpoint(trainer: L.Trainer) -> str | None:
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and (callback.last_model_path or callback.best_model_path):
            return callback.last_model_path or callback.best_model_path
    return None


def divergence_message(trainer: L.Trainer, what: str, loss: float | None) -> str:
    """One message naming the step, the loss, the learning rate and the checkpoint to go back to."""
    loss_text = "unknown" if loss is None else f"{loss:.6g}"
    message = (
        f"training diverged at step {trainer.global_step}: {what} (loss {loss_text}, learning rate "
        f"{_learning_rate(trainer):.3g}); lower optim.lr, raise optim.warmup_steps or set trainer.gradient_clip_val"
    )
    good = _last_good_checkpoint(trainer)
    return message + (f"; the last good checkpoint is {good}" if good else "")


class NonFiniteGuard(Callback):
    """Skips optimizer steps whose loss or gradients are NaN/Inf and stops after `max_consecutive` in a row.

    A skipped step drops the gradients before the optimizer sees them (the optimizer then updates nothing, its
    moments stay as they were); the learning-rate schedule still advances. Skips are counted and logged as
    `train/nonfinite_steps`. Under 16-mixed precision the gradient scaler already skips overflowing steps (they
    are expected while it calibrates), so those are neither skipped again nor counted.

    Args:
        max_consecutive: non-finite steps in a row after which training stops with :class:`TrainingDivergedError`.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f"NonFiniteGuard.max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))

    @staticmethod
    def _grads_finite(pl_module: L.LightningModule) -> bool:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return True
        norms = torch._foreach_norm(grads)  # one fused pass; a NaN or Inf anywhere makes its norm non-finite
        return bool(torch.isfinite(torch.stack(norms)).all())

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.precision == "16-mixed":
            return
        loss = getattr(pl_module, "last_loss", None)
        loss_value = None if loss is None else float(loss)
        finite = (loss_value is None or math.isfinite(loss_value)) and self._grads_finite(pl_module)
        if finite:
            self.consecutive = 0
            return
        optimizer.zero_grad(set_to_none=True)  # nothing to update: AdamW/SGD skip parameters without gradients
        self.skipped += 1
        self.consecutive += 1
        pl_module.log("train/nonfinite_steps", float(self.skipped), on_step=True, on_epoch=False)
        logger.warning(
            "step %d: non-finite loss or gradient (loss %s), optimizer step skipped (%d in a row)",
            trainer.global_step,
            loss_value,
            self.consecutive,
        )
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                divergence_message(
                    trainer,
                    f"{self.consecutive} optimizer steps in a row had a non-finite loss or gradient",
                    loss_value,
                )
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bad = first_nonfinite(pl_module.state_dict())
        if bad is not None:
            raise TrainingDivergedError(
                divergence_message(
                    trainer, f"the weights are not finite ({nonfinite_summary(bad, pl_module.state_dict()[bad])})", None
                )
            )
        if self.skipped:
            logger.warning("%d optimizer step(s) were skipped for a non-finite loss or gradient", self.skipped)
