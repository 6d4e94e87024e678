"""Windows, splits and scaling of a `TimeSeriesFrame`.

`ett_borders` / `ratio_borders` give the train/val/test row ranges of one series, `StandardScaler` standardizes with
statistics of training rows only, `ett_split` / `ratio_split` apply both to every item of a frame (`FrameSplit`), and
`ForecastWindows` cuts model-ready context/horizon windows from any item and row range.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from mmsdk.adapters.timeseries.checks import shown
from mmsdk.adapters.timeseries.series_frame import ROLES, TimeSeriesFrame

logger = logging.getLogger(__name__)

Borders = list[tuple[int, int]]
# Informer/PatchTST convention with 30-day months: 12 / 4 / 4 months of train / val / test.
_ETT_STEPS_PER_DAY = {"h": 24, "15min": 96}


def ett_borders(length: int, context_length: int, freq: str = "h") -> Borders:
    """Row ranges of the standard ETT train/val/test split; val/test start `context_length` rows early.

    Args:
        length: rows of the series (at least 20 30-day months).
        context_length: L.
        freq: "h" or "15min".

    Returns:
        [(start, end)] for train, val, test.

    Raises:
        ValueError: for another freq or a series that is too short.
    """
    if freq not in _ETT_STEPS_PER_DAY:
        raise ValueError(f"ETT split freq must be one of {sorted(_ETT_STEPS_PER_DAY)}, got {freq!r}")
    month = 30 * _ETT_STEPS_PER_DAY[freq]
    ends = [12 * month, 16 * month, 20 * month]
    if length < ends[-1]:
        raise ValueError(f"the ETT split needs {ends[-1]} rows, the series has {length}")
    starts = [0, ends[0] - context_length, ends[1] - context_length]
    return list(zip(starts, ends))


def ratio_borders(length: int, context_length: int, ratios: tuple[float, float] = (0.7, 0.1)) -> Borders:
    """Train/val/test row ranges by fractions of the length (the rest is test).

    Args:
        length: rows of the series.
        context_length: L; val/test start L rows early so their first windows are complete.
        ratios: fractions of the rows for train and val.

    Returns:
        [(start, end)] for train, val, test.
    """
    train_end = int(length * ratios[0])
    val_end = train_end + int(length * ratios[1])
    return [(0, train_end), (max(0, train_end - context_length), val_end), (max(0, val_end - context_length), length)]


class StandardScaler:
    """Per-column standardization fitted on training rows only (NaN-aware)."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> StandardScaler:
        """Fits per-column mean and std of (rows, C) values, ignoring NaN; returns self."""
        self.mean = np.nanmean(values, axis=0).astype(np.float32)
        std = np.nanstd(values, axis=0).astype(np.float32)
        self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)  # constant columns keep their scale
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardizes (..., C) values (float32; NaN stays NaN)."""
        if self.mean is None or self.std is None:
            raise ValueError("StandardScaler.transform called before fit")
        return ((values - self.mean) / self.std).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Maps standardized (..., C) values back to data units (float32)."""
        if self.mean is None or self.std is None:
            raise ValueError("StandardScaler.inverse called before fit")
        return (values * self.std + self.mean).astype(np.float32)


