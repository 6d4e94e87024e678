"""One time-series data API for every model family: any input form → a validated `TimeSeriesFrame` → windows.

Inputs (xarray DataArray/Dataset, wide or long pandas DataFrames, CSV files, numpy arrays) become one frame of
values (items, T, V) with NaN where missing, an observed mask, variable names, a role per variable
(target / past / known covariate), timestamps and an inferred frequency (`series_frame.py`). `ForecastWindows`
cuts model-ready context/horizon windows from a frame; `ett_split` and `ratio_split` give scaled train/val/test
windows with the scaler fitted on observed training values only (`windows.py`).

This module is the stable import path of both: `from mmsdk.adapters.timeseries.frames import TimeSeriesFrame`.
"""

from __future__ import annotations

from mmsdk.adapters.timeseries.series_frame import ROLES, Role, TimeSeriesFrame, check_compatible
from mmsdk.adapters.timeseries.windows import (
    Borders,
    ForecastWindows,
    FrameSplit,
    StandardScaler,
    ett_borders,
    ett_split,
    ratio_borders,
    ratio_split,
)

__all__ = [
    "ROLES",
    "Borders",
    "ForecastWindows",
    "FrameSplit",
    "Role",
    "StandardScaler",
    "TimeSeriesFrame",
    "check_compatible",
    "ett_borders",
    "ett_split",
    "ratio_borders",
    "ratio_split",
]
