"""Time-series data: CSV loading, the standard ETT split, scaling and sliding windows.

The bundled demo dataset is ETTh1 (CC BY-ND 4.0, redistributed unmodified; see `data/ATTRIBUTION.md`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from mmsdk.config import Config, require
from mmsdk.data import DataSplits, Stage, register_data

logger = logging.getLogger(__name__)

BUNDLED = {"ETTh1": "ETTh1.csv"}
# Informer/PatchTST convention with 30-day months: 12 / 4 / 4 months of train / val / test.
_ETT_STEPS_PER_DAY = {"h": 24, "15min": 96}


def bundled_path(name: str = "ETTh1") -> Path:
    """Path of a dataset shipped inside the package."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled dataset {name!r}; bundled: {sorted(BUNDLED)}")
    return Path(str(resources.files("mmsdk.adapters.timeseries") / "data" / BUNDLED[name]))


@dataclass
class Series:
    """A multivariate series loaded from a file.

    Attributes:
        values: (T, C) float32, NaN where missing.
        columns: the C variable names.
        timestamps: the T time stamps (or None when the file has no time column).
    """

    values: np.ndarray
    columns: list[str]
    timestamps: pd.DatetimeIndex | None


def load_csv(path: str | Path, time_column: str | None = "date", columns: list[str] | None = None) -> Series:
    """Loads a wide CSV (one column per variable, an optional time column).

    Raises:
        FileNotFoundError: naming the path.
        ValueError: for an empty file, a missing column, or non-numeric values (naming the column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"time-series CSV not found: {path}")
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path}: the CSV has no rows")
    timestamps = None
    if time_column is not None and time_column in frame.columns:
        timestamps = pd.DatetimeIndex(pd.to_datetime(frame.pop(time_column)))
        if not timestamps.is_monotonic_increasing:
            raise ValueError(f"{path}: column {time_column!r} is not sorted in time")
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: columns {missing} not found; the file has {list(frame.columns)}")
        frame = frame[columns]
    for name in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            raise ValueError(f"{path}: column {name!r} is not numeric (first value {frame[name].iloc[0]!r})")
    return Series(frame.to_numpy(dtype=np.float32), [str(c) for c in frame.columns], timestamps)


def ett_borders(length: int, context_length: int, freq: str = "h") -> list[tuple[int, int]]:
    """Row ranges of the standard ETT train/val/test split; val/test start `context_length` rows early.

    Returns:
        [(start, end)] for train, val, test.
    """
    if freq not in _ETT_STEPS_PER_DAY:
        raise ValueError(f"ETT split freq must be one of {sorted(_ETT_STEPS_PER_DAY)}, got {freq!r}")
    month = 30 * _ETT_STEPS_PER_DAY[freq]
    ends = [12 * month, 16 * month, 20 * month]
    if length < ends[-1]:
        raise ValueError(f"the ETT split needs {ends[-1]} rows, the series has {length}")
    starts = [0, ends[0] - context_length, ends[1] - context_length]
    return list(zip(starts, ends))


def ratio_borders(length: int, context_length: int, ratios: tuple[float, float] = (0.7, 0.1)) -> list[tuple[int, int]]:
    """Train/val/test row ranges by fractions of the length (the rest is test); val/test start early by the
    context so their first windows are complete."""
    train_end = int(length * ratios[0])
    val_end = train_end + int(length * ratios[1])
    return [(0, train_end), (max(0, train_end - context_length), val_end), (max(0, val_end - context_length), length)]


class StandardScaler:
    """Per-column standardization fitted on training rows only (NaN-aware)."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> StandardScaler:
        self.mean = np.nanmean(values, axis=0).astype(np.float32)
        std = np.nanstd(values, axis=0).astype(np.float32)
        self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)  # constant columns keep their scale
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise ValueError("StandardScaler.transform called before fit")
        return ((values - self.mean) / self.std).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise ValueError("StandardScaler.inverse called before fit")
        return (values * self.std + self.mean).astype(np.float32)


