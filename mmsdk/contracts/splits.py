"""What a data builder returns: the datasets of one job (a leaf module: the data contract and the shard reader and
writer both build on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch.utils.data import Dataset

Stage = Literal["pretrain", "finetune"]


@dataclass
class DataSplits:
    """Datasets for one job.

    Attributes:
        train, val, test: datasets (val/test may be None). Pretraining items are inputs; fine-tuning items are
            (inputs, targets).
        batch_size: the recipe's batch size.
        info: anything the builder wants to report (columns, row ranges, scaler statistics).
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    batch_size: int = 32
    info: dict[str, Any] = field(default_factory=dict)
