"""Probabilistic forecast metrics against closed forms, and the interval plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.timeseries.evaluation import plot_forecasts
from mmsdk.adapters.timeseries.metrics import (
    crps_from_quantiles,
    forecast_metrics,
    interval_coverage,
    mase,
    weighted_quantile_loss,
)

LEVELS = [i / 100 for i in range(1, 100)]


def normal_quantiles(mu: torch.Tensor, sigma: float, levels: list[float]) -> torch.Tensor:
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(levels, dtype=torch.float64))
    return mu.double().unsqueeze(0) + sigma * z.view(-1, *([1] * mu.dim()))


def normal_crps(mu: torch.Tensor, sigma: float, y: torch.Tensor) -> torch.Tensor:
    """CRPS of N(mu, sigma²) at y (Gneiting & Raftery's closed form)."""
    z = (y - mu).double() / sigma
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def test_crps_from_quantiles_matches_the_normal_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    mu, y = torch.randn(4, 12, 2, generator=g), torch.randn(4, 12, 2, generator=g) * 2
    sigma = 0.7
    estimate = crps_from_quantiles(normal_quantiles(mu, sigma, LEVELS), LEVELS, y)
    exact = float(normal_crps(mu, sigma, y).mean())
    assert estimate == pytest.approx(exact, rel=0.01)
    coarse = crps_from_quantiles(
        normal_quantiles(mu, sigma, [0.1 * i for i in range(1, 10)]), [0.1 * i for i in range(1, 10)], y
    )
    assert abs(coarse - exact) > abs(estimate - exact)  # more levels, closer to the integral


def test_coverage_of_a_calibrated_interval_and_missing_targets() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randn(20000, generator=g)
    q = normal_quantiles(torch.zeros(20000), 1.0, [0.1, 0.9]).float()
    assert interval_coverage(q[0], q[1], y) == pytest.approx(0.8, abs=0.01)
    y[:10000] = float("nan")  # missing values count nowhere
    assert interval_coverage(q[0], q[1], y) == pytest.approx(0.8, abs=0.015)


def test_weighted_quantile_loss_and_mase_by_hand() -> None:
    target = torch.tensor([[[2.0], [4.0]]])  # (B=1, H=2, C=1)
    quantiles = torch.tensor([[[[1.0], [4.0]]], [[[3.0], [5.0]]]])  # levels 0.5, 0.9
    # pinball: 0.5 level: |1|·0.5 + 0 = 0.5; 0.9 level: 0.1·1 + 0.1·1 = 0.2 → mean of 2·(0.5, 0.2)/6
    assert weighted_quantile_loss(quantiles, [0.5, 0.9], target) == pytest.approx((1.0 / 6 + 0.4 / 6) / 2)
    context = torch.tensor([[[0.0], [1.0], [3.0]]])  # naive in-sample errors 1, 2 → scale 1.5
    forecast = torch.tensor([[[3.0], [4.0]]])  # MAE 0.5
    assert mase(forecast, target, context) == pytest.approx(0.5 / 1.5)
    with pytest.raises(ValueError, match="needs contexts longer than 3 steps"):
        mase(forecast, target, context, period=3)
    metrics = forecast_metrics(forecast, target, context, quantiles, [0.5, 0.9])
    assert set(metrics) == {"mse", "mae", "mase", "wql", "crps", "coverage_40"}
    with pytest.raises(ValueError, match="quantile levels must lie in"):
        weighted_quantile_loss(quantiles, [0.5, 1.0], target)


def test_forecast_plot_shades_central_intervals(tmp_path: Path) -> None:
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    q = normal_quantiles(torch.zeros(8, 1), 1.0, levels).numpy()  # (Q, H, C)
    path = plot_forecasts(np.zeros((16, 1)), np.zeros((8, 1)), {"mean": np.zeros((8, 1))}, ["y"], tmp_path / "f.png",
                          quantiles=(levels, q))  # fmt: skip
    assert path.is_file() and path.stat().st_size > 1000


def test_moirai_probabilistic_evaluation_over_covariate_windows() -> None:
    from mmsdk.adapters.timeseries.evaluation import evaluate_probabilistic
    from mmsdk.adapters.timeseries.synthetic import lagged_covariate_frame
    from mmsdk.adapters.timeseries.windows import ratio_split
    from mmsdk.contracts.heads import HeadConfig
    from mmsdk.models import TaskModel
    from mmsdk.models.config import ModelConfig

    frame = lagged_covariate_frame(items=2, length=200)
    test = ratio_split(frame, 32).windows("test", 16, 4, with_covariates=True)
    spec = {"context_length": 32, "num_channels": 1, "patch_sizes": [8], "patch_size": 8, "known_covariates": 1}
    encoder = {"dim": 16, "depth": 1, "heads": 2, "rope": "1d", "variate_bias": True}
    config = ModelConfig.from_dict(
        {"adapter": "moirai", "adapter_config": spec, "encoder": encoder, "objective": "bert"}
    )
    model = TaskModel(config, HeadConfig(task="forecast", num_outputs=16))
    metrics = evaluate_probabilistic(model, test, num_samples=20, period=8)
    assert set(metrics) == {"mse", "mae", "mase", "wql", "crps", "coverage_80"}
    assert all(np.isfinite(v) for v in metrics.values()) and 0 <= metrics["coverage_80"] <= 1
    assert metrics == evaluate_probabilistic(model, test, num_samples=20, period=8)  # seeded