class ForecastWindows(Dataset):
    """Sliding context/horizon windows over every item of a frame.

    Items are `(x (L, n_targets), y (H, n_targets))`, or `x` alone when horizon is 0 (pretraining). With
    `with_covariates`, `x` is a covariate forecaster's input mapping (`mmsdk.adapters.timeseries.covariates`):
    "series" (L, n_targets), "past_covariates" (L, n_past) and "known_covariates" (L + H, n_known), a block only
    when the frame has such variables. A series (or split segment) shorter than L + H is left-padded with NaN so it
    still gives one window; windows whose context holds no observed target value are skipped. Partly missing values
    are fine; a target (or, `with_covariates`, a covariate) with no observed value in the windowed rows of any item
    is an error: the model would have nothing to learn from it (its loss would be 0).

    Args:
        frame: the data.
        context_length: L.
        horizon: H (0: no targets).
        stride: step between window starts.
        split: row range (start, end) on the frame's T axis, one for all items or one per item; None = all rows.
        with_covariates: make `x` the input mapping with the covariates.
        static_vocabulary: the model's categories of each static feature (feature name → categories; default the
            frame's own, `frame.static_vocabulary()`): an item's category becomes its id there, a category missing
            from it becomes 0 (unknown, logged once per feature).

    Raises:
        ValueError: for a variable without an observed value in the windowed rows (naming it), an item with no
            observed target value at all (naming it), or when no window is left.
    """

    def __init__(
        self,
        frame: TimeSeriesFrame,
        context_length: int,
        horizon: int,
        stride: int = 1,
        split: tuple[int, int] | Borders | None = None,
        with_covariates: bool = False,
        static_vocabulary: dict[str, list[str]] | None = None,
    ) -> None:
        if context_length < 1 or horizon < 0 or stride < 1:
            raise ValueError(
                f"need context_length >= 1, horizon >= 0, stride >= 1; got {context_length}, {horizon}, {stride}"
            )
        n, t, _ = frame.values.shape
        if split is None:
            ranges = [(0, t)] * n
        elif len(split) == 2 and all(isinstance(b, int | np.integer) for b in split):
            ranges = [tuple(split)] * n  # type: ignore[list-item]
        else:
            ranges = list(split)  # type: ignore[arg-type]
        if len(ranges) != n or any(not 0 <= s < e <= t for s, e in ranges):
            raise ValueError(f"split {split} must be one (start, end) or {n}, with 0 <= start < end <= {t}")
        self.frame, self.context_length, self.horizon = frame, context_length, horizon
        self.with_covariates = with_covariates
        self._static = static_ids(frame, static_vocabulary) if with_covariates and frame.static else None
        target, past, known = (torch.tensor(frame.indices(r), dtype=torch.long) for r in ROLES)
        self._columns = {"target": target, "past": past, "known": known}
        where = "the data" if split is None else "the given row ranges"
        if split is not None and len(set(ranges)) == 1:
            where = f"rows {ranges[0][0]}-{ranges[0][1]}"
        _check_variables(frame, ranges, with_covariates, where)
        need = context_length + horizon
        self._series: list[torch.Tensor] = []
        self._offsets: list[int] = []
        index, skipped = [], 0
        for k, (start, end) in enumerate(ranges):
            observed = frame.observed[k][:, target.numpy()].any(axis=1)  # (T,) any target observed
            if not observed.any():
                raise ValueError(f"item {frame.item_ids[k]!r} has no observed value in its targets {frame.targets}")
            segment, seen = frame.values[k, start:end], observed[start:end]  # (n, V), (n,)
            pad = max(0, need - segment.shape[0])
            if pad:
                segment = np.concatenate([np.full((pad, segment.shape[1]), np.nan, np.float32), segment])
                seen = np.concatenate([np.zeros(pad, bool), seen])
            counts = np.concatenate([[0], np.cumsum(seen)])
            starts = np.arange(0, segment.shape[0] - need + 1, stride)
            keep = counts[starts + context_length] - counts[starts] > 0
            skipped += int((~keep).sum())
            index.append(np.stack([np.full(int(keep.sum()), k), starts[keep]], axis=1))
            self._series.append(torch.from_numpy(np.ascontiguousarray(segment, dtype=np.float32)))
            self._offsets.append(start - pad)
        self._index = np.concatenate(index)  # (windows, 2): item, start within its segment
        if skipped:
            logger.info("skipped %d windows whose context has no observed target value", skipped)
        if len(self._index) == 0:
            raise ValueError(f"no window with an observed target in its context (L={context_length}, H={horizon})")

    def __len__(self) -> int:
        return len(self._index)

    def locate(self, index: int) -> tuple[str, int]:
        """Item id and frame row (on the T axis; negative inside left padding) where window `index` starts."""
        item, start = self._index[index]
        return self.frame.item_ids[item], int(self._offsets[item] + start)

    def __getitem__(self, index: int) -> Any:
        item, start = self._index[index]
        window = self._series[item][start : start + self.context_length + self.horizon]  # (L + H, V)
        context, future = window[: self.context_length], window[self.context_length :]
        x = context[:, self._columns["target"]]  # (L, n_targets)
        if not self.with_covariates:
            return x if self.horizon == 0 else (x, future[:, self._columns["target"]])
        inputs = {"series": x}
        if len(self._columns["past"]):
            inputs["past_covariates"] = context[:, self._columns["past"]]  # (L, n_past)
        if len(self._columns["known"]):
            inputs["known_covariates"] = window[:, self._columns["known"]]  # (L + H, n_known)
        if self._static is not None:
            inputs["static_categoricals"] = self._static[item]  # (S,) ids
        return inputs if self.horizon == 0 else (inputs, future[:, self._columns["target"]])


def static_ids(frame: TimeSeriesFrame, vocabulary: dict[str, list[str]] | None = None) -> torch.Tensor:
    """(items, S) int64 ids of every item's static categories in `vocabulary` (default the frame's own): category i
    of a feature has id i + 1, a category the vocabulary lacks gets 0 (unknown; logged).

    Raises:
        ValueError: when the vocabulary lacks one of the frame's static features, or has others.
    """
    vocabulary = frame.static_vocabulary() if vocabulary is None else vocabulary
    if set(vocabulary) != set(frame.static):
        raise ValueError(
            f"the data's static categoricals {sorted(frame.static)} differ from the model's {sorted(vocabulary)}"
        )
    columns = []
    for name, categories in vocabulary.items():
        index = {category: i + 1 for i, category in enumerate(categories)}
        ids = [index.get(value, 0) for value in frame.static[name]]
        unseen = sorted({v for v in frame.static[name] if v not in index})
        if unseen:
            logger.warning(
                "static categorical %r: categories %s are not among the model's %d; they get id 0 (unknown)",
                name,
                shown(unseen),
                len(categories),
            )
        columns.append(ids)
    return torch.tensor(columns, dtype=torch.long).T.reshape(len(frame.item_ids), len(vocabulary))


