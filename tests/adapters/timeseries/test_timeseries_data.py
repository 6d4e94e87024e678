"""Time-series data utilities: bundled ETTh1, the standard split, scaling, windows, baselines, recipe builder."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from mmsdk.adapters.timeseries.data import (
    ForecastDataConfig,
    StandardScaler,
    WindowDataset,
    bundled_path,
    ett_borders,
    forecast_datasets,
    load_csv,
)
from mmsdk.adapters.timeseries.evaluation import (
    evaluate_forecaster,
    naive_forecast,
    plot_forecasts,
    seasonal_naive_forecast,
)
from mmsdk.contracts.data import build_data
from mmsdk.models.config import ModelConfig


def test_bundled_etth1_is_unmodified() -> None:
    path = bundled_path("ETTh1")
    assert hashlib.md5(path.read_bytes()).hexdigest() == "8381763947c85f4be6ac456c508460d6"
    assert (path.parent / "ATTRIBUTION.md").read_text().count("CC BY-ND 4.0") >= 1
    series = load_csv(path)
    assert series.values.shape == (17420, 7)
    assert series.columns[-1] == "OT"
    assert series.timestamps is not None and series.timestamps.is_monotonic_increasing


def test_standard_ett_split_sizes_match_the_literature() -> None:
    # PatchTST/Informer convention with L=336, H=96: 8209 train, 2785 val and 2785 test windows.
    data = forecast_datasets(ForecastDataConfig(horizon=96), context_length=336)
    assert (len(data.train), len(data.val), len(data.test)) == (8209, 2785, 2785)
    assert ett_borders(17420, 336) == [(0, 8640), (8640 - 336, 11520), (11520 - 336, 14400)]
    x, y = data.test[0]
    assert x.shape == (336, 7) and y.shape == (96, 7)


def test_scaler_is_fit_on_train_rows_only() -> None:
    data = forecast_datasets(ForecastDataConfig(horizon=96), context_length=336)
    train_rows = data.series.values[:8640]
    np.testing.assert_allclose(data.scaler.mean, train_rows.mean(axis=0), rtol=1e-5, atol=1e-5)
    # the first training window is the first 336 standardized rows
    np.testing.assert_allclose(data.train[0][0].numpy(), data.scaler.transform(train_rows[:336]), atol=1e-6)


def test_scaler_keeps_constant_columns_finite_and_inverts() -> None:
    values = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1).astype(np.float32)
    scaler = StandardScaler().fit(values)
    z = scaler.transform(values)
    assert np.isfinite(z).all() and np.allclose(z[:, 1], 0.0)
    np.testing.assert_allclose(scaler.inverse(z), values, atol=1e-5)
    with pytest.raises(ValueError, match="before fit"):
        StandardScaler().transform(values)


def test_windows_are_contiguous_slices() -> None:
    values = np.arange(40, dtype=np.float32).reshape(20, 2)
    ds = WindowDataset(values, context_length=5, horizon=3, stride=2)
    assert len(ds) == (20 - 8) // 2 + 1
    x, y = ds[1]
    assert torch.equal(x, torch.as_tensor(values[2:7])) and torch.equal(y, torch.as_tensor(values[7:10]))
    assert WindowDataset(values, 5)[0].shape == (5, 2)
    with pytest.raises(ValueError, match="shorter than context_length"):
        WindowDataset(values, context_length=18, horizon=5)
    with pytest.raises(ValueError, match="time, channels"):
        WindowDataset(values[:, 0], context_length=5)


def test_load_csv_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        load_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,a,b\n2020-01-01,1,x\n2020-01-02,2,y\n")
    with pytest.raises(ValueError, match="'b' is not numeric"):
        load_csv(bad)
    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("date,a\n2020-01-02,1\n2020-01-01,2\n")
    with pytest.raises(ValueError, match="not sorted"):
        load_csv(unsorted)
    with pytest.raises(ValueError, match=r"columns \['z'\] not found"):
        load_csv(bad, columns=["z"])


def test_baselines() -> None:
    x = torch.arange(48, dtype=torch.float32).view(1, 48, 1)
    assert torch.equal(naive_forecast(x, 5), torch.full((1, 5, 1), 47.0))
    season = seasonal_naive_forecast(x, 30, period=24)
    assert torch.equal(season[0, :24, 0], x[0, 24:, 0]) and torch.equal(season[0, 24:, 0], x[0, 24:30, 0])
    t = np.arange(200, dtype=np.float32)
    periodic = np.stack([np.sin(2 * np.pi * t / 24)], axis=1)
    metrics = evaluate_forecaster(None, WindowDataset(periodic, 48, 24), baseline="seasonal_naive", period=24)
    assert metrics["mse"] < 1e-10


def test_recipe_data_builder_and_plot(tmp_path) -> None:
    model = ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": {"context_length": 336}})
    pre = build_data({"horizon": 96, "batch_size": 8}, model, "pretrain")
    assert pre.train[0].shape == (336, 7) and pre.val[0].shape == (336, 7) and pre.batch_size == 8
    with pytest.raises(ValueError, match="unknown config key"):
        build_data({"horizn": 96}, model, "finetune")
    x, y = pre.test[0]
    png = plot_forecasts(x.numpy(), y.numpy(), {"naive": y.numpy() * 0}, pre.info["columns"], tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baselines_forward_fill_missing_history() -> None:
    from mmsdk.adapters.timeseries.evaluation import forward_fill

    x = torch.tensor([[float("nan"), 1.0, float("nan"), 3.0, float("nan")]]).view(1, 5, 1)
    assert forward_fill(x).view(-1).tolist() == [0.0, 1.0, 1.0, 3.0, 3.0]
    assert naive_forecast(x, 2).view(-1).tolist() == [3.0, 3.0]
    assert torch.isfinite(seasonal_naive_forecast(x, 4, period=2)).all()
