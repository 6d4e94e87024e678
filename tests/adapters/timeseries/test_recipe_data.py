"""The recipe `data:` builder on long-format files: items, missing values, splits per item, errors, CLI run."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from mmsdk.adapters.timeseries.data import (
    ForecastDataConfig,
    StandardScaler,
    WindowDataset,
    build_forecast_data,
    bundled_path,
    ett_borders,
    forecast_datasets,
    load_csv,
)
from mmsdk.cli import main
from mmsdk.models.config import ModelConfig

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "examples" / "recipes" / "timeseries" / "patchtst_long_format.yaml"
LENGTHS = {"a": 300, "b": 260, "c": 240}  # rows per item (hourly, different starts)
VARIABLES = ["load", "temp"]
L, H = 24, 6
TEST_OFFSET = 1000.0  # added to the raw values of every item's test rows: visible if they leak into the scaler
GAP = (20, 80)  # rows of item c where both variables are missing (longer than L)
LONG = {"format": "long", "item_column": "item_id", "time_column": "timestamp", "variable_column": "variable"}


def _item_values(item: str, n: int) -> np.ndarray:
    """(n, 2) raw values of one item: test rows (last 20 %) shifted by TEST_OFFSET, a few NaN, item c's gap."""
    t = np.arange(n, dtype=np.float64)
    k = "abc".index(item)
    values = np.stack([10 + k + np.sin(2 * np.pi * t / 24), 20 - k + np.cos(2 * np.pi * t / 12)], axis=1)
    test_start = int(n * 0.7) + int(n * 0.1)
    values[test_start:] += TEST_OFFSET
    values[5::37, 0] = np.nan  # missing cells
    if item == "c":
        values[GAP[0] : GAP[1]] = np.nan
    return values


def _long_csv(tmp_path: Path) -> Path:
    """Long CSV (item_id, timestamp, variable, value), rows shuffled; some (time, variable) rows are absent."""
    frames = []
    for k, (item, n) in enumerate(LENGTHS.items()):
        stamps = pd.date_range(f"2024-01-0{k + 1}", periods=n, freq="h")
        wide = pd.DataFrame(_item_values(item, n), columns=VARIABLES).assign(timestamp=stamps, item_id=item)
        frames.append(wide.melt(id_vars=["item_id", "timestamp"], var_name="variable", value_name="value"))
    long = pd.concat(frames, ignore_index=True)
    absent = (long["variable"] == "temp") & (long.index % 53 == 0) & long["value"].notna()  # become NaN
    long = long[~absent].sample(frac=1.0, random_state=0)
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    return path


def _model(context_length: int = L, channels: int = 2) -> ModelConfig:
    adapter = {"context_length": context_length, "num_channels": channels, "patch_len": 6, "stride": 6}
    return ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": adapter})


def _data(csv: Path, **overrides: Any) -> dict[str, Any]:
    return {"path": str(csv), **LONG, "split": "ratio", "horizon": H, "batch_size": 4, **overrides}


def test_long_csv_pretrain_and_finetune_windows(tmp_path: Path) -> None:
    path = _long_csv(tmp_path)
    pre = build_forecast_data(_data(path), _model(), "pretrain")
    ft = build_forecast_data(_data(path), _model(), "finetune")
    assert pre.info["items"] == ["a", "b", "c"] and pre.info["columns"] == VARIABLES and pre.batch_size == 4
    assert pre.train[0].shape == (L, 2) and pre.val[0].shape == (L, 2)
    x, y = ft.train[0]
    assert x.shape == (L, 2) and y.shape == (H, 2) and x.dtype == torch.float32
    x, y = pre.test[0]
    assert x.shape == (L, 2) and y.shape == (H, 2)
    # Every item gives windows; train windows per item: all starts, minus item c's starts inside its gap.
    train_ends = {item: int(n * 0.7) for item, n in LENGTHS.items()}
    dropped = (GAP[1] - L) - GAP[0] + 1
    assert len(pre.train) == sum(e - L + 1 for e in train_ends.values()) - dropped
    assert len(ft.train) == sum(e - L - H + 1 for e in train_ends.values()) - dropped
    assert {pre.train.locate(i)[0] for i in range(len(pre.train))} == {"a", "b", "c"}
    # Missing values (cells and absent rows) reach the model as NaN; no window has an unobserved context.
    contexts = torch.stack([pre.train[i] for i in range(len(pre.train))])  # (windows, L, 2)
    assert torch.isnan(contexts).any() and (~torch.isnan(contexts)).flatten(1).any(1).all()
    # Split by time within each item: train inputs never see test rows, test targets are test rows only.
    assert contexts.nan_to_num().abs().max() < 50
    targets = torch.stack([ft.test[i][1] for i in range(len(ft.test))])  # (windows, H, 2)
    assert targets.nan_to_num(nan=1e9).min() > 100


