"""Time-series data from files: the recipe `data:` builder, the bundled datasets, and the plain CSV/window API.

`forecast_datasets` (and `build_forecast_data`, the recipe `data:` builder of the patchtst, timerxl and moirai
adapters) reads a wide or long CSV, Parquet or netCDF file into a `TimeSeriesFrame` (observed masks, several
items, checked timestamps), splits every item by time with the same rule (ETT months or ratios), fits the scaler on
observed training values only, and cuts context/horizon windows (NaN where unobserved, which the models accept).
`load_csv` and `WindowDataset` are the plain single-series API (`plain.py`, re-exported here).

Bundled data: ETTh1 (CC BY-ND 4.0, redistributed unmodified; see `data/ATTRIBUTION.md`) and `sensors_long`, a small
synthetic long-format CSV (3 items, missing values and rows; written by `data/make_sensors_long.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from torch.utils.data import Dataset

from mmsdk.adapters.timeseries.checks import read_csv, shown
from mmsdk.adapters.timeseries.covariate_checks import check_covariate_counts, check_known_values, read_static
from mmsdk.adapters.timeseries.plain import Series, WindowDataset, load_csv
from mmsdk.adapters.timeseries.series_frame import TimeSeriesFrame
from mmsdk.adapters.timeseries.windows import (
    ForecastWindows,
    FrameSplit,
    StandardScaler,
    ett_borders,
    ett_split,
    ratio_borders,
    ratio_split,
)
from mmsdk.config import Config, require
from mmsdk.contracts.data import DataSplits, InputsOnly, Stage

logger = logging.getLogger(__name__)

SplitName = Literal["train", "val", "test"]

__all__ = [
    "BUNDLED",
    "ForecastData",
    "ForecastDataConfig",
    "Series",
    "StandardScaler",
    "WindowDataset",
    "build_forecast_data",
    "bundled_path",
    "ett_borders",
    "forecast_datasets",
    "load_csv",
    "ratio_borders",
    "read_frame",
    "resolve_path",
]

BUNDLED = {"ETTh1": "ETTh1.csv", "sensors_long": "sensors_long.csv"}
_BUNDLED_PREFIX = "bundled:"
_DEFAULT_TIME = "date"  # the default time column may be absent (old wide CSVs without time stamps)
_PARQUET = (".parquet", ".pq")
_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf")


def bundled_path(name: str = "ETTh1") -> Path:
    """Path of a dataset shipped inside the package.

    Raises:
        ValueError: for an unknown name, listing the bundled ones.
    """
    if name not in BUNDLED:
        raise ValueError(f"no bundled dataset {name!r}; bundled: {sorted(BUNDLED)}")
    return Path(str(resources.files("mmsdk.adapters.timeseries") / "data" / BUNDLED[name]))


def resolve_path(path: str | Path | None) -> Path:
    """The file of a `data.path` value: None = the bundled ETTh1, `bundled:<name>` = a bundled dataset."""
    if path is None:
        return bundled_path("ETTh1")
    if isinstance(path, str) and path.startswith(_BUNDLED_PREFIX):
        return bundled_path(path[len(_BUNDLED_PREFIX) :])
    return Path(path).expanduser()


@dataclass
class ForecastDataConfig(Config):
    """Where the series come from, how they are read, and how they are split into windows."""

    path: str | None = None
    """Data file: CSV (also compressed, e.g. .csv.gz), Parquet (.parquet; needs pyarrow) or netCDF (.nc; read with
    xarray, dims time / item / variable). `bundled:<name>` = data shipped with mmsdk (ETTh1, sensors_long).
    None = the bundled ETTh1."""
    format: Literal["auto", "wide", "long"] = "auto"
    """Table layout. wide = one column per variable; long = one row per (item, time[, variable]) with the value in
    `value_column`; auto = long when `variable_column` is set, else wide. Ignored for netCDF files."""
    time_column: str | None = _DEFAULT_TIME
    """Time column (None when the file has none: rows are equally spaced steps). The default `date` may be absent
    (rows are then steps); any other name must exist. Timestamps are sorted per item; duplicates are errors."""
    item_column: str | None = None
    """Column naming the series (item) of each row, e.g. a sensor id: every item is split by time with the same
    rule and gives windows. None = one series."""
    variable_column: str | None = None
    """Long format: column naming the variable of each row (None: one variable per item, `value_column`)."""
    value_column: str = "value"
    """Long format: column holding the values."""
    columns: list[str] | None = None
    """Target variables, in this order: the model's channels (wide: column names; long: values of
    `variable_column`). Default: every variable that is not a covariate (wide: in column order; long: sorted by
    name)."""
    past_covariates: list[str] | None = None
    """Variables observed in the context only, fed to a covariate forecaster (moirai, timerxl configured with
    `past_covariates` = their count); never forecast or scored."""
    known_covariates: list[str] | None = None
    """Variables whose future values are known at forecast time (planned load, prices, holidays): the model sees
    them over the horizon. They must have no missing value inside the data."""
    static_categoricals: list[str] | None = None
    """Columns holding one category per item (store type, region): static categorical covariates, embedded by the
    model (moirai, timerxl with `static_categoricals` set to the categories this data has; the error of a mismatch
    lists them). Each must be constant within an item."""
    calendar: list[str] | None = None
    """Calendar features of the timestamps as extra known covariates, sin-cos encoded (two each): any of minute,
    hour, dayofweek, dayofmonth, dayofyear, month. Needs a time column."""
    split: Literal["ett", "ratio"] = "ett"
    """ett = the standard 12/4/4-month ETT split; ratio = 70/10/20 % of the rows (of each item)."""
    freq: str = "h"
    """Sampling frequency: h or 15min for the ETT split; also the grid (any pandas alias) of `fill_gaps`."""
    fill_gaps: bool = False
    """Insert NaN rows for time steps missing on the `freq` grid (needs a time column)."""
    allow_irregular: bool = False
    """Keep irregular time steps as they are (windows then span uneven time) instead of failing."""
    encoding: str = "utf-8"
    """Text encoding of a CSV file (e.g. latin-1 or cp1252 for files not saved as UTF-8)."""
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
        require(
            not (self.format == "wide" and self.variable_column is not None),
            self,
            "variable_column",
            f"is for long tables; set format: long (or auto) or drop it (got {self.variable_column!r})",
        )
        require(bool(self.value_column), self, "value_column", "must name a column")
        require(
            self.columns is None or (len(self.columns) > 0 and len(set(self.columns)) == len(self.columns)),
            self,
            "columns",
            f"must be None or distinct names, got {self.columns}",
        )
        require(
            not (self.variable_column is not None and self.time_column is None),
            self,
            "time_column",
            "long tables with a variable_column need a time column",
        )
        require(not (self.fill_gaps and self.time_column is None), self, "fill_gaps", "needs a time_column")
        require(not (self.calendar and self.time_column is None), self, "calendar", "needs a time_column")
        named = [*(self.columns or []), *(self.past_covariates or []), *(self.known_covariates or [])]
        repeated = sorted({n for n in named if named.count(n) > 1})
        require(not repeated, self, "known_covariates", f"variables {repeated} are named in more than one role")

    @property
    def covariate_names(self) -> list[str]:
        """Past then known covariates named in the config (calendar features come later, from the timestamps)."""
        return [*(self.past_covariates or []), *(self.known_covariates or [])]

    @property
    def layout(self) -> Literal["wide", "long"]:
        """The table layout after resolving `auto`."""
        if self.format == "auto":
            return "long" if self.variable_column is not None else "wide"
        return self.format


def _read_table(path: Path, encoding: str) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (Parquet needs the optional pyarrow or fastparquet)."""
    if path.suffix.lower() in _PARQUET:
        try:
            return pd.read_parquet(path)
        except ImportError as error:
            raise ImportError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {error}") from error
        except (ValueError, OSError) as error:  # e.g. pyarrow's ArrowInvalid: no Parquet magic bytes
            raise ValueError(f"{path}: not a readable Parquet file ({type(error).__name__})") from None
    return read_csv(path, encoding, option="data.encoding")