def _check_variables(frame: TimeSeriesFrame, ranges: list[tuple[int, int]], covariates: bool, where: str) -> None:
    """Raises for a windowed variable without an observed value in `ranges` of any item."""
    seen = np.zeros(len(frame.variables), bool)  # (V,)
    for k, (start, end) in enumerate(ranges):
        seen |= frame.observed[k, start:end].any(axis=0)
    used = [j for j, role in enumerate(frame.roles) if covariates or role == "target"]
    empty = [f"{frame.variables[j]} ({frame.roles[j]})" for j in used if not seen[j]]
    if empty:
        raise ValueError(
            f"variables {shown(empty)} have no observed value in {where} of any item (all NaN): the model would have"
            " nothing to learn from them; drop them (select other variables, e.g. data.columns) or fill them"
        )


@dataclass
class FrameSplit:
    """A frame scaled on its training rows, with per-item train/val/test row ranges.

    Attributes:
        frame: the scaled frame.
        borders: "train" / "val" / "test" → per-item (start, end) on the T axis; val/test start L rows early.
        scaler: per-variable statistics of the observed training values (None when unscaled); `scaler.inverse`
            on (..., V) arrays gives data units.
        context_length: L the borders were made for.
    """

    frame: TimeSeriesFrame
    borders: dict[str, Borders]
    scaler: StandardScaler | None
    context_length: int

    def windows(
        self,
        split: Literal["train", "val", "test"],
        horizon: int,
        stride: int = 1,
        with_covariates: bool = False,
        static_vocabulary: dict[str, list[str]] | None = None,
    ) -> ForecastWindows:
        """Windows of one split (see `ForecastWindows`)."""
        borders = self.borders[split]
        return ForecastWindows(
            self.frame, self.context_length, horizon, stride, borders, with_covariates, static_vocabulary
        )


def _split(
    frame: TimeSeriesFrame, per_item: list[list[tuple[int, int]]], context_length: int, scale: bool
) -> FrameSplit:
    """Shifts per-item borders by each item's padding, fits the scaler on observed training values, scales."""
    offsets = frame.values.shape[1] - frame.lengths  # (items,) padding rows before each item's data
    borders: dict[str, Borders] = {"train": [], "val": [], "test": []}
    for offset, item_borders in zip(offsets, per_item):
        for name, (start, end) in zip(borders, item_borders):
            borders[name].append((int(offset + start), int(offset + end)))
    if not scale:
        return FrameSplit(frame, borders, None, context_length)
    rows = np.concatenate([frame.values[k, s:e] for k, (s, e) in enumerate(borders["train"])])  # (rows, V)
    # Column-contiguous: numpy sums each variable pairwise (accurate in float32), which also gives exactly the
    # statistics of `StandardScaler().fit(load_csv(...).values)` (pandas arrays are column-major).
    rows = np.asfortranarray(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
        scaler = StandardScaler().fit(rows)
    unseen = np.isnan(scaler.mean)
    if unseen.any():
        names = [v for v, u in zip(frame.variables, unseen) if u]
        logger.warning("variables %s have no observed training value; left unscaled", names)
        scaler.mean = np.where(unseen, 0.0, scaler.mean).astype(np.float32)
    n, t, v = frame.values.shape
    scaled = scaler.transform(frame.values.reshape(n * t, v)).reshape(n, t, v)
    return FrameSplit(frame.with_values(scaled), borders, scaler, context_length)


def ett_split(frame: TimeSeriesFrame, context_length: int, freq: str | None = None, scale: bool = True) -> FrameSplit:
    """The standard ETT 12/4/4-month split of every item (`ett_borders`), scaled on the training rows.

    Args:
        frame: the data (each item needs at least 20 30-day months of rows).
        context_length: L; val/test start L rows early so their first windows are complete.
        freq: "h" or "15min"; default the frame's frequency (or "h" when unknown).
        scale: standardize every variable with statistics of the observed training values.
    """
    freq = freq or frame.freq or "h"
    if frame.freq is not None and frame.freq != freq:
        raise ValueError(f"ett_split with freq={freq!r} but the data has frequency {frame.freq!r}")
    per_item = []
    for item, length in zip(frame.item_ids, frame.lengths):
        try:
            per_item.append(ett_borders(int(length), context_length, freq))
        except ValueError as error:
            raise ValueError(f"item {item!r}: {error}") from error
    return _split(frame, per_item, context_length, scale)


def ratio_split(
    frame: TimeSeriesFrame, context_length: int, ratios: tuple[float, float] = (0.7, 0.1), scale: bool = True
) -> FrameSplit:
    """Train/val/test by fractions of each item's length (the rest is test), scaled on the training rows."""
    if ratios[0] <= 0 or ratios[1] < 0 or sum(ratios) >= 1:
        raise ValueError(f"ratios {ratios} must be (train > 0, val >= 0) with train + val < 1")
    per_item = [ratio_borders(int(length), context_length, ratios) for length in frame.lengths]
    return _split(frame, per_item, context_length, scale)
