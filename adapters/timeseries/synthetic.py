"""Synthetic series with a known answer, for tests and benchmarks of covariate forecasting.

`lagged_covariate_frame` makes items whose target is a lagged, scaled copy of a known-future covariate plus noise:
a forecaster that reads the covariate over the horizon can predict the target almost exactly, one that cannot has
only the target's own past. An optional pure-noise covariate tests that an irrelevant input does no harm.
"""

from __future__ import annotations

import numpy as np

from mmsdk.adapters.timeseries.series_frame import TimeSeriesFrame


def smooth_process(rng: np.random.Generator, length: int, smoothing: float = 0.9) -> np.ndarray:
    """A (length,) unit-scale signal: two sinusoids of random period and phase plus smoothed AR(1) noise, so its
    future is only partly predictable from its past."""
    steps = np.arange(length)
    periods = rng.uniform(8, 48, size=2)
    waves = sum(np.sin(2 * np.pi * steps / p + rng.uniform(0, 2 * np.pi)) for p in periods) / 2
    noise = np.empty(length)
    noise[0] = rng.normal()
    for t in range(1, length):
        noise[t] = smoothing * noise[t - 1] + np.sqrt(1 - smoothing**2) * rng.normal()
    return (waves + noise) / np.sqrt(1.25)


def lagged_covariate_frame(
    items: int = 8,
    length: int = 1024,
    lag: int = 2,
    gain: float = 1.5,
    noise: float = 0.2,
    noise_covariate: bool = False,
    seed: int = 0,
) -> TimeSeriesFrame:
    """Items of target `y` and known covariate `driver`, with y_t = gain · driver_(t − lag) + noise · ε_t.

    Args:
        items: how many series.
        length: time steps per series.
        lag: steps by which the target follows the covariate.
        gain: scale of the copy.
        noise: std of the target's own noise (the error floor of a perfect covariate model).
        noise_covariate: add a known covariate `noise` of pure noise, unrelated to the target.
        seed: random seed.

    Returns:
        A frame with the target `y`, the known covariate `driver` (and `noise`), no timestamps.
    """
    if lag < 0 or items < 1 or length <= lag:
        raise ValueError(f"need lag >= 0, items >= 1 and length > lag; got {lag}, {items}, {length}")
    rng = np.random.default_rng(seed)
    series = []
    for _ in range(items):
        driver = smooth_process(rng, length + lag)
        target = gain * driver[:length] + noise * rng.normal(size=length)  # target_t follows driver_(t - lag)
        columns = [target, driver[lag:]]
        if noise_covariate:
            columns.append(rng.normal(size=length))
        series.append(np.stack(columns, axis=1))
    variables = ["y", "driver"] + (["noise"] if noise_covariate else [])
    values = np.stack(series).astype(np.float32)  # (items, length, V)
    return TimeSeriesFrame.from_numpy(values, targets=["y"], known_covariates=variables[1:], variables=variables)