def test_long_csv_scaler_uses_training_rows_only(tmp_path: Path) -> None:
    data = forecast_datasets(ForecastDataConfig(**_data(_long_csv(tmp_path))), L)
    raw = pd.read_csv(tmp_path / "long.csv", parse_dates=["timestamp"])
    train = []
    for item, n in LENGTHS.items():
        wide = raw[raw["item_id"] == item].pivot(index="timestamp", columns="variable", values="value")
        train.append(wide[VARIABLES].sort_index().to_numpy()[: int(n * 0.7)])
    rows = np.concatenate(train)  # (train rows of every item, 2)
    np.testing.assert_allclose(data.scaler.mean, np.nanmean(rows, axis=0), rtol=1e-5)
    np.testing.assert_allclose(data.scaler.std, np.nanstd(rows, axis=0), rtol=1e-4)
    assert (data.scaler.mean < 100).all()  # the +1000 test rows did not leak in
    assert data.series is None and data.frame.values.shape == (3, 300, 2)


def test_etth1_default_gives_the_same_windows_as_before() -> None:
    """Reference: the pre-TimeSeriesFrame pipeline (load_csv, ett_borders, StandardScaler, WindowDataset)."""
    series = load_csv(bundled_path("ETTh1"))
    borders = ett_borders(len(series.values), 96)
    scaler = StandardScaler().fit(series.values[borders[0][0] : borders[0][1]])
    scaled = scaler.transform(series.values)
    model = ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": {"context_length": 96}})
    for stage, stride in (("pretrain", 5), ("finetune", 1)):
        splits = build_forecast_data({"horizon": 24, "stride": stride}, model, stage)
        np.testing.assert_array_equal(splits.info["scaler_mean"], scaler.mean)
        np.testing.assert_array_equal(splits.info["scaler_std"], scaler.std)
        assert splits.info["columns"] == series.columns
        train_horizon = 0 if stage == "pretrain" else 24
        (s0, e0), (s1, e1), (s2, e2) = borders
        reference = {
            "train": WindowDataset(scaled[s0:e0], 96, train_horizon, stride),
            "val": WindowDataset(scaled[s1:e1], 96, 24),
            "test": WindowDataset(scaled[s2:e2], 96, 24),
        }
        for name, old in reference.items():
            new = getattr(splits, name)
            assert len(new) == len(old), (stage, name)
            for i in [*range(0, len(old), 101), len(old) - 1]:
                expected, actual = old[i], new[i]
                if stage == "pretrain" and name == "val":
                    expected = expected[0]  # pretraining validation: inputs only
                if isinstance(expected, tuple):
                    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1]), (name, i)
                else:
                    assert torch.equal(actual, expected), (stage, name, i)


def test_single_variable_long_file_and_wide_item_file(tmp_path: Path) -> None:
    stamps = pd.date_range("2024-01-01", periods=100, freq="h")
    rows = [pd.DataFrame({"id": item, "ts": stamps[k:], "y": np.arange(100.0 - k)}) for k, item in enumerate("xy")]
    long = pd.concat(rows)
    long.to_csv(tmp_path / "univariate.csv", index=False)
    common = {"item_column": "id", "time_column": "ts", "split": "ratio", "horizon": 4}
    long_config = ForecastDataConfig(path=str(tmp_path / "univariate.csv"), format="long", value_column="y", **common)
    data = forecast_datasets(long_config, 8)
    assert data.columns == ["y"] and data.frame.item_ids == ["x", "y"] and list(data.frame.lengths) == [100, 99]
    long.assign(z=1.0).to_csv(tmp_path / "wide_items.csv", index=False)  # wide: one column per variable, per item
    wide = forecast_datasets(ForecastDataConfig(path=str(tmp_path / "wide_items.csv"), columns=["z", "y"], **common), 8)
    assert wide.columns == ["z", "y"] and wide.train[0][0].shape == (8, 2)


def test_gaps_need_fill_gaps_or_allow_irregular(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stamps = pd.date_range("2024-01-01", periods=120, freq="h").delete(range(50, 55))
    pd.DataFrame({"date": stamps, "v": np.arange(115.0)}).to_csv(tmp_path / "gaps.csv", index=False)
    config = {"path": str(tmp_path / "gaps.csv"), "split": "ratio", "horizon": 4}
    with pytest.raises(ValueError, match=r"gaps\.csv.*irregular.*data\.fill_gaps"):
        forecast_datasets(ForecastDataConfig(**config), 8)
    filled = forecast_datasets(ForecastDataConfig(**config, fill_gaps=True), 8)
    assert filled.frame.values.shape == (1, 120, 1) and int(np.isnan(filled.frame.values).sum()) == 5
    with caplog.at_level(logging.WARNING):
        kept = forecast_datasets(ForecastDataConfig(**config, allow_irregular=True), 8)
    assert kept.frame.values.shape == (1, 115, 1) and "irregular" in caplog.text
    daily = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=60, freq="D"), "v": np.arange(60.0)})
    daily.to_csv(tmp_path / "daily.csv", index=False)
    config = {"path": str(tmp_path / "daily.csv"), "split": "ratio", "horizon": 4, "fill_gaps": True}
    with pytest.raises(ValueError, match=r"daily\.csv: item '0': the usual time step 1 days .* longer than freq='h'"):
        forecast_datasets(ForecastDataConfig(**config), 8)  # would turn daily data into hourly NaN rows
    assert forecast_datasets(ForecastDataConfig(**config, freq="D"), 8).frame.values.shape == (1, 60, 1)


