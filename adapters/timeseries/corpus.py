"""A pretraining corpus for universal forecasters: real series shipped inside statsmodels, plus KernelSynth-style
Gaussian-process series, and the recipe data builder of the Moirai adapter.

Real series. :data:`STATSMODELS_SERIES` lists the time series of `statsmodels.datasets` (installed with the
`timeseries` extra, `pip install "mmsdk[timeseries]"`; they ship inside the wheel, nothing is downloaded) with
their frequencies: weekly CO2, yearly sunspots and Nile flow, monthly El Niño sea-surface temperatures and
electrical-equipment orders, quarterly US and Danish macro variables, yearly fertility rates of ~200 countries and
yearly Grunfeld investment data of 11 firms. Multivariate datasets stay multivariate (one series with C variates).
No ETT data is ever part of the corpus (it is the zero-shot evaluation set).

Synthetic series. :func:`kernel_synth` draws Gaussian-process samples whose kernel is a random composition (sums
and products) of 1..`max_kernels` kernels from a bank (:func:`kernel_bank`): RBF at several length-scales,
periodic kernels whose periods are the daily/weekly/yearly seasonalities of hourly, half-hourly, 15-minute,
daily, weekly, monthly and quarterly data, linear (dot-product), rational quadratic and white noise. A
multivariate synthetic series draws its C variates independently from one composed kernel. Everything is numpy
and a pure function of the seed: series i depends on (seed, i) only.

Recipes. The Moirai data builder (:func:`build_moirai_data`) reads a `corpus:` sub-section of a recipe's `data:`
and pretrains on packed windows of the corpus (:class:`~mmsdk.adapters.timeseries.packing.SeriesWindows`); the
last `val_fraction` of every series is held out for validation. Without `corpus:` it is the CSV-window builder of
the other time-series adapters.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from mmsdk.adapters.timeseries.checks import check_observed
from mmsdk.adapters.timeseries.data import build_forecast_data
from mmsdk.adapters.timeseries.packing import SeriesWindows
from mmsdk.config import Config, require
from mmsdk.contracts.data import DataSplits, Stage

logger = logging.getLogger(__name__)

STATSMODELS_SERIES: dict[str, str] = {
    "co2": "W-SAT",
    "sunspots": "Y",
    "nile": "Y",
    "elnino": "M",
    "elec_equip": "M",
    "macrodata": "Q",
    "danish_data": "Q",
    "interest_inflation": "Q",
    "fertility": "Y",
    "grunfeld": "Y",
}
"""statsmodels datasets used as time series → their pandas frequency."""

SEASONAL_PERIODS: tuple[float, ...] = (4, 6, 7, 12, 14, 24, 26, 30, 48, 52, 96, 168, 336, 365, 672)
"""Periods (in steps) of the periodic kernels: quarterly→yearly 4, monthly→half-year/yearly 6/12, daily→weekly,
fortnightly, monthly, yearly 7/14/30/365, weekly→half-year/yearly 26/52, hourly→daily/weekly 24/168, half-hourly
48/336, 15-minute 96/672."""


@dataclass
class CorpusSeries:
    """One corpus series: values (T, C) float32 with NaN where missing, its name and pandas frequency."""

    name: str
    values: np.ndarray
    freq: str


def _load_statsmodels(name: str) -> Any:
    """The pandas frame of statsmodels dataset `name` (shipped inside the statsmodels wheel)."""
    try:
        module = importlib.import_module(f"statsmodels.datasets.{name}")
    except ImportError as error:
        raise ImportError(
            'the real-data part of the corpus needs statsmodels: pip install "mmsdk[timeseries]" (or set '
            "CorpusConfig.statsmodels to [] for a synthetic-only corpus)"
        ) from error
    return module.load_pandas().data


def _columns(frame: Any, drop: tuple[str, ...] = ()) -> np.ndarray:
    return frame.drop(columns=[c for c in drop if c in frame.columns]).to_numpy(dtype=np.float32)


def load_statsmodels_series(names: tuple[str, ...] | list[str] = tuple(STATSMODELS_SERIES)) -> list[CorpusSeries]:
    """The named statsmodels datasets as corpus series (panels such as fertility give one series per unit).

    Raises:
        ImportError: naming the `timeseries` extra when statsmodels is not installed.
        ValueError: for a name not in :data:`STATSMODELS_SERIES`.
    """
    unknown = [n for n in names if n not in STATSMODELS_SERIES]
    if unknown:
        raise ValueError(f"unknown statsmodels series {unknown}; known: {sorted(STATSMODELS_SERIES)}")
    out: list[CorpusSeries] = []
    for name in names:
        frame = _load_statsmodels(name)
        freq = STATSMODELS_SERIES[name]
        if name == "elnino":  # one row per year, one column per month
            values = [_columns(frame, ("YEAR",)).reshape(-1, 1)]
        elif name == "fertility":  # one row per country, one column per year
            years = frame[[c for c in frame.columns if str(c).isdigit()]].to_numpy(dtype=np.float32)
            values = [row.reshape(-1, 1) for row in years if np.isfinite(row).sum() >= 2]
        elif name == "grunfeld":  # a panel of firms
            values = [_columns(group.sort_values("year"), ("firm", "year")) for _, group in frame.groupby("firm")]
        else:
            values = [_columns(frame, ("year", "quarter", "YEAR"))]
        out.extend(CorpusSeries(f"{name}/{k}" if len(values) > 1 else name, v, freq) for k, v in enumerate(values))
    return out


Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`kernel(d, t)`: the (T, T) covariance from the distances d = |t_i - t_j| (T, T) and the inputs t (T,)."""


