"""Timestamps of time-series items: sorting, duplicate / missing / off-grid checks, frequency inference and the
regular grid (`TimeSeriesFrame` uses these for every item)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def infer_freq(index: pd.DatetimeIndex) -> str | None:
    """Frequency string of a regular index (two stamps: their difference), else None."""
    if len(index) < 2:
        return None
    if len(index) == 2:
        return pd.tseries.frequencies.to_offset(index[1] - index[0]).freqstr
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            offset = pd.infer_freq(index)
    except pd.errors.OptionError:  # pandas < 3 returns strings and has no such option
        offset = pd.infer_freq(index)
    return offset if offset is None or isinstance(offset, str) else offset.freqstr


def clean_item(
    frame: pd.DataFrame, item: str, source: str, freq: str | None, allow_irregular: bool
) -> tuple[pd.DataFrame, str | None]:
    """Sorts, checks and (with `freq`) regularizes one item's rows; returns them and the item's frequency."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        return frame.reset_index(drop=True), None
    if index.hasnans:
        raise ValueError(f"{source}: item {item!r} has missing (NaT) timestamps")
    if not index.is_monotonic_increasing:
        logger.warning("%s: item %r: timestamps are not sorted; sorting them", source, item)
        frame = frame.sort_index(kind="stable")
        index = frame.index
    duplicated = index.duplicated()
    if duplicated.any():
        raise ValueError(f"{source}: item {item!r} has duplicated timestamp {index[duplicated][0]}")
    if freq is not None:
        grid = pd.date_range(index[0], index[-1], freq=freq)
        off_grid = index.difference(grid)
        if len(off_grid):
            raise ValueError(f"{source}: item {item!r}: timestamp {off_grid[0]} is not on the {freq!r} grid")
        offset = pd.tseries.frequencies.to_offset(freq)
        if len(index) > 2 and isinstance(offset, pd.offsets.Tick):  # fixed-length steps: compare with the data's
            usual = (index[1:] - index[:-1]).value_counts().index[0]
            if usual > pd.Timedelta(offset):
                raise ValueError(
                    f"{source}: item {item!r}: the usual time step {usual} is longer than freq={freq!r}; "
                    "regularizing would insert missing rows between every two (give the data's own frequency)"
                )
        if len(grid) > len(index):
            logger.info("%s: item %r: inserted %d missing %r rows", source, item, len(grid) - len(index), freq)
        return frame.reindex(grid), pd.tseries.frequencies.to_offset(freq).freqstr
    inferred = infer_freq(index)
    if inferred is None and len(index) > 2:
        steps = index[1:] - index[:-1]
        usual = steps.value_counts().index[0]
        at = int(np.argmax(steps != usual))
        message = (
            f"{source}: item {item!r} has an irregular time step {index[at]} -> {index[at + 1]} (usual step {usual})"
        )
        if not allow_irregular:
            raise ValueError(f"{message}; pass freq=... to insert missing rows, or allow_irregular=True")
        logger.warning("%s; keeping the timestamps as they are", message)
    return frame, inferred


def pad_index(index: pd.DatetimeIndex, length: int, freq: str | None) -> pd.DatetimeIndex:
    """Extends an item's timestamps back to `length` (at `freq`, or NaT when irregular) for the padding rows."""
    pad = length - len(index)
    if pad == 0:
        return index
    if freq is not None:
        return pd.date_range(end=index[0], periods=pad + 1, freq=freq)[:-1].append(index)
    return pd.DatetimeIndex([pd.NaT] * pad, dtype=index.dtype).append(index)


# feature name → (its value from a DatetimeIndex, its period)
CALENDAR_FEATURES = {
    "minute": (lambda index: index.minute, 60),
    "hour": (lambda index: index.hour + index.minute / 60, 24),
    "dayofweek": (lambda index: index.dayofweek + index.hour / 24, 7),
    "dayofmonth": (lambda index: index.day - 1, 31),
    "dayofyear": (lambda index: index.dayofyear - 1, 366),
    "month": (lambda index: index.month - 1 + (index.day - 1) / index.days_in_month, 12),
}
"""Calendar features `calendar_features` can encode, each as a position on its cycle (fractions included, e.g. the
hour of a 15-minute step)."""


def calendar_features(index: pd.DatetimeIndex, features: list[str] | tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Sin-cos encoded calendar features of timestamps: two columns per feature, `<name>_sin` and `<name>_cos`.

    A feature at position v of its period T becomes sin(2πv / T) and cos(2πv / T), so the last hour of a day sits
    next to the first. NaT timestamps give NaN.

    Args:
        index: the timestamps (T,).
        features: names from `CALENDAR_FEATURES` (minute, hour, dayofweek, dayofmonth, dayofyear, month).

    Returns:
        The 2F column names and the (T, 2F) float32 values.

    Raises:
        ValueError: for an unknown or repeated feature name, or an index that holds no timestamps.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"calendar features need a DatetimeIndex, got {type(index).__name__}")
    unknown = [f for f in features if f not in CALENDAR_FEATURES]
    if unknown or len(set(features)) != len(features) or not features:
        raise ValueError(f"calendar features {list(features)}: choose distinct names from {list(CALENDAR_FEATURES)}")
    names, columns = [], []
    for feature in features:
        value, period = CALENDAR_FEATURES[feature]
        angle = 2 * np.pi * np.asarray(value(index), dtype=np.float64) / period  # NaT → NaN
        names += [f"{feature}_sin", f"{feature}_cos"]
        columns += [np.sin(angle), np.cos(angle)]
    return names, np.stack(columns, axis=1).astype(np.float32)