class WindowDataset(Dataset):
    """Sliding windows over a (T, C) series: items are `x` (L, C), or `(x, y)` with y (H, C) when horizon > 0.

    Args:
        values: (T, C) float array (NaN = missing).
        context_length: L.
        horizon: H; 0 for pretraining windows without targets.
        stride: step between window starts.
    """

    def __init__(self, values: np.ndarray, context_length: int, horizon: int = 0, stride: int = 1) -> None:
        if values.ndim != 2:
            raise ValueError(f"WindowDataset expects a (time, channels) array, got shape {values.shape}")
        need = context_length + horizon
        if values.shape[0] < need:
            raise ValueError(f"series of {values.shape[0]} steps is shorter than context_length + horizon = {need}")
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.context_length, self.horizon, self.stride = context_length, horizon, stride
        self.starts = range(0, values.shape[0] - need + 1, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        start = self.starts[index]
        x = self.values[start : start + self.context_length]  # (L, C)
        if self.horizon == 0:
            return x
        return x, self.values[start + self.context_length : start + self.context_length + self.horizon]  # (H, C)


@dataclass
class ForecastDataConfig(Config):
    """Where the series comes from and how it is split into windows."""

    path: str | None = None
    """CSV file (wide: a time column plus one column per variable); None = the bundled ETTh1."""
    time_column: str | None = "date"
    """Name of the time column (None when the file has none)."""
    columns: list[str] | None = None
    """Variables to use (default: every numeric column)."""
    split: Literal["ett", "ratio"] = "ett"
    """ett = the standard 12/4/4-month ETT split; ratio = 70/10/20 % of the rows."""
    freq: str = "h"
    """Sampling frequency for the ETT split: h or 15min."""
    horizon: int = 96
    """Forecast horizon H (targets of fine-tuning windows)."""
    stride: int = 1
    """Step between training windows."""
    batch_size: int = 64
    """Windows per batch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.horizon >= 1, self, "horizon", f"must be >= 1, got {self.horizon}")
        require(self.stride >= 1, self, "stride", f"must be >= 1, got {self.stride}")
        require(self.batch_size >= 1, self, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass
class ForecastData:
    """Scaled train/val/test windows and what is needed to read results in data units."""

    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    scaler: StandardScaler
    columns: list[str]
    series: Series


def forecast_datasets(config: ForecastDataConfig, context_length: int, pretraining: bool = False) -> ForecastData:
    """Loads, splits, scales (scaler fit on train rows only) and windows a series.

    Args:
        config: data config.
        context_length: L of the model.
        pretraining: training windows without targets (horizon 0); val/test keep targets.
    """
    path = config.path or bundled_path("ETTh1")
    series = load_csv(path, config.time_column, config.columns)
    length = series.values.shape[0]
    if config.split == "ett":
        borders = ett_borders(length, context_length, config.freq)
    else:
        borders = ratio_borders(length, context_length)
    (tr0, tr1), (va0, va1), (te0, te1) = borders
    scaler = StandardScaler().fit(series.values[tr0:tr1])
    scaled = scaler.transform(series.values)
    train_horizon = 0 if pretraining else config.horizon
    logger.info("split %s: train rows %d-%d, val %d-%d, test %d-%d", path, tr0, tr1, va0, va1, te0, te1)
    return ForecastData(
        train=WindowDataset(scaled[tr0:tr1], context_length, train_horizon, config.stride),
        val=WindowDataset(scaled[va0:va1], context_length, config.horizon),
        test=WindowDataset(scaled[te0:te1], context_length, config.horizon),
        scaler=scaler,
        columns=series.columns,
        series=series,
    )


@register_data("patchtst")
def build_forecast_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Recipe `data:` builder for time-series adapters: pretraining windows or (x, y) forecast windows."""
    config = ForecastDataConfig.from_dict(data)
    context_length = int(model_config.adapter_config["context_length"])
    splits = forecast_datasets(config, context_length, pretraining=stage == "pretrain")
    val = splits.val if stage == "finetune" else _inputs_only(splits.val)
    info = {"columns": splits.columns, "scaler_mean": splits.scaler.mean, "scaler_std": splits.scaler.std}
    return DataSplits(splits.train, val, splits.test, config.batch_size, info)


class _InputsOnly(Dataset):
    """Drops the targets of an (x, y) dataset (validation during pretraining)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def _inputs_only(dataset: Dataset) -> Dataset:
    return _InputsOnly(dataset)
