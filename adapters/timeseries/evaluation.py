"""Forecast metrics, naive baselines and plots (forecasts, masked-patch reconstructions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmsdk.adapters._plotting import pyplot, save_figure
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.tasks import FORECAST, QUANTILES


def forward_fill(x: Tensor) -> Tensor:
    """Replaces NaN in x (B, L, C) by the last observed value before it (0 where nothing was observed yet)."""
    observed = ~torch.isnan(x)
    index = torch.arange(x.shape[1], device=x.device).view(1, -1, 1).expand_as(x)
    last = torch.cummax(torch.where(observed, index, torch.zeros_like(index)), dim=1).values  # (B, L, C)
    filled = torch.gather(torch.nan_to_num(x), 1, last)
    seen = torch.cummax(observed.long(), dim=1).values.bool()
    return torch.where(seen, filled, torch.zeros_like(filled))


def naive_forecast(x: Tensor, horizon: int) -> Tensor:
    """Repeats the last observed value: x (B, L, C) → (B, H, C)."""
    return forward_fill(x)[:, -1:, :].expand(-1, horizon, -1)


def seasonal_naive_forecast(x: Tensor, horizon: int, period: int) -> Tensor:
    """Repeats the last full season: x (B, L, C) → (B, H, C). Needs L >= period."""
    if x.shape[1] < period:
        raise ValueError(f"seasonal naive with period {period} needs at least {period} steps, got {x.shape[1]}")
    season = forward_fill(x)[:, -period:, :]
    reps = -(-horizon // period)
    return season.repeat(1, reps, 1)[:, :horizon]


@torch.no_grad()
def evaluate_forecaster(
    forecaster: nn.Module | None,
    dataset: Dataset,
    batch_size: int = 256,
    baseline: str | None = None,
    period: int = 24,
) -> dict[str, float]:
    """Test MSE and MAE (averaged over every window, step and channel) of a model or a baseline.

    Args:
        forecaster: maps x (B, L, C) → (B, H, C) (or to {"forecast", "quantiles"}); ignored when `baseline` is
            given.
        dataset: yields (x, y) windows.
        baseline: "naive" or "seasonal_naive" instead of the model.
        period: season length for the seasonal baseline.
    """
    squared, absolute, count = 0.0, 0.0, 0
    if forecaster is not None:
        forecaster.eval()
    for x, y in DataLoader(dataset, batch_size=batch_size):
        if baseline == "naive":
            pred = naive_forecast(x, y.shape[1])
        elif baseline == "seasonal_naive":
            pred = seasonal_naive_forecast(x, y.shape[1], period)
        else:
            pred = forecaster(x)
            pred = pred[FORECAST] if isinstance(pred, dict) else pred  # a head with quantiles
        observed = torch.isfinite(y)
        diff = torch.where(observed, pred - y, torch.zeros_like(y))
        squared += float((diff**2).sum())
        absolute += float(diff.abs().sum())
        count += int(observed.sum())
    return {"mse": squared / max(count, 1), "mae": absolute / max(count, 1)}


def plot_forecasts(
    x: np.ndarray,
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    columns: list[str],
    path: str | Path,
    channels: list[int] | None = None,
    quantiles: tuple[list[float], np.ndarray] | None = None,
) -> Path:
    """Plots history, truth and forecasts of a few channels of one window to a PNG.

    Args:
        x: (L, C) history; y: (H, C) truth; predictions: name → (H, C).
        quantiles: (levels, (Q, H, C) values) of a probabilistic forecast: the median is drawn and every pair of
            levels symmetric around 0.5 (0.25/0.75, 0.1/0.9) is shaded as its central interval (50 %, 80 %).
    """
    plt = pyplot()

    channels = channels if channels is not None else [x.shape[1] - 1]
    fig, axes = plt.subplots(len(channels), 1, figsize=(10, 2.8 * len(channels)), squeeze=False)
    hist_t = np.arange(-x.shape[0], 0)
    fut_t = np.arange(0, y.shape[0])
    for ax, c in zip(axes[:, 0], channels):
        ax.plot(hist_t, x[:, c], color="0.4", lw=1, label="history")
        ax.plot(fut_t, y[:, c], color="black", lw=1.5, label="truth")
        for k, (name, pred) in enumerate(predictions.items()):
            # later lines are drawn dashed on top, so identical predictions (eager vs ONNX) stay visible
            ax.plot(fut_t, pred[:, c], lw=1.5, ls="-" if k < 2 else "--", label=name)
        if quantiles is not None:
            _shade_intervals(ax, fut_t, quantiles[0], quantiles[1][..., c])
        ax.axvline(0, color="0.7", ls="--", lw=0.8)
        ax.set_title(columns[c])
        ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def _shade_intervals(ax: object, t: np.ndarray, levels: list[float], values: np.ndarray) -> None:
    """Median line and central intervals of quantile forecasts (Q, H) on one axis, widest palest."""
    rounded = [round(float(q), 6) for q in levels]
    if 0.5 in rounded:
        ax.plot(t, values[rounded.index(0.5)], color="tab:purple", lw=1.5, label="median")  # type: ignore[attr-defined]
    pairs = sorted(((q, round(1 - q, 6)) for q in rounded if q < 0.5 and round(1 - q, 6) in rounded), reverse=True)
    for k, (low, high) in enumerate(sorted(pairs)):
        width = round(100 * (high - low))
        ax.fill_between(  # type: ignore[attr-defined]
            t, values[rounded.index(low)], values[rounded.index(high)], color="tab:purple",
            alpha=0.15 + 0.15 * k, lw=0, label=f"{width} % interval",
        )  # fmt: skip


def plot_reconstruction(
    patches: np.ndarray,
    predicted: np.ndarray,
    hidden: np.ndarray,
    stride: int,
    path: str | Path,
    title: str = "masked-patch reconstruction",
) -> Path:
    """Plots one channel's normalized patches, with the model's reconstruction of the hidden ones shaded.

    Args:
        patches: (N, P) target patches of one channel; predicted: (N, P) predictions; hidden: (N,) bool.
        stride: patch stride (patch n starts at n·stride).
    """
    plt = pyplot()

    n, p = patches.shape
    fig, ax = plt.subplots(figsize=(10, 3))
    for i in range(n):
        t = np.arange(i * stride, i * stride + p)
        if hidden[i]:
            ax.axvspan(t[0], t[-1], color="tab:orange", alpha=0.12, lw=0)
            first = i == hidden.argmax()
            ax.plot(t, predicted[i], color="tab:orange", lw=1.4, label="reconstruction" if first else None)
            ax.plot(t, patches[i], color="black", lw=1, ls=":", label="hidden truth" if first else None)
        else:
            ax.plot(t, patches[i], color="tab:blue", lw=1, label="visible" if i == (~hidden).argmax() else None)
    ax.set_title(title)
    ax.set_xlabel("time step (normalized values)")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


@torch.no_grad()
def reconstruct(model: nn.Module, x: Tensor, mask: Mask) -> tuple[Tensor, Tensor, Tensor]:
    """Runs a masked pretraining model on x and returns (targets, predictions, predicted tokens) in token layout."""
    model.eval()
    batch = model.tokenize(x)
    return batch.targets, model(batch, mask).pred, mask.target


QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@torch.no_grad()
def evaluate_probabilistic(
    model: nn.Module,
    dataset: Dataset,
    levels: tuple[float, ...] = QUANTILE_LEVELS,
    num_samples: int = 100,
    period: int = 24,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """MSE, MAE, MASE, weighted quantile loss, CRPS and 80 % interval coverage of a probabilistic forecaster over a
    dataset of (x, y) windows (x a series or a covariate mapping).

    A model whose head has quantiles (`HeadConfig.quantiles`, any forecasting adapter) is scored on its own
    "forecast" and "quantiles" outputs, at its levels (`levels` is then ignored); a Moirai forecaster without them on
    the mean and the quantiles of `num_samples` seeded samples of its mixture.

    Metrics are averaged over batches weighted by their observed targets (see `mmsdk.adapters.timeseries.metrics`).
    """
    from mmsdk.adapters.timeseries.metrics import forecast_metrics
    from mmsdk.adapters.timeseries.moirai_forecast import forecast_distribution

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    own_levels = getattr(getattr(model, "head_config", None), "quantiles", None)
    levels = tuple(own_levels or levels)
    totals: dict[str, float] = {}
    weight = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        if own_levels:
            outputs = model(x)
            mean, quantiles = outputs[FORECAST], outputs[QUANTILES].permute(3, 0, 1, 2)  # (Q, B, H, C)
        else:
            dist = forecast_distribution(model, x, num_samples, levels, generator)
            mean, quantiles = dist.mean, dist.quantiles
        context = x["series"] if isinstance(x, dict) else x
        metrics = forecast_metrics(mean, y, context, quantiles, levels, period)
        count = int(torch.isfinite(y).sum())
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value * count
        weight += count
    return {name: value / max(weight, 1) for name, value in totals.items()}