def _rbf(length_scale: float) -> Kernel:
    return lambda d, t: np.exp(-0.5 * (d / length_scale) ** 2)


def _periodic(period: float, length_scale: float = 1.0) -> Kernel:
    return lambda d, t: np.exp(-2.0 * (np.sin(np.pi * d / period) / length_scale) ** 2)


def _linear(offset: float) -> Kernel:
    return lambda d, t: offset**2 + np.outer(t, t)


def _rational_quadratic(alpha: float, length_scale: float = 1.0) -> Kernel:
    return lambda d, t: (1.0 + d**2 / (2.0 * alpha * length_scale**2)) ** -alpha


def _white(level: float) -> Kernel:
    return lambda d, t: level * (d == 0).astype(np.float64)


def kernel_bank(length: int) -> list[tuple[str, Kernel]]:
    """The named kernels compositions draw from, for inputs t = step / length in [0, 1)."""
    bank: list[tuple[str, Kernel]] = [(f"rbf({s})", _rbf(s)) for s in (0.01, 0.1, 1.0, 10.0)]
    bank += [(f"periodic({p})", _periodic(p / length)) for p in SEASONAL_PERIODS if p * 2 <= length]
    bank += [(f"linear({c})", _linear(c)) for c in (0.0, 1.0, 10.0)]
    bank += [(f"rq({a})", _rational_quadratic(a, 0.1)) for a in (0.1, 1.0, 10.0)]
    bank += [(f"white({w})", _white(w)) for w in (0.01, 0.1, 1.0)]
    return bank


def compose_kernel(rng: np.random.Generator, length: int, max_kernels: int) -> tuple[str, Kernel]:
    """A random composition of 1..max_kernels bank kernels, joined left to right by random + or ×."""
    bank = kernel_bank(length)
    picks = rng.integers(0, len(bank), size=int(rng.integers(1, max_kernels + 1)))
    name, kernel = bank[picks[0]]
    for pick in picks[1:]:
        other_name, other = bank[pick]
        if rng.random() < 0.5:
            name, kernel = f"({name} + {other_name})", (lambda d, t, k=kernel, o=other: k(d, t) + o(d, t))
        else:
            name, kernel = f"({name} * {other_name})", (lambda d, t, k=kernel, o=other: k(d, t) * o(d, t))
    return name, kernel


def sample_gp(kernel: Kernel, length: int, rng: np.random.Generator, num_samples: int = 1) -> np.ndarray:
    """Zero-mean GP draws (length, num_samples) at t = step / length (Cholesky with growing jitter)."""
    t = np.arange(length, dtype=np.float64) / length
    cov = kernel(np.abs(t[:, None] - t[None, :]), t)  # (T, T)
    cov = 0.5 * (cov + cov.T)
    scale = max(float(np.mean(np.diag(cov))), 1e-12)
    eye = np.eye(length)
    for jitter in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2):
        try:
            chol = np.linalg.cholesky(cov + jitter * scale * eye)
            break
        except np.linalg.LinAlgError:
            continue
    else:  # not positive definite even with 1 % jitter: clip the spectrum
        eigval, eigvec = np.linalg.eigh(cov)
        chol = eigvec * np.sqrt(np.clip(eigval, 0.0, None))
    return chol @ rng.standard_normal((length, num_samples))


