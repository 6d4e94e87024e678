"""Time-series adapters (installed as `mmsdk.adapters.timeseries`)."""

from mmsdk.adapters.timeseries.corpus import (
    CorpusConfig,
    CorpusDataConfig,
    build_corpus,
    kernel_synth,
    load_statsmodels_series,
)
from mmsdk.adapters.timeseries.data import (
    ForecastDataConfig,
    StandardScaler,
    WindowDataset,
    bundled_path,
    forecast_datasets,
    load_csv,
)
from mmsdk.adapters.timeseries.distributions import Mixture, MixtureConfig, MixtureHead
from mmsdk.adapters.timeseries.frames import (
    ForecastWindows,
    FrameSplit,
    TimeSeriesFrame,
    check_compatible,
    ett_split,
    ratio_split,
)
from mmsdk.adapters.timeseries.hf_patchtst import config_from_hf, load_hf_patchtst
from mmsdk.adapters.timeseries.moirai import MoiraiAdapter, MoiraiConfig, patch_size_for_freq
from mmsdk.adapters.timeseries.packing import PackedInputs, SeriesWindows
from mmsdk.adapters.timeseries.patchtst import PatchTSTAdapter, PatchTSTConfig
from mmsdk.adapters.timeseries.timerxl import TimerXLAdapter, TimerXLConfig

__all__ = [
    "CorpusConfig",
    "CorpusDataConfig",
    "ForecastDataConfig",
    "ForecastWindows",
    "FrameSplit",
    "Mixture",
    "MixtureConfig",
    "MixtureHead",
    "MoiraiAdapter",
    "MoiraiConfig",
    "PackedInputs",
    "PatchTSTAdapter",
    "PatchTSTConfig",
    "SeriesWindows",
    "StandardScaler",
    "TimeSeriesFrame",
    "TimerXLAdapter",
    "TimerXLConfig",
    "WindowDataset",
    "build_corpus",
    "bundled_path",
    "check_compatible",
    "config_from_hf",
    "ett_split",
    "forecast_datasets",
    "kernel_synth",
    "load_csv",
    "load_hf_patchtst",
    "load_statsmodels_series",
    "patch_size_for_freq",
    "ratio_split",
]
