"""Time-series adapters (installed as `mmsdk.adapters.timeseries`).

Names are imported on first use, so resolving an adapter (e.g. `patchtst`, whose model code needs torch only)
does not import the data stack (pandas, xarray, statsmodels, yaml) that the data helpers use.
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "CorpusConfig": "mmsdk.adapters.timeseries.corpus",
    "CorpusDataConfig": "mmsdk.adapters.timeseries.corpus",
    "ForecastDataConfig": "mmsdk.adapters.timeseries.data",
    "ForecastWindows": "mmsdk.adapters.timeseries.frames",
    "FrameSplit": "mmsdk.adapters.timeseries.frames",
    "Mixture": "mmsdk.adapters.timeseries.distributions",
    "MixtureConfig": "mmsdk.adapters.timeseries.distributions",
    "MixtureHead": "mmsdk.adapters.timeseries.distributions",
    "MoiraiAdapter": "mmsdk.adapters.timeseries.moirai",
    "MoiraiConfig": "mmsdk.adapters.timeseries.moirai",
    "PackedInputs": "mmsdk.adapters.timeseries.packing",
    "PatchTSTAdapter": "mmsdk.adapters.timeseries.patchtst",
    "PatchTSTConfig": "mmsdk.adapters.timeseries.patchtst",
    "SeriesWindows": "mmsdk.adapters.timeseries.packing",
    "StandardScaler": "mmsdk.adapters.timeseries.data",
    "TimeSeriesFrame": "mmsdk.adapters.timeseries.frames",
    "TimerXLAdapter": "mmsdk.adapters.timeseries.timerxl",
    "TimerXLConfig": "mmsdk.adapters.timeseries.timerxl",
    "WindowDataset": "mmsdk.adapters.timeseries.data",
    "build_corpus": "mmsdk.adapters.timeseries.corpus",
    "bundled_path": "mmsdk.adapters.timeseries.data",
    "check_compatible": "mmsdk.adapters.timeseries.frames",
    "config_from_hf": "mmsdk.adapters.timeseries.hf_patchtst",
    "ett_split": "mmsdk.adapters.timeseries.frames",
    "forecast_datasets": "mmsdk.adapters.timeseries.data",
    "kernel_synth": "mmsdk.adapters.timeseries.corpus",
    "load_csv": "mmsdk.adapters.timeseries.data",
    "load_hf_patchtst": "mmsdk.adapters.timeseries.hf_patchtst",
    "load_statsmodels_series": "mmsdk.adapters.timeseries.corpus",
    "patch_size_for_freq": "mmsdk.adapters.timeseries.moirai",
    "ratio_split": "mmsdk.adapters.timeseries.frames",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
