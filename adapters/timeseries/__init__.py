"""Time-series adapters (installed as `mmsdk.adapters.timeseries`)."""

from mmsdk.adapters.timeseries.data import (
    ForecastDataConfig,
    StandardScaler,
    WindowDataset,
    bundled_path,
    forecast_datasets,
    load_csv,
)
from mmsdk.adapters.timeseries.patchtst import PatchTSTAdapter, PatchTSTConfig

__all__ = [
    "ForecastDataConfig",
    "PatchTSTAdapter",
    "PatchTSTConfig",
    "StandardScaler",
    "WindowDataset",
    "bundled_path",
    "forecast_datasets",
    "load_csv",
]
