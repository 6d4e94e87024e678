"""The plain single-series API: `load_csv` reads a wide CSV into a `Series`, `WindowDataset` cuts sliding windows
from a (T, C) array. Both are re-exported by `data.py` (`from mmsdk.adapters.timeseries.data import WindowDataset`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from mmsdk.adapters.timeseries.checks import check_observed, non_numeric, parse_times, read_csv, shown

logger = logging.getLogger(__name__)


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


def load_csv(
    path: str | Path, time_column: str | None = "date", columns: list[str] | None = None, *, encoding: str = "utf-8"
) -> Series:
    """Loads a wide CSV (one column per variable, an optional time column).

    Raises:
        FileNotFoundError: naming the path.
        ValueError: naming the file: a binary file or text that is not `encoding`, an empty file, a missing column,
            a time column without dates, non-numeric values, or a column without any value (all NaN); messages show
            column names and row numbers, never the file's lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"time-series CSV not found: {path}")
    frame = read_csv(path, encoding, option="encoding")
    if frame.empty:
        raise ValueError(f"{path}: the CSV has no rows")
    timestamps = None
    if time_column is not None and time_column in frame.columns:
        timestamps = parse_times(frame.pop(time_column), str(path), time_column)
        if not timestamps.is_monotonic_increasing:
            raise ValueError(f"{path}: column {time_column!r} is not sorted in time")
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: columns {missing} not found; the file has {shown(list(frame.columns))}")
        frame = frame[columns]
    for name in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            raise non_numeric(str(path), name, frame[name], echo_values=False)
    values = frame.to_numpy(dtype=np.float32)  # (T, C)
    hint = "load the others with columns=[...], or fill them"
    check_observed(values, [str(c) for c in frame.columns], str(path), hint=hint)
    return Series(values, [str(c) for c in frame.columns], timestamps)


class WindowDataset(Dataset):
    """Sliding windows over a (T, C) series: items are `x` (L, C), or `(x, y)` with y (H, C) when horizon > 0.

    Args:
        values: (T, C) float array (NaN = missing; partly missing channels are fine).
        context_length: L.
        horizon: H; 0 for pretraining windows without targets.
        stride: step between window starts.
        columns: the C channel names, for error messages (default: positions).

    Raises:
        ValueError: for a shape that is not (T, C), a series shorter than L + H, or a series (or channel) without a
            single observed value: the model would have nothing to learn from it (a loss of 0).
    """

    def __init__(
        self,
        values: np.ndarray,
        context_length: int,
        horizon: int = 0,
        stride: int = 1,
        *,
        columns: list[str] | None = None,
    ) -> None:
        if values.ndim != 2:
            raise ValueError(f"WindowDataset expects a (time, channels) array, got shape {tuple(values.shape)}")
        if columns is not None and len(columns) != values.shape[1]:
            raise ValueError(f"WindowDataset: {len(columns)} column names for {values.shape[1]} channels")
        need = context_length + horizon
        if values.shape[0] < need:
            raise ValueError(f"series of {values.shape[0]} steps is shorter than context_length + horizon = {need}")
        self.values = torch.as_tensor(values, dtype=torch.float32)
        check_observed(self.values.detach().cpu().numpy(), columns, "WindowDataset")
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
