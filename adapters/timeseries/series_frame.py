"""`TimeSeriesFrame`: any input form (xarray, wide or long pandas, CSV, numpy) → one validated frame.

Inputs become one frame of values (items, T, V) with NaN where missing, an observed mask, variable names, a role per
variable (target / past / known covariate), timestamps and an inferred frequency. Items of different lengths are
right-aligned on the T axis: an item of n rows fills rows T - n .. T - 1 and the rows before are NaN padding.
Unsorted timestamps are sorted (with a warning); duplicated, missing (NaT) or irregular ones are errors unless a
frequency is given (missing rows are inserted as NaN) or irregular steps are allowed explicitly (`timestamps.py`).
Partly missing values are kept; data without a single observed value, or whose targets have none, is an error.
Errors about files show column names and row numbers, never cell values (`checks.py`). Windows, splits and
scaling of frames are in `windows.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from mmsdk.adapters.timeseries.checks import non_numeric, parse_times, read_csv, shown
from mmsdk.adapters.timeseries.timestamps import calendar_features, clean_item, pad_index

logger = logging.getLogger(__name__)

Role = Literal["target", "past", "known"]
ROLES: tuple[Role, ...] = ("target", "past", "known")
_TIME_NAMES = ("date", "time", "timestamp", "datetime")  # auto-detected time columns of DataFrames and CSVs


def _names(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _resolve_roles(
    variables: list[str], targets: Any, past: Any, known: Any, source: str
) -> tuple[list[str], list[Role]]:
    """Checks the role arguments against the data; returns the kept variables (data order) and their roles.

    Without `targets`, every variable not named a covariate is a target; with `targets`, variables named in no
    role are dropped.
    """
    named = {"targets": _names(targets), "past_covariates": _names(past), "known_covariates": _names(known)}
    unknown = [n for names in named.values() for n in names if n not in variables]
    if unknown:
        raise ValueError(f"{source}: variables {unknown} are not in the data; it has {variables}")
    owner: dict[str, str] = {}
    for argument, names in named.items():
        for name in names:
            if owner.setdefault(name, argument) != argument:
                raise ValueError(f"{source}: variable {name!r} is given both in {owner[name]} and in {argument}")
    role_of: dict[str, Role] = {n: "past" for n in named["past_covariates"]}
    role_of.update({n: "known" for n in named["known_covariates"]})
    if targets is None:
        role_of.update({v: "target" for v in variables if v not in role_of})
    else:
        role_of.update({n: "target" for n in named["targets"]})
        dropped = [v for v in variables if v not in role_of]
        if dropped:
            logger.info("%s: variables %s have no role and are dropped", source, dropped)
    if "target" not in role_of.values():
        raise ValueError(f"{source}: no target variable; every variable of {variables} is a covariate")
    kept = [v for v in variables if v in role_of]
    return kept, [role_of[v] for v in kept]


def _check_numeric(frame: pd.DataFrame, columns: Sequence[Any], source: str, echo_values: bool) -> None:
    for name in columns:
        if not (pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name])):
            raise non_numeric(source, name, frame[name], echo_values)


@dataclass
class TimeSeriesFrame:
    """Validated multi-item, multivariate series with roles, ready for windowing.

    Attributes:
        values: (items, T, V) float32, NaN where missing; item i's data are rows T - lengths[i] .. T - 1.
        observed: (items, T, V) bool, False at missing values and padding.
        variables: the V variable names.
        roles: V roles, each "target", "past" (covariate observed only in the past) or "known" (covariate known in
            the future too, e.g. calendar features).
        item_ids: the item names.
        timestamps: one DatetimeIndex of length T shared by all items, one per item (padding rows extrapolated at
            `freq`, NaT when irregular), or None for data without time stamps.
        freq: inferred (or given) pandas frequency string; None when unknown or irregular.
        lengths: (items,) rows of data per item.
        static: static categorical covariates: feature name → one category (string) per item.
    """

    values: np.ndarray
    observed: np.ndarray
    variables: list[str]
    roles: list[Role]
    item_ids: list[str]
    timestamps: pd.DatetimeIndex | list[pd.DatetimeIndex] | None
    freq: str | None
    lengths: np.ndarray
    static: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, _, v = self.values.shape
        bad = [name for name, values in self.static.items() if len(values) != n]
        if bad:
            raise ValueError(f"inconsistent frame: static features {bad} need one category per item ({n} items)")
        if self.observed.shape != self.values.shape or len(self.variables) != v or len(self.roles) != v:
            raise ValueError(f"inconsistent frame: values {self.values.shape}, observed {self.observed.shape}")
        if len(self.item_ids) != n or len(self.lengths) != n:
            raise ValueError(f"inconsistent frame: {n} items but {len(self.item_ids)} ids, {len(self.lengths)} lengths")

    @property
    def targets(self) -> list[str]:
        return self.names("target")

    @property
    def past_covariates(self) -> list[str]:
        return self.names("past")

    @property
    def known_covariates(self) -> list[str]:
        return self.names("known")

    def names(self, role: Role) -> list[str]:
        """Variables with `role`, in data order."""
        return [v for v, r in zip(self.variables, self.roles) if r == role]

    def indices(self, role: Role) -> list[int]:
        """Positions on the V axis of the variables with `role`."""
        return [j for j, r in enumerate(self.roles) if r == role]

    def item_timestamps(self, item: int) -> pd.DatetimeIndex | None:
        """The T timestamps of item `item` (None without timestamps)."""
        return self.timestamps[item] if isinstance(self.timestamps, list) else self.timestamps

    def with_values(self, values: np.ndarray) -> TimeSeriesFrame:
        """A copy with new (items, T, V) values (e.g. scaled); the observed mask follows their NaNs."""
        return replace(self, values=values.astype(np.float32), observed=~np.isnan(values))

    def select(self, variables: Sequence[str]) -> TimeSeriesFrame:
        """A copy with only `variables`, in this order, keeping their roles.

        Raises:
            ValueError: for unknown or repeated names, or when no target variable is left.
        """
        names = [str(v) for v in variables]
        unknown = [v for v in names if v not in self.variables]
        if unknown:
            raise ValueError(f"variables {unknown} are not in the data; it has {self.variables}")
        if len(set(names)) != len(names):
            raise ValueError(f"variables {names} repeat a name")
        index = [self.variables.index(v) for v in names]
        roles = [self.roles[j] for j in index]
        if "target" not in roles:
            raise ValueError(f"no target variable among {names}; targets are {self.targets}")
        return replace(
            self,
            values=self.values[..., index],  # (items, T, V')
            observed=self.observed[..., index],
            variables=names,
            roles=roles,
        )

    def with_roles(self, past: Sequence[str] = (), known: Sequence[str] = ()) -> TimeSeriesFrame:
        """A copy where `past` become past covariates, `known` known-future covariates and every other variable a
        target.

        Raises:
            ValueError: for unknown names, a name in both lists, or no target left.
        """
        past, known = [str(v) for v in past], [str(v) for v in known]
        unknown = [v for v in (*past, *known) if v not in self.variables]
        if unknown:
            raise ValueError(f"covariates {unknown} are not variables of the data; it has {shown(self.variables)}")
        both = sorted(set(past) & set(known))
        if both:
            raise ValueError(f"variables {both} are named both past and known covariates")
        roles: list[Role] = ["past" if v in past else "known" if v in known else "target" for v in self.variables]
        if "target" not in roles:
            raise ValueError(f"no target variable left: every variable of {self.variables} is a covariate")
        return replace(self, roles=roles)

    def with_calendar(self, features: Sequence[str]) -> TimeSeriesFrame:
        """A copy with sin-cos calendar features of the timestamps appended as known covariates (see
        :func:`~mmsdk.adapters.timeseries.timestamps.calendar_features`; two variables `<name>_sin`, `<name>_cos`
        per feature). Padding rows before an item's data get the features of their extrapolated timestamps.

        Raises:
            ValueError: for a frame without timestamps, unknown feature names, or names the data already has.
        """
        if self.timestamps is None:
            raise ValueError("calendar features need timestamps; the data has none (set data.time_column)")
        names: list[str] = []
        columns = []
        for item in range(len(self.item_ids)):
            names, values = calendar_features(self.item_timestamps(item), features)  # type: ignore[arg-type]
            columns.append(values)
        taken = [n for n in names if n in self.variables]
        if taken:
            raise ValueError(f"the data already has variables named {taken}")
        extra = np.stack(columns).astype(np.float32)  # (items, T, 2F)
        return replace(
            self,
            values=np.concatenate([self.values, extra], axis=-1),
            observed=np.concatenate([self.observed, ~np.isnan(extra)], axis=-1),
            variables=[*self.variables, *names],
            roles=[*self.roles, *(["known"] * len(names))],
        )

    def static_vocabulary(self) -> dict[str, list[str]]:
        """Feature name → its sorted categories (category i has id i + 1; 0 is unknown)."""
        return {name: sorted(set(values)) for name, values in self.static.items()}

    # Constructors.

    @classmethod
    def from_any(
        cls, data: Any, targets: Any = None, past_covariates: Any = None, known_covariates: Any = None, **kwargs: Any
    ) -> TimeSeriesFrame:
        """Builds a frame from an xarray object, a DataFrame, a CSV path or a numpy array (see the `from_*`)."""
        roles = {"targets": targets, "past_covariates": past_covariates, "known_covariates": known_covariates}
        if isinstance(data, xr.DataArray | xr.Dataset):
            return cls.from_xarray(data, **roles, **kwargs)
        if isinstance(data, pd.DataFrame):
            return cls.from_pandas(data, **roles, **kwargs)
        if isinstance(data, str | Path):
            return cls.from_csv(data, **roles, **kwargs)
        if isinstance(data, np.ndarray):
            return cls.from_numpy(data, **roles, **kwargs)
        raise TypeError(
            f"unsupported time-series input {type(data).__name__}; pass xarray, pandas, a CSV path or numpy"
        )

    @classmethod
    def from_numpy(
        cls,
        values: np.ndarray,
        targets: Any = None,
        past_covariates: Any = None,
        known_covariates: Any = None,
        *,
        variables: Sequence[str] | None = None,
        timestamps: Any = None,
        item_ids: Sequence[str] | None = None,
        freq: str | None = None,
        allow_irregular: bool = False,
    ) -> TimeSeriesFrame:
        """From a (T, V) or (items, T, V) array; `timestamps` (T,) are shared by the items; names default to "0".."""
        values = np.asarray(values)
        if values.ndim not in (2, 3):
            raise ValueError(f"numpy input must be (time, variables) or (items, time, variables), got {values.shape}")
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise ValueError(f"numpy input of dtype {values.dtype} is not numeric")
        values = values[None] if values.ndim == 2 else values
        n, t, v = values.shape
        names = [str(j) for j in range(v)] if variables is None else [str(x) for x in variables]
        ids = [str(i) for i in range(n)] if item_ids is None else [str(x) for x in item_ids]
        if len(names) != v or len(ids) != n:
            raise ValueError(f"numpy input {values.shape}: {len(ids)} item ids and {len(names)} variable names given")
        index = None if timestamps is None else pd.DatetimeIndex(timestamps)
        if index is not None and len(index) != t:
            raise ValueError(f"numpy input has {t} time steps but {len(index)} timestamps")
        items = {i: pd.DataFrame(values[k], columns=names, index=index) for k, i in enumerate(ids)}
        roles = (targets, past_covariates, known_covariates)
        return _assemble(items, "numpy input", roles, freq, allow_irregular)

    @classmethod
    def from_pandas(
        cls,
        data: pd.DataFrame,
        targets: Any = None,
        past_covariates: Any = None,
        known_covariates: Any = None,
        *,
        time: str | None = None,
        item: str | None = None,
        variable: str | None = None,
        value: str = "value",
        freq: str | None = None,
        allow_irregular: bool = False,
        source: str = "DataFrame",
        detect_time: bool = True,
        echo_values: bool = True,
    ) -> TimeSeriesFrame:
        """From a wide or long DataFrame.

        Wide: a time column (`time`, else a DatetimeIndex, else — with `detect_time` — a column named
        date/time/timestamp/datetime) and one column per variable. Long: an `item` column and/or a `variable` column;
        with `variable`, one row per (item, time, variable) holding `value`, else one column per variable. Missing
        long rows become NaN; items are sorted by id, variables keep their order of first appearance. `source` names
        the data in error messages; without `echo_values` (data read from a file) they show row numbers, never cell
        values.

        Raises:
            ValueError: naming `source` and the column, e.g. for a non-numeric column, a time column without dates,
                no observed value at all, or no observed value in any target variable.
        """
        if data.shape[0] == 0 or data.shape[1] == 0:
            raise ValueError(f"{source}: no data (shape {data.shape})")
        frame = data.copy()
        columns = shown(list(frame.columns))
        if frame.columns.duplicated().any():
            raise ValueError(f"{source}: duplicated column {frame.columns[frame.columns.duplicated()][0]!r}")
        if time is None and detect_time and not isinstance(frame.index, pd.DatetimeIndex):
            time = next((c for c in frame.columns if str(c).lower() in _TIME_NAMES), None)
        if time is not None:
            if time not in frame.columns:
                raise ValueError(f"{source}: time column {time!r} not found; columns are {columns}")
            frame.index = parse_times(frame.pop(time), source, time, echo_values)
        for name in [c for c in (item, variable) if c is not None] + ([value] if variable else []):
            if name not in frame.columns:
                raise ValueError(f"{source}: column {name!r} not found; columns are {columns}")
        if variable is not None:
            if not isinstance(frame.index, pd.DatetimeIndex):
                raise ValueError(f"{source}: the long format with a variable column needs a time column")
            _check_numeric(frame, [value], source, echo_values)
            frame[variable] = frame[variable].astype(str)
        else:
            _check_numeric(frame, [c for c in frame.columns if c != item], source, echo_values)
        groups = [("0", frame)] if item is None else list(frame.groupby(item, sort=True))
        order = list(pd.unique(frame[variable])) if variable is not None else []
        items: dict[str, pd.DataFrame] = {}
        for key, group in groups:
            name = str(key)
            rows = group.drop(columns=item) if item is not None else group
            if variable is not None:
                duplicated = pd.MultiIndex.from_arrays([rows.index, rows[variable]]).duplicated()
                if duplicated.any():
                    first = rows[duplicated].iloc[0]
                    raise ValueError(
                        f"{source}: item {name!r} has duplicated timestamp {rows.index[duplicated][0]} "
                        f"for variable {first[variable]!r}"
                    )
                rows = rows.pivot(columns=variable, values=value).reindex(columns=order)
                rows.columns.name = None
            items[name] = rows.rename(columns=str)
        return _assemble(items, source, (targets, past_covariates, known_covariates), freq, allow_irregular)

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        targets: Any = None,
        past_covariates: Any = None,
        known_covariates: Any = None,
        *,
        encoding: str = "utf-8",
        **kwargs: Any,
    ) -> TimeSeriesFrame:
        """From a wide or long CSV file (long when `item` or `variable` is given); see `from_pandas`.

        Raises:
            FileNotFoundError: naming the path.
            ValueError: naming the file: a binary file, text that is not `encoding`, a file that is not a CSV table,
                or the errors of `from_pandas` (which show column names and row numbers, never the file's lines).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"time-series CSV not found: {path}")
        data = read_csv(path, encoding, option="encoding")
        kwargs.setdefault("echo_values", False)
        return cls.from_pandas(data, targets, past_covariates, known_covariates, source=str(path), **kwargs)

    @classmethod
    def from_xarray(
        cls,
        data: xr.DataArray | xr.Dataset,
        targets: Any = None,
        past_covariates: Any = None,
        known_covariates: Any = None,
        *,
        time: str = "time",
        item: str = "item",
        variable: str = "variable",
        freq: str | None = None,
        allow_irregular: bool = False,
    ) -> TimeSeriesFrame:
        """From a DataArray with dims (time, variable) or (item, time, variable) in any order, or a Dataset whose
        data variables are the variables. A `role` coordinate on the variable dim gives default roles; `timestamp`
        (item, time) and `length` (item,) coordinates (written by `to_xarray`) give per-item timestamps."""
        source = f"xarray {type(data).__name__}"
        if isinstance(data, xr.Dataset):
            if not data.data_vars:
                raise ValueError(f"{source}: no data variables")
            data = data.to_dataarray(dim=variable)
        missing = [d for d in (time, variable) if d not in data.dims]
        extra = [d for d in data.dims if d not in (item, time, variable)]
        if missing or extra:
            raise ValueError(f"{source}: dims {data.dims} must be ({item!r},) {time!r}, {variable!r}")
        data = data.transpose(*[d for d in (item, time, variable) if d in data.dims])
        if data.size == 0:
            raise ValueError(f"{source}: no data (shape {data.shape})")
        array = data.values if item in data.dims else data.values[None]  # (items, T, V)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"{source}: values of dtype {array.dtype} are not numeric")
        n, t, v = array.shape
        names = [str(x) for x in data[variable].values] if variable in data.coords else [str(j) for j in range(v)]
        ids = [str(x) for x in data[item].values] if item in data.coords else [str(i) for i in range(n)]
        lengths = data["length"].values.astype(int) if "length" in data.coords else np.full(n, t)
        if time in data.coords and np.issubdtype(data[time].dtype, np.datetime64):
            stamps = [pd.DatetimeIndex(data[time].values)] * n
        elif "timestamp" in data.coords and np.issubdtype(data["timestamp"].dtype, np.datetime64):
            stamps = [pd.DatetimeIndex(row) for row in np.atleast_2d(data["timestamp"].values)]
        elif time in data.coords and not np.issubdtype(data[time].dtype, np.integer):
            raise ValueError(f"{source}: coordinate {time!r} of dtype {data[time].dtype} is not datetime")
        else:
            stamps = [None] * n
        items = {
            i: pd.DataFrame(array[k, t - lengths[k] :], columns=names, index=None if s is None else s[t - lengths[k] :])
            for k, (i, s) in enumerate(zip(ids, stamps))
        }
        roles: tuple[Any, Any, Any] = (targets, past_covariates, known_covariates)
        if all(r is None for r in roles) and "role" in data.coords:
            coded = [str(r) for r in data["role"].values]
            if set(coded) - set(ROLES):
                raise ValueError(f"{source}: role coordinate holds {sorted(set(coded) - set(ROLES))}; use {ROLES}")
            roles = tuple([n for n, r in zip(names, coded) if r == role] for role in ROLES)  # type: ignore[assignment]
        return _assemble(items, source, roles, freq, allow_irregular)

    def to_xarray(self) -> xr.DataArray:
        """DataArray (item, time, variable) with `role` (variable) and, when items differ in length, `length`
        (item) and per-item `timestamp` (item, time) coordinates; `from_xarray` reads it back unchanged."""
        coords: dict[str, Any] = {"item": self.item_ids, "variable": self.variables, "role": ("variable", self.roles)}
        if isinstance(self.timestamps, pd.DatetimeIndex):
            coords["time"] = self.timestamps
        elif isinstance(self.timestamps, list):
            coords["timestamp"] = (("item", "time"), np.stack([ix.values for ix in self.timestamps]))
        if (self.lengths != self.values.shape[1]).any():
            coords["length"] = ("item", self.lengths)
        attrs = {"freq": self.freq} if self.freq else {}
        return xr.DataArray(self.values, dims=("item", "time", "variable"), coords=coords, attrs=attrs)


def _assemble(
    items: dict[str, pd.DataFrame], source: str, roles: tuple[Any, Any, Any], freq: str | None, allow_irregular: bool
) -> TimeSeriesFrame:
    """Validates per-item wide frames (index = timestamps or positions) and stacks them right-aligned."""
    if not items:
        raise ValueError(f"{source}: no items")
    cleaned: dict[str, pd.DataFrame] = {}
    freqs: dict[str, str | None] = {}
    for name, rows in items.items():
        if rows.shape[0] == 0:
            raise ValueError(f"{source}: item {name!r} has no rows")
        cleaned[name], freqs[name] = clean_item(rows, name, source, freq, allow_irregular)
    variables = [str(c) for c in next(iter(cleaned.values())).columns]
    kept, role_list = _resolve_roles(variables, *roles, source)
    distinct = sorted({f for f in freqs.values() if f is not None})
    if len(distinct) > 1:
        detail = {f: [i for i, g in freqs.items() if g == f][:3] for f in distinct}
        if not allow_irregular:
            raise ValueError(f"{source}: items have different frequencies {detail}; pass freq=... to regularize")
        logger.warning("%s: items have different frequencies %s; the frame has no frequency", source, detail)
    frame_freq = distinct[0] if len(distinct) == 1 else None
    lengths = np.array([rows.shape[0] for rows in cleaned.values()])
    length = int(lengths.max())
    values = np.full((len(cleaned), length, len(kept)), np.nan, dtype=np.float32)  # (items, T, V)
    for k, rows in enumerate(cleaned.values()):
        values[k, length - lengths[k] :] = rows[kept].to_numpy(dtype=np.float32, na_value=np.nan)
    infinite = [kept[j] for j in np.flatnonzero(np.isinf(values).any(axis=(0, 1)))]
    if infinite:
        raise ValueError(f"{source}: variables {infinite} contain infinite values")
    observed = ~np.isnan(values)
    empty = [kept[j] for j in np.flatnonzero(~observed.any(axis=(0, 1)))]
    if len(empty) == len(kept):
        raise ValueError(f"{source}: no observed value: every value of {shown(kept)} is NaN (shape {values.shape})")
    targets = [v for v, r in zip(kept, role_list) if r == "target"]
    if set(targets) <= set(empty):
        raise ValueError(f"{source}: the target variables {shown(targets)} have no observed value (all NaN)")
    if empty:  # kept: `select` may drop them; windows over them are an error (nothing to learn from)
        logger.warning("%s: variables %s have no observed value (kept, observed all False)", source, empty)
    indexes = [rows.index for rows in cleaned.values()]
    timestamps: pd.DatetimeIndex | list[pd.DatetimeIndex] | None = None
    if isinstance(indexes[0], pd.DatetimeIndex):
        if all(ix.equals(indexes[0]) for ix in indexes):
            timestamps = pd.DatetimeIndex(indexes[0], freq=None, name=None)
        else:
            timestamps = [pd.DatetimeIndex(pad_index(ix, length, frame_freq), freq=None, name=None) for ix in indexes]
    return TimeSeriesFrame(values, observed, kept, role_list, list(cleaned), timestamps, frame_freq, lengths)


def check_compatible(
    frame: TimeSeriesFrame, num_channels: int | Sequence[str], include_covariates: bool = False
) -> None:
    """Checks that a frame feeds a model built for `num_channels` channels (or for these variable names).

    Args:
        frame: the fine-tuning (or inference) data.
        num_channels: the channel count of the model, or the variable names it was pretrained on.
        include_covariates: count every variable, not only the targets (models that take covariates as channels).

    Raises:
        ValueError: naming both counts and both sets of variable names.
    """
    names = frame.variables if include_covariates else frame.targets
    expected = num_channels if isinstance(num_channels, int) else len(num_channels)
    if len(names) != expected:
        built = "" if isinstance(num_channels, int) else f" ({list(num_channels)})"
        kind = "variables" if include_covariates else "target variables"
        raise ValueError(
            f"the model was built for {expected} channels{built} but the data has {len(names)} {kind}: {names}"
        )
