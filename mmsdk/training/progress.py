"""What a training run prints: a progress bar with sensible epoch counts, and no third-party advertising."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import RichProgressBar

_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropAdvertising(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_FILTER = _DropAdvertising()
# Lightning warnings that say nothing to an mmsdk user: an internal deprecation inside Lightning itself, the
# validation loop being skipped when no validation data was given (validation is optional in every mmsdk call), and
# an epoch shorter than the logging interval (Lightning counts that interval over the run's steps, not within an
# epoch, so short epochs are still logged every `log_every_n_steps`).
_MUTED_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"You defined a `validation_step` but have no `val_dataloader`",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


def quiet_lightning() -> None:
    """Drops Lightning's advertising and the warnings above (idempotent)."""
    log = logging.getLogger(_RANK_ZERO_LOGGER)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    for message in _MUTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


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
