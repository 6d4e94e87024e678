"""What a training run prints: a progress bar with sensible epoch counts, and no third-party advertising."""

from __future__ import annotations

import logging

from lightning.pytorch.callbacks import RichProgressBar

_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropAdvertising(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_FILTER = _DropAdvertising()


def quiet_lightning() -> None:
    """Installs the filter once on the logger Lightning's rank-zero messages go through (idempotent)."""
    log = logging.getLogger(_RANK_ZERO_LOGGER)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, but a run bounded by steps (max_epochs = -1) shows "Epoch 3", not "Epoch 3/-2", and a
    run bounded by epochs shows them counted from 1 ("Epoch 4/10")."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        description = f"Epoch {current_epoch + 1}"
        if max_epochs is not None and max_epochs > 0:
            description += f"/{max_epochs}"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"  # no flicker against "Validation"
        return description
