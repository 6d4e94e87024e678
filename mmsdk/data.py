"""Data registry: how a recipe's `data:` section becomes datasets, per adapter.

Adapter families register a builder for their adapter names; the CLI and the Python API look builders up by the
model's adapter name, so recipes never carry import paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch.utils.data import Dataset

from mmsdk.adapter import get_adapter_class

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


DataBuilder = Callable[[Mapping[str, Any], Any, Stage], DataSplits]
_BUILDERS: dict[str, DataBuilder] = {}


def register_data(*adapter_names: str) -> Callable[[DataBuilder], DataBuilder]:
    """Decorator: `builder(data_config: dict, model_config: ModelConfig, stage) -> DataSplits`."""

    def wrap(builder: DataBuilder) -> DataBuilder:
        for name in adapter_names:
            _BUILDERS[name] = builder
        return builder

    return wrap


def build_data(adapter: str, data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Builds the datasets of a recipe for the model's adapter.

    Raises:
        ValueError: when no builder is registered for the adapter.
    """
    get_adapter_class(adapter)  # imports the adapter family, which registers its builders
    if adapter not in _BUILDERS:
        raise ValueError(f"adapter {adapter!r} has no registered data builder; known: {sorted(_BUILDERS)}")
    return _BUILDERS[adapter](data, model_config, stage)
