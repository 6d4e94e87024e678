"""Time-series adapters (installed as `mmsdk.adapters.timeseries`)."""

from mmsdk.adapters.timeseries.data import (
    ForecastDataConfig,
    StandardScaler,
    WindowDataset,
    bundled_path,
    forecast_datasets,
    load_csv,
)
from mmsdk.adapters.timeseries.frames import (
    ForecastWindows,
    FrameSplit,
    TimeSeriesFrame,
    check_compatible,
    ett_split,
    ratio_split,
)
from mmsdk.adapters.timeseries.patchtst import PatchTSTAdapter, PatchTSTConfig

__all__ = [
    "ForecastDataConfig",
    "ForecastWindows",
    "FrameSplit",
    "PatchTSTAdapter",
    "PatchTSTConfig",
    "StandardScaler",
    "TimeSeriesFrame",
    "WindowDataset",
    "bundled_path",
    "check_compatible",
    "ett_split",
    "forecast_datasets",
    "load_csv",
    "ratio_split",
]
