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