def _require_column(table: pd.DataFrame, name: str, field: str, source: str) -> None:
    if name not in table.columns:
        raise ValueError(f"{source}: data.{field}={name!r} is not a column; the file has {shown(list(table.columns))}")


def _require_variables(config: ForecastDataConfig, present: set[str], source: str, listing: str, why: str) -> None:
    """Raises for target or covariate names (data.columns, data.past_covariates, data.known_covariates) that are not
    in `present`: "<source>: data.<field> [names] <why>; the file has <listing>"."""
    for field_name in ("columns", "past_covariates", "known_covariates"):
        missing = [c for c in getattr(config, field_name) or [] if c not in present]
        if missing:
            raise ValueError(f"{source}: data.{field_name} {missing} {why}; the file has {listing}")


def _frame_from_table(table: pd.DataFrame, config: ForecastDataConfig, source: str) -> TimeSeriesFrame:
    """Wide or long table → frame, with the config's columns checked (errors name the file and the field)."""
    if table.empty:
        raise ValueError(f"{source}: the file has no rows")
    static = read_static(table, config.static_categoricals or [], config.item_column, source)
    table = table.drop(columns=list(static))
    time = config.time_column
    if time is not None and time not in table.columns:
        if time != _DEFAULT_TIME or config.variable_column is not None or config.fill_gaps:
            _require_column(table, time, "time_column", source)
        time = None  # the default `date` is optional: rows are equally spaced steps
    item = config.item_column
    if item is not None:
        _require_column(table, item, "item_column", source)
    keys = [c for c in (time, item) if c is not None]
    variable, value = None, None
    if config.layout == "long":
        _require_column(table, config.value_column, "value_column", source)
        value = config.value_column
        if config.variable_column is not None:
            variable = config.variable_column
            _require_column(table, variable, "variable_column", source)
            names = table[variable].astype(str)
            listing = f"variables {shown(list(pd.unique(names)), limit=50)}"
            _require_variables(config, set(names), source, listing, f"are not values of {variable!r}")
            if config.columns is not None:
                table = table[names.isin([*config.columns, *config.covariate_names])]
            table = table[[*keys, variable, value]]
        else:
            table = table[[*keys, value]]
    else:
        variables = [c for c in table.columns if c not in keys]
        _require_variables(config, set(variables), source, shown(list(table.columns)), "not found")
        if config.columns is not None:
            variables = [*config.columns, *config.covariate_names]
        table = table[[*keys, *variables]]
    try:
        frame = TimeSeriesFrame.from_pandas(
            table,
            time=time,
            item=item,
            variable=variable,
            value=value or "value",
            freq=config.freq if config.fill_gaps else None,
            allow_irregular=config.allow_irregular,
            source=source,
            detect_time=False,
            echo_values=False,
        )
    except ValueError as error:
        if "irregular" in str(error):
            hint = "recipe fields: data.fill_gaps: true with data.freq, or data.allow_irregular: true"
            raise ValueError(f"{error} ({hint})") from error
        raise
    if variable is not None and config.columns is None:
        frame = frame.select(sorted(frame.variables))  # channel order independent of the row order of the file
    if static:
        frame = replace(
            frame, static={name: [values[item] for item in frame.item_ids] for name, values in static.items()}
        )
    return frame


