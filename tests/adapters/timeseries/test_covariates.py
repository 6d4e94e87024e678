"""Covariate forecasting: Moirai and Timer-XL read past and known-future covariates, PatchTST refuses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mmsdk.adapters.timeseries.covariates import KNOWN, PAST, SERIES
from mmsdk.adapters.timeseries.data import build_forecast_data
from mmsdk.adapters.timeseries.series_frame import TimeSeriesFrame
from mmsdk.adapters.timeseries.synthetic import lagged_covariate_frame
from mmsdk.adapters.timeseries.timestamps import calendar_features
from mmsdk.adapters.timeseries.windows import ratio_split
from mmsdk.contracts.heads import HeadConfig
from mmsdk.export import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained, save_pretrained
from mmsdk.models import TaskModel
from mmsdk.models.config import ModelConfig
from mmsdk.training.api import finetune

L, P, H = 32, 8, 12  # context, patch, horizon (not a whole number of patches)
ENCODER = {"dim": 32, "depth": 2, "heads": 2, "rope": "1d", "variate_bias": True}


def model_config(adapter: str, past: int = 1, known: int = 2) -> dict[str, Any]:
    spec: dict[str, Any] = {"context_length": L, "num_channels": 1, "past_covariates": past, "known_covariates": known}
    if adapter == "moirai":
        spec |= {"patch_sizes": [P], "patch_size": P, "max_variates": 8}
        return {"adapter": "moirai", "adapter_config": spec, "encoder": ENCODER, "objective": "bert"}
    spec |= {"patch_len": P}
    return {"adapter": "timerxl", "adapter_config": spec, "encoder": ENCODER, "objective": "causal"}


def task_model(adapter: str, past: int = 1, known: int = 2) -> TaskModel:
    torch.manual_seed(0)
    config = ModelConfig.from_dict(model_config(adapter, past, known))
    return TaskModel(config, HeadConfig(task="forecast", num_outputs=H)).eval()


def inputs(batch: int = 3, past: int = 1, known: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {SERIES: torch.randn(batch, L, 1, generator=g)}
    if past:
        out[PAST] = torch.randn(batch, L, past, generator=g)
    if known:
        out[KNOWN] = torch.randn(batch, L + H, known, generator=g)
    return out


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_forecasts_read_the_covariates_and_forecast_the_targets_only(adapter: str) -> None:
    model = task_model(adapter)
    x = inputs()
    with torch.no_grad():
        y = model(x)
        assert y.shape == (3, H, 1)
        later = {**x, KNOWN: x[KNOWN].clone()}
        later[KNOWN][:, L + 3] += 2.0  # a known-future value inside the horizon
        assert not torch.allclose(model(later), y)
        past = {**x, PAST: x[PAST] * torch.linspace(0.5, 2.0, L)[None, :, None]}
        assert not torch.allclose(model(past), y)
        beyond = {**x, KNOWN: torch.cat([x[KNOWN], torch.randn(3, 7, 2)], dim=1)}  # rows past the forecast slots
        torch.testing.assert_close(model(beyond), y)


def test_timerxl_reads_known_covariates_one_patch_ahead() -> None:
    """The first forecast patch sees the known values of that patch and nothing later."""
    model = task_model("timerxl")
    x = inputs()
    with torch.no_grad():
        y = model(x)
        late = {**x, KNOWN: x[KNOWN].clone()}
        late[KNOWN][:, L + P :] += 3.0  # known values from the second forecast patch on
        changed = model(late)
        torch.testing.assert_close(changed[:, :P], y[:, :P])
        assert not torch.allclose(changed[:, P:], y[:, P:])
        first = {**x, KNOWN: x[KNOWN].clone()}
        first[KNOWN][:, L : L + P] += 3.0  # the first forecast patch's own known values
        assert not torch.allclose(model(first)[:, :P], y[:, :P])


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_a_model_without_covariates_takes_the_series_alone_or_in_a_mapping(adapter: str) -> None:
    model = task_model(adapter, past=0, known=0)
    x = inputs(past=0, known=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[SERIES]), rtol=0, atol=0)


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_covariate_models_save_load_and_export_with_one_graph_input_per_block(adapter: str, tmp_path: Path) -> None:
    model = task_model(adapter)
    save_pretrained(model, tmp_path / "model")
    loaded = from_pretrained(tmp_path / "model").eval()
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    result = to_onnx(loaded, tmp_path / "model.onnx")
    assert result.input_names == (SERIES, PAST, KNOWN)
    runtime = OnnxModel(tmp_path / "model.onnx")
    assert runtime.input_names == [SERIES, PAST, KNOWN]
    out = runtime.run({name: value.numpy() for name, value in x.items()})
    np.testing.assert_allclose(out["outputs"], model(x).detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_bad_covariate_inputs_are_errors_naming_the_block(adapter: str) -> None:
    name = "Moirai" if adapter == "moirai" else "TimerXL"
    model = task_model(adapter)
    x = inputs()
    with pytest.raises(ValueError, match=f"{name} was configured with 1 past and 2 known-future covariates; pass a"):
        model(x[SERIES])  # a covariate model fed no covariates
    with pytest.raises(ValueError, match=r"configured with known_covariates=2, got 1 column\(s\)"):
        model({**x, KNOWN: x[KNOWN][..., :1]})
    with pytest.raises(ValueError, match=r"configured with past_covariates=1, got 0 column\(s\)"):
        model({SERIES: x[SERIES], KNOWN: x[KNOWN]})  # a covariate missing at forecast time
    with pytest.raises(ValueError, match=r"unknown keys \['future'\]"):
        model({**x, "future": x[KNOWN]})
    bad = {**x, KNOWN: x[KNOWN].clone()}
    bad[KNOWN][2, L + 5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"known_covariates column 1 is NaN at forecast step 5 \(sample 2\): known-fu"):
        model(bad)
    with pytest.raises(ValueError, match=f"the forecast needs the known values of all {H} horizon steps"):
        model({**x, KNOWN: x[KNOWN][:, : L + H - 1]})
    with pytest.raises(ValueError, match="'past_covariates' covers 31 steps, the series 32"):
        model({**x, PAST: x[PAST][:, 1:]})
    with pytest.raises(ValueError, match=r"'known_covariates' must be \(batch=3, time, columns\)"):
        model({**x, KNOWN: x[KNOWN][:2]})
    missing_context = {**x, KNOWN: x[KNOWN].clone()}
    missing_context[KNOWN][:, 3] = float("nan")  # NaN inside the context is a missing value, not an error
    assert torch.isfinite(model(missing_context)).all()
    plain = task_model(adapter, past=0, known=0)
    with pytest.raises(
        ValueError, match=r"configured with past_covariates=0, got 1 column\(s\).*set past_covariates: 1"
    ):
        plain(x)  # covariates given to a model without them


def test_patchtst_refuses_covariates_instead_of_dropping_them() -> None:
    config = ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": {"context_length": L, "num_channels": 1}})
    model = TaskModel(config, HeadConfig(task="forecast", num_outputs=H))
    with pytest.raises(ValueError, match="PatchTST is channel-independent and does not use covariates"):
        model(inputs())


def test_calendar_features_encode_each_cycle_on_a_circle() -> None:
    stamps = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 06:00", "2024-01-03 18:00", "2024-01-08 00:00", None])
    names, values = calendar_features(stamps, ["hour", "dayofweek"])
    assert names == ["hour_sin", "hour_cos", "dayofweek_sin", "dayofweek_cos"] and values.shape == (5, 4)
    np.testing.assert_allclose(values[:4, :2], [[0, 1], [1, 0], [-1, 0], [0, 1]], atol=1e-6)  # 0 h, 6 h, 18 h, 0 h
    np.testing.assert_allclose(values[3, 2:], values[0, 2:], atol=1e-6)  # Monday a week later
    np.testing.assert_allclose((values[:4, ::2] ** 2 + values[:4, 1::2] ** 2), 1.0, atol=1e-6)
    assert np.isnan(values[4]).all()  # NaT
    with pytest.raises(ValueError, match="choose distinct names from"):
        calendar_features(stamps, ["weekday"])


def _covariate_csv(tmp_path: Path, missing_known: bool = False) -> Path:
    rows = 24 * 60
    stamps = pd.date_range("2024-01-01", periods=rows, freq="h")
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"date": stamps, "load": rng.normal(size=rows), "price": rng.normal(size=rows)})
    table["temp"] = rng.normal(size=rows)
    table["target"] = table["load"].shift(1, fill_value=0.0) + 0.1 * rng.normal(size=rows)
    if missing_known:
        table.loc[100, "price"] = np.nan
    path = tmp_path / "data.csv"
    table.to_csv(path, index=False)
    return path


def test_recipe_data_feeds_covariates_and_calendar_features(tmp_path: Path) -> None:
    path = _covariate_csv(tmp_path)
    data = {"path": str(path), "split": "ratio", "horizon": H, "columns": ["target"], "past_covariates": ["temp"],
            "known_covariates": ["load", "price"], "calendar": ["hour", "dayofweek"], "batch_size": 4}  # fmt: skip
    model = model_config("moirai", past=1, known=6)
    splits = build_forecast_data(data, ModelConfig.from_dict(model), "finetune")
    x, y = splits.train[0]
    assert x[SERIES].shape == (L, 1) and x[PAST].shape == (L, 1) and x[KNOWN].shape == (L + H, 6)
    assert y.shape == (H, 1)
    assert splits.info["known_covariates"] == [
        "load",
        "price",
        "hour_sin",
        "hour_cos",
        "dayofweek_sin",
        "dayofweek_cos",
    ]
    assert splits.info["columns"] == ["target"] and splits.info["past_covariates"] == ["temp"]
    result = finetune(model, {"task": "forecast", "num_outputs": H}, splits.train, splits.val, splits.test,
                      trainer={"max_steps": 3, "logger": "none", "progress_bar": False,
                               "default_root_dir": str(tmp_path / "run")}, batch_size=4)  # fmt: skip
    assert np.isfinite(result.metrics["test/mse"])
    pretrain = build_forecast_data(data, ModelConfig.from_dict(model), "pretrain")
    assert set(pretrain.train[0]) == {SERIES, PAST, KNOWN} and pretrain.train[0][KNOWN].shape == (L, 6)


def test_recipe_data_errors_name_the_covariate_fields(tmp_path: Path) -> None:
    path = _covariate_csv(tmp_path)
    base = {"path": str(path), "split": "ratio", "horizon": H, "columns": ["target"], "known_covariates": ["load"]}
    with pytest.raises(ValueError, match=r"model.adapter_config.known_covariates is 2; set it to 1"):
        build_forecast_data(base, ModelConfig.from_dict(model_config("moirai", 0, 2)), "finetune")
    patchtst = ModelConfig.from_dict(
        {"adapter": "patchtst", "adapter_config": {"context_length": L, "num_channels": 1}}
    )
    with pytest.raises(ValueError, match="adapter 'patchtst' does not use covariates"):
        build_forecast_data(base, patchtst, "finetune")
    with pytest.raises(ValueError, match=r"data.known_covariates \['wind'\] not found; the file has"):
        build_forecast_data({**base, "known_covariates": ["wind"]}, patchtst, "finetune")
    with pytest.raises(ValueError, match="named in more than one role"):
        build_forecast_data({**base, "past_covariates": ["load"]}, patchtst, "finetune")
    with pytest.raises(ValueError, match=r"known covariate 'price' of item .* is missing at data row 100"):
        missing = _covariate_csv(tmp_path, missing_known=True)
        build_forecast_data({**base, "path": str(missing), "known_covariates": ["price"]}, patchtst, "finetune")
    with pytest.raises(ValueError, match=r"calendar.*needs a time_column"):
        build_forecast_data({**base, "time_column": None, "calendar": ["hour"]}, patchtst, "finetune")


def test_frame_roles_and_calendar() -> None:
    frame = TimeSeriesFrame.from_numpy(np.zeros((10, 3), np.float32), variables=["a", "b", "c"])
    frame = frame.with_roles(past=["b"], known=["c"])
    assert frame.roles == ["target", "past", "known"]
    with pytest.raises(ValueError, match="no target variable left"):
        frame.with_roles(past=["a", "b"], known=["c"])
    with pytest.raises(ValueError, match="calendar features need timestamps"):
        frame.with_calendar(["hour"])


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_a_known_future_driver_makes_the_forecast_far_better(adapter: str, tmp_path: Path) -> None:
    """The target is a lagged copy of a known covariate plus noise: with the covariate, the test error falls far
    below the same model trained without it (same data, steps and seed)."""
    frame = lagged_covariate_frame(items=8, length=1024, seed=0)
    errors = {}
    for use in (True, False):
        data = frame if use else frame.select(["y"])
        split = ratio_split(data, L)
        train, test = (split.windows(name, 16, 1, use) for name in ("train", "test"))
        model = model_config(adapter, past=0, known=1 if use else 0)
        trainer = {
            "max_steps": 300,
            "logger": "none",
            "progress_bar": False,
            "default_root_dir": str(tmp_path / str(use)),
        }
        result = finetune(model, {"task": "forecast", "num_outputs": 16}, train, None, test, optim={"lr": 2e-3},
                          trainer=trainer, batch_size=32)  # fmt: skip
        errors[use] = result.metrics["test/mse"]
    assert errors[True] < 0.7 * errors[False], errors


STORES = {"store": ["north", "south", "west"]}


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_static_categoricals_are_embedded_exported_and_checked(adapter: str, tmp_path: Path) -> None:
    config = model_config(adapter, past=0, known=1)
    config["adapter_config"]["static_categoricals"] = STORES
    torch.manual_seed(0)
    model = TaskModel(ModelConfig.from_dict(config), HeadConfig(task="forecast", num_outputs=H)).eval()
    x = {**inputs(past=0, known=1), "static_categoricals": torch.tensor([[1], [2], [0]])}
    with torch.no_grad():
        base = model(x)
        for table in model.backbone.adapter.static_embedding.tables:
            torch.nn.init.normal_(table.weight)
        y = model(x)
        assert not torch.allclose(y, base)  # zero-initialized: a fresh table changes nothing until trained
        other = model({**x, "static_categoricals": torch.tensor([[3], [2], [0]])})
        assert not torch.allclose(other[0], y[0]) and torch.equal(other[1:], y[1:])  # per sample
    result = to_onnx(model, tmp_path / "static.onnx")
    assert result.input_names == (SERIES, KNOWN, "static_categoricals")
    served = OnnxModel(tmp_path / "static.onnx").run({k: v.numpy() for k, v in x.items()})["outputs"]
    np.testing.assert_allclose(served, y.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match=r"static_categoricals 'store' has id 4; ids run 0 \(unknown\) to 3"):
        model({**x, "static_categoricals": torch.tensor([[4], [1], [1]])})
    with pytest.raises(ValueError, match=r"configured with static_categoricals \['store'\]; got 'static_categoric"):
        model({SERIES: x[SERIES], KNOWN: x[KNOWN]})
    with pytest.raises(ValueError, match=r"must be \(batch=3, 1\) integer ids"):
        model({**x, "static_categoricals": torch.ones(3, 1)})


def test_a_pretrained_backbone_gains_static_categoricals_at_fine_tuning(tmp_path: Path) -> None:
    from mmsdk.hub import load_backbone

    pretrained = task_model("moirai", past=0, known=1)
    save_pretrained(pretrained, tmp_path / "pre")
    config = model_config("moirai", past=0, known=1)
    config["adapter_config"]["static_categoricals"] = STORES
    model = TaskModel(ModelConfig.from_dict(config), HeadConfig(task="forecast", num_outputs=H)).eval()
    report = load_backbone(model, tmp_path / "pre")
    assert any("static_embedding" in key for key in report.missing)
    x = inputs(past=0, known=1)
    with torch.no_grad():  # the fresh embedding starts at zero: the pretrained forecaster's outputs exactly
        torch.testing.assert_close(model({**x, "static_categoricals": torch.tensor([[1], [2], [3]])}), pretrained(x))


def _stores_csv(tmp_path: Path, mixed: bool = False) -> Path:
    rows, tables = 24 * 40, []
    rng = np.random.default_rng(0)
    for item, store in (("a", "north"), ("b", "south"), ("c", "north")):
        stamps = pd.date_range("2024-01-01", periods=rows, freq="h")
        part = pd.DataFrame({"date": stamps, "item": item, "store": store, "sales": rng.normal(size=rows)})
        tables.append(part)
    table = pd.concat(tables)
    if mixed:
        table.iloc[5, table.columns.get_loc("store")] = "west"
    path = tmp_path / ("mixed.csv" if mixed else "stores.csv")
    table.to_csv(path, index=False)
    return path


def test_recipe_data_reads_static_categoricals_per_item(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = {"path": str(_stores_csv(tmp_path)), "item_column": "item", "split": "ratio", "horizon": H,
            "static_categoricals": ["store"], "calendar": ["hour"], "batch_size": 4}  # fmt: skip
    config = model_config("moirai", past=0, known=2)
    with pytest.raises(ValueError, match=r"static_categoricals is empty; set it to \{'store': \['north', 'south'\]\}"):
        build_forecast_data(data, ModelConfig.from_dict(config), "finetune")
    config["adapter_config"]["static_categoricals"] = {"store": ["north", "south"]}
    splits = build_forecast_data(data, ModelConfig.from_dict(config), "finetune")
    ids = {int(splits.train[i][0]["static_categoricals"][0]) for i in range(len(splits.train))}
    assert ids == {1, 2} and splits.info["static_categoricals"] == {"store": ["north", "south"]}
    config["adapter_config"]["static_categoricals"] = {"store": ["south", "east"]}  # a model that never saw north
    with caplog.at_level("WARNING"):
        splits = build_forecast_data(data, ModelConfig.from_dict(config), "finetune")
    assert "categories ['north'] are not among the model's 2; they get id 0 (unknown)" in caplog.text
    assert {int(splits.test[i][0]["static_categoricals"][0]) for i in range(len(splits.test))} == {0, 1}
    mixed = {**data, "path": str(_stores_csv(tmp_path, mixed=True))}
    with pytest.raises(ValueError, match="column 'store' is not constant within item 'a'"):
        build_forecast_data(mixed, ModelConfig.from_dict(config), "finetune")


@pytest.mark.parametrize("adapter", ["moirai", "timerxl"])
def test_covariate_forecasters_compile_as_one_graph(adapter: str) -> None:
    """The covariate mapping traces as one graph (fullgraph: any break is an error). The aot_eager backend runs
    Dynamo and AOTAutograd as inductor does but skips its code generation (52 s of CPU for Moirai); the contract
    suite compiles every adapter with inductor itself."""
    model = task_model(adapter)
    x = inputs()
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