def test_netcdf_file(tmp_path: Path) -> None:
    pytest.importorskip("scipy")  # xarray's netCDF3 engine
    stamps = pd.date_range("2024-01-01", periods=80, freq="h")
    values = np.random.default_rng(0).standard_normal((2, 80, 2)).astype(np.float32)
    coords = {"item": ["p", "q"], "time": stamps}
    dataset = xr.Dataset({name: (("item", "time"), values[..., j]) for j, name in enumerate(VARIABLES)}, coords)
    dataset.to_netcdf(tmp_path / "data.nc", engine="scipy")
    data = forecast_datasets(ForecastDataConfig(path=str(tmp_path / "data.nc"), split="ratio", horizon=4), 8)
    assert data.frame.item_ids == ["p", "q"] and data.columns == VARIABLES and data.frame.freq == "h"
    np.testing.assert_allclose(data.frame.values, values)


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pyarrow is installed")
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match=r"data\.parquet: reading Parquet needs pyarrow"):
        forecast_datasets(ForecastDataConfig(path=str(tmp_path / "data.parquet")), 8)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"item_column": "sensor"}, ValueError, r"long\.csv: data\.item_column='sensor' is not a column; .*'item_id'"),
        ({"value_column": "val"}, ValueError, r"long\.csv: data\.value_column='val' is not a column"),
        ({"time_column": "when"}, ValueError, r"long\.csv: data\.time_column='when' is not a column"),
        ({"columns": ["load", "rain"]}, ValueError, r"long\.csv: data\.columns \['rain'\] are not values"),
        ({"format": "longish"}, ValueError, r"ForecastDataConfig\.format='longish' is not one of"),
        ({"format": "wide"}, ValueError, r"ForecastDataConfig\.variable_column: is for long tables"),
        ({"path": "missing/nope.csv"}, FileNotFoundError, r"nope\.csv"),
        ({"path": "bundled:nope"}, ValueError, r"no bundled dataset 'nope'"),
        ({"split": "ett"}, ValueError, r"long\.csv: data\.split='ett': .*needs 14400 rows"),
    ],
)
def test_bad_inputs_name_the_file_and_field(
    tmp_path: Path, overrides: dict[str, Any], error: type[Exception], match: str
) -> None:
    path = _long_csv(tmp_path)
    with pytest.raises(error, match=match):
        build_forecast_data(_data(path, **overrides), _model(), "finetune")


def test_an_item_without_observed_values_is_named(tmp_path: Path) -> None:
    stamps = pd.date_range("2024-01-01", periods=60, freq="h")
    rows = pd.concat([pd.DataFrame({"id": i, "date": stamps, "v": v}) for i, v in (("ok", 1.0), ("dead", np.nan))])
    rows.to_csv(tmp_path / "dead.csv", index=False)
    config = ForecastDataConfig(path=str(tmp_path / "dead.csv"), item_column="id", split="ratio", horizon=4)
    with pytest.raises(ValueError, match=r"dead\.csv: train split: item 'dead' has no observed value"):
        forecast_datasets(config, 8)


def test_bundled_long_example_is_reproducible_and_loads() -> None:
    path = bundled_path("sensors_long")
    generator = runpy.run_path(str(ROOT / "adapters" / "timeseries" / "data" / "make_sensors_long.py"))
    assert path.read_text().splitlines() == generator["rows"]()
    assert path.stat().st_size < 200_000
    recipe = yaml.safe_load(RECIPE.read_text())
    splits = build_forecast_data(recipe["data"], ModelConfig.from_dict(recipe["model"]), "finetune")
    assert splits.info["items"] == ["east", "north", "south"] and splits.info["columns"] == ["value"]
    x, y = splits.train[0]
    assert x.shape == (168, 1) and y.shape == (24, 1)


def test_cli_pretrain_on_a_long_csv(tmp_path: Path) -> None:
    path = _long_csv(tmp_path)
    out = tmp_path / "run"
    main(
        [
            "pretrain",
            "--config",
            str(RECIPE),
            "--model.adapter_config.context_length=24",
            "--model.adapter_config.num_channels=2",
            "--model.adapter_config.patch_len=6",
            "--model.adapter_config.stride=6",
            "--model.encoder.dim=16",
            "--model.encoder.depth=1",
            "--model.encoder.heads=2",
            f"--data.path={path}",
            "--data.variable_column=variable",
            "--data.horizon=6",
            "--data.stride=16",
            "--data.batch_size=8",
            "--trainer.max_steps=2",
            "--trainer.logger=none",
            "--trainer.progress_bar=false",
            f"--trainer.default_root_dir={out}",
            f"--output_dir={out}",
        ]
    )
    assert (out / "model" / "model.safetensors").is_file()