def _frame_from_netcdf(path: Path, config: ForecastDataConfig) -> TimeSeriesFrame:
    """A netCDF file (xarray Dataset of variables, or one DataArray with a variable dim) → frame."""
    try:
        with xr.open_dataset(path) as opened:
            dataset = opened.load()
    except (ImportError, ValueError, OSError) as error:
        raise ValueError(
            f"{path}: cannot read the netCDF file ({error}); netCDF4/HDF5 files need `pip install h5netcdf`"
        ) from error
    variable = config.variable_column or "variable"
    data: xr.Dataset | xr.DataArray = dataset
    arrays = list(dataset.data_vars.values())
    if len(arrays) == 1 and variable in arrays[0].dims:
        data = arrays[0]
    dims = set(data.dims) | set(dataset.dims)
    time = config.time_column if config.time_column in dims else "time"
    try:
        return TimeSeriesFrame.from_xarray(
            data,
            time=time,
            item=config.item_column or "item",
            variable=variable,
            freq=config.freq if config.fill_gaps else None,
            allow_irregular=config.allow_irregular,
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def read_frame(config: ForecastDataConfig) -> TimeSeriesFrame:
    """Reads the file of a data config into a frame with only `config.columns` (in their order) as targets.

    Raises:
        FileNotFoundError: naming the path.
        ImportError: for Parquet without pyarrow, naming the file.
        ValueError: naming the file and the config field (a missing column lists the available ones).
    """
    path = resolve_path(config.path)
    if not path.is_file():
        raise FileNotFoundError(f"time-series data file not found: {path} (data.path)")
    if path.suffix.lower() in _NETCDF:
        frame = _frame_from_netcdf(path, config)
    else:
        frame = _frame_from_table(_read_table(path, config.encoding), config, str(path))
    try:
        frame = frame.with_roles(config.past_covariates or (), config.known_covariates or ())
    except ValueError as error:
        raise ValueError(f"{path}: data.past_covariates / data.known_covariates: {error}") from error
    if config.columns is not None:
        try:
            frame = frame.select([*config.columns, *config.covariate_names])
        except ValueError as error:
            raise ValueError(f"{path}: data.columns: {error}") from error
    if config.calendar:
        try:
            frame = frame.with_calendar(config.calendar)
        except ValueError as error:
            raise ValueError(f"{path}: data.calendar: {error}") from error
    check_known_values(frame, str(path))
    return frame


@dataclass
class ForecastData:
    """Scaled train/val/test windows and what is needed to read results in data units.

    Attributes:
        train, val, test: windows of every item; items are x (L, C) or (x, y (H, C)), NaN where unobserved; with
            covariates x is the input mapping (see `ForecastWindows`).
        scaler: per-variable statistics of the observed training values (every variable, covariates included, in
            `frame.variables` order); `scaler.inverse` gives data units.
        columns: the C target variables (model channels).
        series: the unscaled series when the data has one item (None for several items).
        frame: the unscaled frame (every item).
        split: the scaled frame and the per-item train/val/test row ranges.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    scaler: StandardScaler
    columns: list[str]
    series: Series | None
    frame: TimeSeriesFrame
    split: FrameSplit


def forecast_datasets(
    config: ForecastDataConfig,
    context_length: int,
    pretraining: bool = False,
    static_vocabulary: dict[str, list[str]] | None = None,
) -> ForecastData:
    """Loads, splits every item by time, scales (scaler fit on observed training values only) and windows.

    Windows whose context holds no observed value are dropped; an item without any observed value is an error.
    A split shorter than context + horizon gives one window, left-padded with NaN (logged).

    Args:
        config: data config.
        context_length: L of the model.
        pretraining: training windows without targets (horizon 0); val/test keep targets.
        static_vocabulary: the model's categories per static feature (default: the data's own).

    Raises:
        FileNotFoundError, ImportError, ValueError: naming the file and the config field (see `read_frame`).
    """
    path = resolve_path(config.path)
    frame = read_frame(config)
    try:
        if config.split == "ett":
            split = ett_split(frame, context_length, config.freq)
        else:
            split = ratio_split(frame, context_length)
    except ValueError as error:
        raise ValueError(f"{path}: data.split={config.split!r}: {error}") from error
    scaler = split.scaler
    if scaler is None:  # ett_split / ratio_split scale by default
        raise RuntimeError("the split has no scaler")
    train_horizon = 0 if pretraining else config.horizon
    horizons: dict[SplitName, int] = {"train": train_horizon, "val": config.horizon, "test": config.horizon}
    windows: dict[SplitName, ForecastWindows] = {}
    covariates = bool(frame.past_covariates or frame.known_covariates or frame.static)
    for name, horizon in horizons.items():
        for item, (start, end) in zip(frame.item_ids, split.borders[name]):
            if end - start < context_length + horizon:
                logger.warning(
                    "%s: item %r: the %s split has %d rows < context_length + horizon = %d; left-padded with NaN",
                    path,
                    item,
                    name,
                    end - start,
                    context_length + horizon,
                )
        try:
            stride = config.stride if name == "train" else 1
            windows[name] = split.windows(name, horizon, stride, covariates, static_vocabulary)
        except ValueError as error:
            raise ValueError(f"{path}: {name} split: {error}") from error
    if len(frame.item_ids) == 1:
        (tr0, tr1), (va0, va1), (te0, te1) = (split.borders[name][0] for name in ("train", "val", "test"))
        logger.info("split %s: train rows %d-%d, val %d-%d, test %d-%d", path, tr0, tr1, va0, va1, te0, te1)
    else:
        logger.info("split %s: %d items (%s)", path, len(frame.item_ids), ", ".join(frame.item_ids[:5]))
    logger.info(
        "windows: train %d, val %d, test %d of variables %s",
        *(len(windows[n]) for n in horizons),
        frame.variables,
    )
    series = None
    if len(frame.item_ids) == 1:
        stamps = frame.timestamps if isinstance(frame.timestamps, pd.DatetimeIndex) else None
        # column-major (T, C), like `load_csv`, so numpy reductions over time match it exactly
        series = Series(np.asfortranarray(frame.values[0]), list(frame.variables), stamps)
    return ForecastData(
        train=windows["train"],
        val=windows["val"],
        test=windows["test"],
        scaler=scaler,
        columns=list(frame.targets),
        series=series,
        frame=frame,
        split=split,
    )


def build_forecast_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Recipe `data:` builder for time-series adapters: pretraining windows or (x, y) forecast windows.

    Args:
        data: the recipe's `data:` section (`ForecastDataConfig` fields).
        model_config: the (one-modality) model config; its adapter's `context_length` is the window length L.
        stage: pretrain (training items x (L, C); val items x) or finetune (items (x (L, C), y (H, C))).
    """
    config = ForecastDataConfig.from_dict(data)
    _, modality = model_config.only_modality()
    context_length = int(modality.adapter_config["context_length"])
    vocabulary = modality.adapter_config.get("static_categoricals") or None
    if vocabulary is not None and set(vocabulary) != set(config.static_categoricals or []):
        raise ValueError(
            f"model.adapter_config.static_categoricals names {sorted(vocabulary)}, data.static_categoricals "
            f"{sorted(config.static_categoricals or [])}: they must name the same columns"
        )
    splits = forecast_datasets(config, context_length, stage == "pretrain", vocabulary)
    check_covariate_counts(splits.frame, modality.adapter, modality.adapter_config)
    val = splits.val if stage == "finetune" else InputsOnly(splits.val)
    info = {
        "columns": splits.columns,
        "past_covariates": splits.frame.past_covariates,
        "known_covariates": splits.frame.known_covariates,
        "static_categoricals": splits.frame.static_vocabulary(),
        "items": list(splits.frame.item_ids),
        "scaler_mean": splits.scaler.mean,
        "scaler_std": splits.scaler.std,
    }
    return DataSplits(splits.train, val, splits.test, config.batch_size, info)