def kernel_synth(
    num_series: int,
    length: int,
    max_kernels: int = 5,
    max_variates: int = 1,
    min_length: int | None = None,
    seed: int = 0,
) -> list[CorpusSeries]:
    """KernelSynth-style synthetic series: GP draws from random kernel compositions.

    Args:
        num_series: how many series.
        length: steps of each series (the longest, with `min_length`).
        max_kernels: at most this many bank kernels per composition.
        max_variates: each series has 1..max_variates variates (independent draws from its kernel).
        min_length: when set, lengths are drawn uniformly from [min_length, length].
        seed: series i is a pure function of (seed, i).

    Returns:
        Series named `synthetic/<i>` with freq "synthetic" and values (T_i, C_i) float32.
    """
    out: list[CorpusSeries] = []
    for i in range(num_series):
        rng = np.random.default_rng([seed, i])
        steps = length if min_length is None else int(rng.integers(min_length, length + 1))
        variates = int(rng.integers(1, max_variates + 1))
        _, kernel = compose_kernel(rng, steps, max_kernels)
        values = sample_gp(kernel, steps, rng, variates)
        out.append(CorpusSeries(f"synthetic/{i}", values.astype(np.float32), "synthetic"))
    return out


@dataclass
class CorpusConfig(Config):
    """Which series make up a pretraining corpus (never ETT data)."""

    statsmodels: tuple[str, ...] = tuple(STATSMODELS_SERIES)
    """statsmodels datasets to include (needs the `timeseries` extra); [] for a synthetic-only corpus."""
    synthetic_series: int = 1000
    """KernelSynth Gaussian-process series."""
    synthetic_length: int = 1024
    """Steps of a synthetic series (the longest, with `synthetic_min_length`)."""
    synthetic_min_length: int | None = None
    """When set, synthetic lengths are drawn uniformly from [synthetic_min_length, synthetic_length]."""
    max_kernels: int = 5
    """Kernels per random composition (1..max_kernels)."""
    synthetic_variates: int = 1
    """Synthetic series have 1..synthetic_variates variates."""
    real_repeats: int = 1
    """How many times the real series enter the corpus (upweights them next to many synthetic series)."""
    seed: int = 0
    """Seeds the synthetic series."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.statsmodels = tuple(self.statsmodels)
        unknown = [n for n in self.statsmodels if n not in STATSMODELS_SERIES]
        require(not unknown, self, "statsmodels", f"unknown dataset(s) {unknown}; known: {sorted(STATSMODELS_SERIES)}")
        require(self.synthetic_series >= 0, self, "synthetic_series", f"must be >= 0, got {self.synthetic_series}")
        require(self.synthetic_length >= 2, self, "synthetic_length", f"must be >= 2, got {self.synthetic_length}")
        require(
            self.synthetic_min_length is None or 2 <= self.synthetic_min_length <= self.synthetic_length,
            self,
            "synthetic_min_length",
            f"must be None or in [2, synthetic_length={self.synthetic_length}], got {self.synthetic_min_length}",
        )
        require(self.max_kernels >= 1, self, "max_kernels", f"must be >= 1, got {self.max_kernels}")
        require(
            self.synthetic_variates >= 1, self, "synthetic_variates", f"must be >= 1, got {self.synthetic_variates}"
        )
        require(self.real_repeats >= 1, self, "real_repeats", f"must be >= 1, got {self.real_repeats}")
        require(self.synthetic_series > 0 or len(self.statsmodels) > 0, self, "synthetic_series", "the corpus is empty")


def build_corpus(config: CorpusConfig) -> list[CorpusSeries]:
    """The corpus of a config: the statsmodels series (`real_repeats` times), then the synthetic ones.

    Raises:
        ValueError: naming the series and variate, for a series (or variate) without a single observed value.
    """
    real = load_statsmodels_series(config.statsmodels) if config.statsmodels else []
    for series in real:  # partly missing values are fine; an all-NaN variate gives the model nothing to learn
        check_observed(series.values, None, f"corpus series {series.name!r}")
    synthetic = kernel_synth(
        config.synthetic_series,
        config.synthetic_length,
        config.max_kernels,
        config.synthetic_variates,
        config.synthetic_min_length,
        config.seed,
    )
    logger.info("corpus: %d real series (x%d), %d synthetic", len(real), config.real_repeats, len(synthetic))
    return real * config.real_repeats + synthetic


def split_corpus(
    series: list[CorpusSeries], val_fraction: float, min_steps: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, val) arrays: the last `val_fraction` of every series is held out when it has >= `min_steps` steps
    (the first part then has no overlap with it); shorter held-out parts stay in training."""
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for s in series:
        steps = s.values.shape[0]
        held = round(steps * val_fraction)
        if held >= min_steps and steps - held >= min_steps:
            train.append(s.values[: steps - held])
            val.append(s.values[steps - held :])
        else:
            train.append(s.values)
    return train, val


