"""Time-series adapters (installed as `mmsdk.adapters.timeseries`)."""

from mmsdk.adapters.timeseries.patchtst import PatchTSTAdapter, PatchTSTConfig

__all__ = ["PatchTSTAdapter", "PatchTSTConfig"]