@dataclass
class CorpusDataConfig(Config):
    """A recipe's `data:` section for packed pretraining on a corpus (Moirai)."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Which series make up the corpus."""
    max_tokens: int = 512
    """Tokens per packed row (a window holds at most this many: variates × patches)."""
    batch_size: int = 64
    """Windows (series) per batch, packed into as many rows as they need."""
    stride: int | None = None
    """Steps between window starts in a series (None: half the longest window of that series)."""
    min_patches: int = 2
    """Shortest window, in patches per variate."""
    variable_length: bool = True
    """Draw window lengths in [min_patches, longest] patches (else every window is as long as it can be)."""
    val_fraction: float = 0.1
    """The last fraction of every series (of at least min_patches patches) held out for validation; 0 = none."""
    seed: int = 0
    """Seeds the window lengths and offsets."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_tokens >= 1, self, "max_tokens", f"must be >= 1, got {self.max_tokens}")
        require(self.batch_size >= 1, self, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.stride is None or self.stride >= 1, self, "stride", f"must be None or >= 1, got {self.stride}")
        require(self.min_patches >= 2, self, "min_patches", f"must be >= 2 (statistics + tail), got {self.min_patches}")
        require(0.0 <= self.val_fraction < 1.0, self, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")


def corpus_datasets(
    config: CorpusDataConfig, patch_size: int, max_length: int, max_variates: int | None = None
) -> tuple[SeriesWindows, SeriesWindows | None]:
    """(train, val) packed-window datasets of a corpus for a model with this patch size and context length."""
    series = build_corpus(config.corpus)
    min_steps = config.min_patches * patch_size
    if config.val_fraction > 0:
        train, val = split_corpus(series, config.val_fraction, min_steps)
    else:
        train, val = [s.values for s in series], []
    windows = {
        "patch_size": patch_size,
        "max_tokens": config.max_tokens,
        "max_length": max_length,
        "min_patches": config.min_patches,
        "stride": config.stride,
        "variable_length": config.variable_length,
        "max_variates": max_variates,
    }
    train_set = SeriesWindows(train, seed=config.seed, **windows)
    val_set = SeriesWindows(val, seed=config.seed + 1, **windows) if val else None
    logger.info(
        "corpus windows: %d train (%d tokens), %s val",
        len(train_set),
        train_set.num_tokens,
        len(val_set) if val_set is not None else 0,
    )
    return train_set, val_set


def _plain(value: Any) -> Any:
    """A command-line string such as "8", "false" or "[nile, co2]" as the YAML value it spells; else unchanged."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str) or (parsed is None and value.strip() not in ("null", "~")):
            return value
        return parsed
    return value


def corpus_section(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data section with dotted command-line keys (`corpus.synthetic_series`) nested and strings parsed."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        head, _, rest = str(key).partition(".")
        if rest:
            out.setdefault(head, {})[rest] = value
        elif isinstance(value, Mapping):
            out[key] = {**value, **out.get(key, {})}  # a copy: dotted keys never change the caller's mapping
        else:
            out[key] = value
    return _plain(out)


def build_moirai_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Recipe `data:` builder of the Moirai adapter: packed corpus windows when the section has `corpus:`,
    otherwise the CSV windows of :func:`~mmsdk.adapters.timeseries.data.build_forecast_data`.

    Raises:
        ValueError: for a corpus section in a fine-tuning recipe (the corpus has no forecast targets).
    """
    if not any(str(key).split(".")[0] == "corpus" for key in data):
        return build_forecast_data(data, model_config, stage)
    if stage != "pretrain":
        raise ValueError("data.corpus is for pretraining; fine-tune on a CSV (data.path) instead")
    config = CorpusDataConfig.from_dict(corpus_section(data))
    _, modality = model_config.only_modality()
    adapter = modality.adapter_config
    train, val = corpus_datasets(
        config, int(adapter["patch_size"]), int(adapter["context_length"]), int(adapter["max_variates"])
    )
    info = {"train_windows": len(train), "val_windows": 0 if val is None else len(val), "max_tokens": config.max_tokens}
    return DataSplits(train, val, None, config.batch_size, info)
