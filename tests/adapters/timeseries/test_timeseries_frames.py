"""TimeSeriesFrame: every input form, roles, missing values, bad inputs, windows, splits and scaling."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from mmsdk.adapters.timeseries.data import bundled_path
from mmsdk.adapters.timeseries.frames import (
    ForecastWindows,
    TimeSeriesFrame,
    check_compatible,
    ett_split,
    ratio_split,
)

VARIABLES = ["a", "b", "c"]
ROLES = {"targets": ["a"], "past_covariates": ["b"], "known_covariates": ["c"]}


def _values(items: int = 1, steps: int = 12) -> np.ndarray:
    """(items, T, 3) with exact-in-float32 values and a few NaNs (never a whole time step)."""
    values = np.arange(items * steps * 3, dtype=np.float32).reshape(items, steps, 3) * 0.5
    values[:, 2, 0] = np.nan
    values[:, 5, 1:] = np.nan
    return values


def _stamps(steps: int = 12) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=steps, freq="h")


def _long(values: np.ndarray, with_variable: bool) -> pd.DataFrame:
    """Long DataFrame (item, time, variable, value) without NaN rows, or (item, time, a, b, c)."""
    rows = []
    for k, item_values in enumerate(values):
        wide = pd.DataFrame(item_values, columns=VARIABLES, index=_stamps(values.shape[1]))
        wide.index.name = "time"
        if with_variable:
            stacked = wide.reset_index().melt(id_vars="time", var_name="variable", value_name="value").dropna()
        else:
            stacked = wide.reset_index()
        rows.append(stacked.assign(item=f"s{k}"))
    return pd.concat(rows, ignore_index=True)


def _forms(tmp_path: Path, items: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The same data in every input form: name → (data, keyword arguments)."""
    values = _values(items)
    ids = [f"s{k}" for k in range(items)]
    long_variable, long_columns = _long(values, True), _long(values, False)
    # Rows shuffled in time; variables keep their order of first appearance (the frame's variable order).
    long_variable = long_variable.sample(frac=1.0, random_state=0).sort_values("variable", kind="stable")
    long_variable.to_csv(tmp_path / "long.csv", index=False)
    array = xr.DataArray(
        values, dims=("item", "time", "variable"), coords={"item": ids, "time": _stamps(), "variable": VARIABLES}
    )
    forms = {
        "xarray_3d": (array.transpose("time", "variable", "item"), {}),
        "numpy": (values, {"variables": VARIABLES, "timestamps": _stamps(), "item_ids": ids}),
        "long_variable": (long_variable, {"item": "item", "variable": "variable"}),
        "long_columns": (long_columns, {"item": "item", "time": "time"}),
        "csv_long": (tmp_path / "long.csv", {"item": "item", "variable": "variable"}),
    }
    if items == 1:
        wide = pd.DataFrame(values[0], columns=VARIABLES).assign(date=_stamps())
        wide.to_csv(tmp_path / "wide.csv", index=False)
        forms |= {
            "xarray_2d": (array.isel(item=0).drop_vars("item"), {}),
            "dataset": (array.isel(item=0).drop_vars("item").to_dataset(dim="variable"), {}),
            "wide_column": (wide, {"time": "date"}),
            "wide_index": (wide.set_index("date"), {}),
            "csv_wide": (str(tmp_path / "wide.csv"), {}),
            "numpy_2d": (values[0], {"variables": VARIABLES, "timestamps": _stamps()}),
        }
    return forms


@pytest.mark.parametrize("items", [1, 2])
def test_every_input_form_gives_the_same_frame(tmp_path: Path, items: int) -> None:
    expected = _values(items)
    for name, (data, kwargs) in _forms(tmp_path, items).items():
        frame = TimeSeriesFrame.from_any(data, **ROLES, **kwargs)
        np.testing.assert_array_equal(frame.values, expected, err_msg=name)
        np.testing.assert_array_equal(frame.observed, ~np.isnan(expected), err_msg=name)
        assert frame.variables == VARIABLES, name
        assert frame.roles == ["target", "past", "known"], name
        assert frame.timestamps.equals(_stamps()), name
        assert frame.freq == "h", name
        assert frame.values.dtype == np.float32 and frame.values.shape == (items, 12, 3)
        if items == 2 or name in ("xarray_3d", "numpy", "long_variable", "long_columns", "csv_long"):
            assert frame.item_ids == [f"s{k}" for k in range(items)], name


def test_roles_default_and_selection() -> None:
    values = _values()[0]
    frame = TimeSeriesFrame.from_numpy(values, variables=VARIABLES)
    assert frame.roles == ["target"] * 3 and frame.timestamps is None and frame.freq is None
    frame = TimeSeriesFrame.from_numpy(values, variables=VARIABLES, known_covariates="c")
    assert frame.targets == ["a", "b"] and frame.known_covariates == ["c"] and frame.past_covariates == []
    frame = TimeSeriesFrame.from_numpy(values, targets=["b"], variables=VARIABLES)  # unnamed variables dropped
    assert frame.variables == ["b"]
    np.testing.assert_array_equal(frame.values[0, :, 0], values[:, 1])


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"targets": ["a", "zz"]}, r"\['zz'\] are not in the data"),
        ({"targets": ["a"], "known_covariates": ["a"]}, "'a' is given both in targets and in known_covariates"),
        ({"past_covariates": ["a", "b", "c"]}, "no target variable"),
    ],
)
def test_bad_roles_are_named(roles: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeSeriesFrame.from_numpy(_values()[0], variables=VARIABLES, **roles)


def test_unsorted_timestamps_are_sorted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    wide = pd.DataFrame(_values()[0], columns=VARIABLES, index=_stamps())
    with caplog.at_level(logging.WARNING):
        frame = TimeSeriesFrame.from_pandas(wide.iloc[::-1])
    assert "not sorted" in caplog.text
    np.testing.assert_array_equal(frame.values[0], _values()[0])


def test_duplicated_timestamps_name_the_item_and_stamp() -> None:
    long = _long(_values(2), with_variable=False)
    long.loc[long.index[-1], "time"] = long["time"].iloc[-2]
    with pytest.raises(ValueError, match=r"item 's1' has duplicated timestamp 2024-01-01 10:00:00"):
        TimeSeriesFrame.from_pandas(long, item="item", time="time")
    long = _long(_values(2), with_variable=True)
    long = pd.concat([long, long.iloc[[3]]])
    with pytest.raises(ValueError, match=r"item 's0' has duplicated timestamp .* for variable 'a'"):
        TimeSeriesFrame.from_pandas(long, item="item", time="time", variable="variable")


def test_irregular_frequency(caplog: pytest.LogCaptureFixture) -> None:
    wide = pd.DataFrame(_values()[0], columns=VARIABLES, index=_stamps()).drop(index=_stamps()[[4, 7]])
    with pytest.raises(ValueError, match=r"item '0' has an irregular time step 2024-01-01 03:00:00 -> .*05:00"):
        TimeSeriesFrame.from_pandas(wide)
    with caplog.at_level(logging.WARNING):
        kept = TimeSeriesFrame.from_pandas(wide, allow_irregular=True)
    assert "irregular" in caplog.text and kept.freq is None and kept.values.shape == (1, 10, 3)
    regular = TimeSeriesFrame.from_pandas(wide, freq="h")
    assert regular.freq == "h" and regular.timestamps.equals(_stamps())
    assert not regular.observed[0, [4, 7]].any()
    np.testing.assert_array_equal(regular.values[0, [3, 5]], _values()[0, [3, 5]])
    with pytest.raises(ValueError, match="not on the '2h' grid"):
        TimeSeriesFrame.from_pandas(wide, freq="2h")


def test_non_numeric_columns_are_named(tmp_path: Path) -> None:
    wide = pd.DataFrame(_values()[0], columns=VARIABLES, index=_stamps()).assign(b="x")
    with pytest.raises(ValueError, match=r"DataFrame: column 'b' is not numeric \(value 'x'\)"):
        TimeSeriesFrame.from_pandas(wide)
    path = tmp_path / "bad.csv"
    wide.rename_axis("date").reset_index().to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"{path.name}: column 'b' is not numeric"):
        TimeSeriesFrame.from_csv(path)
    with pytest.raises(ValueError, match="not numeric"):
        TimeSeriesFrame.from_numpy(np.array([["x", "y"]]))


def test_empty_data(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("date,a\n")
    for data, message in [
        (pd.DataFrame(), "no data"),
        (tmp_path / "empty.csv", "empty.csv: the CSV is empty"),
        (tmp_path / "header.csv", r"header.csv: no data \(shape \(0, 2\)\)"),
        (np.zeros((0, 3)), "no rows"),
        (xr.Dataset(), "no data variables"),
    ]:
        with pytest.raises(ValueError, match=message):
            TimeSeriesFrame.from_any(data)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        TimeSeriesFrame.from_csv(tmp_path / "missing.csv")


def test_all_nan_and_constant_channels_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    values = _values()[0]
    values[:, 1] = np.nan
    values[:, 2] = 3.0
    with caplog.at_level(logging.WARNING):
        frame = TimeSeriesFrame.from_numpy(values, variables=VARIABLES)
    assert "['b'] have no observed value" in caplog.text
    assert not frame.observed[..., 1].any() and frame.observed[..., 2].all()
    split = ratio_split(frame, context_length=4, ratios=(0.5, 0.2))
    assert split.scaler is not None and split.scaler.std[2] == 1.0  # constant: scale kept
    np.testing.assert_array_equal(split.frame.values[0, :, 2], 0.0)
    assert np.isnan(split.frame.values[..., 1]).all()


def test_observed_mask_travels_with_missing_values() -> None:
    frame = TimeSeriesFrame.from_numpy(_values()[0], variables=VARIABLES)
    assert frame.observed.dtype == bool
    assert not frame.observed[0, 2, 0] and not frame.observed[0, 5, 1:].any() and frame.observed[0, 5, 0]
    assert frame.observed.sum() == 12 * 3 - 3


def test_short_series_are_left_padded() -> None:
    frame = TimeSeriesFrame.from_numpy(np.arange(10, dtype=np.float32)[:, None])
    windows = ForecastWindows(frame, context_length=8, horizon=4)
    assert len(windows) == 1
    x, y = windows[0]
    assert x.shape == (8, 1) and y.shape == (4, 1)
    assert torch.isnan(x[:2]).all() and torch.equal(x[2:, 0], torch.arange(6.0))
    assert torch.equal(y[:, 0], torch.arange(6.0, 10.0))
    assert windows.locate(0) == ("0", -2)


def test_windows_skip_contexts_without_observed_targets() -> None:
    values = np.ones((20, 2), dtype=np.float32)
    values[:8, 0] = np.nan  # target unobserved for the first 8 steps; the covariate stays observed
    frame = TimeSeriesFrame.from_numpy(values, targets=["0"], past_covariates=["1"])
    windows = ForecastWindows(frame, context_length=4, horizon=2)
    assert len(windows) == 20 - 6 + 1 - 5  # starts 0..4 have an all-NaN context
    assert windows.locate(0) == ("0", 5)
    values[:, 0] = np.nan
    frame = TimeSeriesFrame.from_numpy(np.stack([np.ones((20, 2), np.float32), values]), targets=["0"])
    with pytest.raises(ValueError, match=r"item '1' has no observed value in its targets \['0'\]"):
        ForecastWindows(frame, context_length=4, horizon=2)


def test_covariate_windows() -> None:
    steps = np.arange(30, dtype=np.float32)
    values = np.stack([steps, steps + 100, steps + 200, steps + 300], axis=1)  # (30, 4)
    frame = TimeSeriesFrame.from_numpy(values, targets=["0", "3"], past_covariates=["1"], known_covariates=["2"])
    windows = ForecastWindows(frame, context_length=6, horizon=3, stride=5, with_covariates=True)
    assert len(windows) == 5
    item, y = windows[1]
    assert item["series"].shape == (6, 2) and y.shape == (3, 2)
    assert item["past_covariates"].shape == (6, 1) and item["known_covariates"].shape == (9, 1)
    assert torch.equal(item["series"][:, 1], torch.arange(5.0, 11.0) + 300)
    assert torch.equal(y[:, 0], torch.arange(11.0, 14.0))
    assert torch.equal(item["known_covariates"][:, 0], torch.arange(5.0, 14.0) + 200)
    known_only = frame.select(["0", "2"])  # no past covariate: no such block
    assert set(ForecastWindows(known_only, 6, 3, with_covariates=True)[0][0]) == {"series", "known_covariates"}
    x, y = ForecastWindows(frame, 6, 3)[1]
    assert x.shape == (6, 2) and y.shape == (3, 2)
    assert ForecastWindows(frame, 6, 0)[0].shape == (6, 2)


def test_items_of_different_lengths_are_right_aligned() -> None:
    long = _long(_values(2), with_variable=False)
    long = long[~((long["item"] == "s1") & (long["time"] < _stamps()[4]))]  # s1 starts 4 steps later
    frame = TimeSeriesFrame.from_pandas(long, item="item", time="time")
    assert frame.lengths.tolist() == [12, 8] and isinstance(frame.timestamps, list)
    assert frame.observed[1, 4:].any() and not frame.observed[1, :4].any()
    assert frame.item_timestamps(1).equals(_stamps())  # padding rows get the timestamps before the data
    np.testing.assert_array_equal(frame.values[1, 4:], _values(2)[1, 4:])
    split = ratio_split(frame, context_length=2, ratios=(0.5, 0.25), scale=False)
    assert split.borders["train"] == [(0, 6), (4, 8)] and split.borders["test"] == [(7, 12), (8, 12)]


@pytest.mark.parametrize("uneven", [False, True])
def test_xarray_round_trip(uneven: bool) -> None:
    long = _long(_values(2), with_variable=True)
    if uneven:
        long = long[~((long["item"] == "s0") & (long["time"] < _stamps()[3]))]
    frame = TimeSeriesFrame.from_pandas(long, item="item", time="time", variable="variable", **ROLES)
    array = frame.to_xarray()
    assert array.dims == ("item", "time", "variable") and array["role"].values.tolist() == ["target", "past", "known"]
    back = TimeSeriesFrame.from_xarray(array)
    np.testing.assert_array_equal(back.values, frame.values)
    assert back.roles == frame.roles and back.item_ids == ["s0", "s1"] and back.freq == "h"
    assert back.lengths.tolist() == frame.lengths.tolist()
    for k in range(2):
        assert back.item_timestamps(k).equals(frame.item_timestamps(k))


def test_scaler_is_fit_on_observed_train_rows_only() -> None:
    values = np.concatenate([np.full((70, 1), 1.0), np.full((30, 1), 50.0)]).astype(np.float32)
    values[:35:2, 0] = 3.0
    values[1, 0] = np.nan
    frame = TimeSeriesFrame.from_numpy(values, timestamps=pd.date_range("2024", periods=100, freq="D"))
    split = ratio_split(frame, context_length=10, ratios=(0.7, 0.1))
    train = values[:70, 0]
    assert split.scaler is not None
    np.testing.assert_allclose(split.scaler.mean, [np.nanmean(train)], rtol=1e-6)
    np.testing.assert_allclose(split.scaler.std, [np.nanstd(train)], rtol=1e-6)
    assert split.borders == {"train": [(0, 70)], "val": [(60, 80)], "test": [(70, 100)]}
    assert np.isnan(split.frame.values[0, 1, 0]) and not split.frame.observed[0, 1, 0]
    _, y = split.windows("test", horizon=5)[0]
    np.testing.assert_allclose(y.numpy(), split.scaler.transform(values[80:85]), rtol=1e-6)


def test_ett_split_on_bundled_etth1() -> None:
    frame = TimeSeriesFrame.from_csv(bundled_path())
    assert frame.values.shape == (1, 17420, 7) and frame.freq == "h" and len(frame.targets) == 7
    split = ett_split(frame, context_length=336)
    sizes = [len(split.windows(name, horizon=96)) for name in ("train", "val", "test")]
    assert sizes == [8209, 2785, 2785]
    train = frame.values[0, :8640]
    np.testing.assert_allclose(split.scaler.mean, train.mean(axis=0), rtol=1e-4)
    x, _ = split.windows("val", horizon=96)[0]
    np.testing.assert_allclose(x.numpy(), split.scaler.transform(frame.values[0, 8304:8640]), atol=1e-5)
    with pytest.raises(ValueError, match="freq='15min' but the data has frequency 'h'"):
        ett_split(frame, context_length=336, freq="15min")
    short = TimeSeriesFrame.from_numpy(np.zeros((100, 1)), item_ids=["tiny"])
    with pytest.raises(ValueError, match="item 'tiny': the ETT split needs 14400 rows"):
        ett_split(short, context_length=336)


def test_check_compatible_names_counts_and_variables() -> None:
    frame = TimeSeriesFrame.from_numpy(_values()[0], variables=VARIABLES, known_covariates=["c"])
    check_compatible(frame, 2)
    check_compatible(frame, 3, include_covariates=True)
    with pytest.raises(ValueError, match=r"built for 7 channels but the data has 2 target variables: \['a', 'b'\]"):
        check_compatible(frame, 7)
    with pytest.raises(ValueError, match=r"built for 1 channels \(\['OT'\]\) but the data has 2"):
        check_compatible(frame, ["OT"])


def test_select_reorders_variables_with_their_roles() -> None:
    frame = TimeSeriesFrame.from_numpy(_values()[0], variables=VARIABLES, known_covariates=["c"])
    picked = frame.select(["c", "a"])
    assert picked.variables == ["c", "a"] and picked.roles == ["known", "target"]
    np.testing.assert_array_equal(picked.values[0], _values()[0][:, [2, 0]])
    np.testing.assert_array_equal(picked.observed, ~np.isnan(picked.values))
    with pytest.raises(ValueError, match=r"\['zz'\] are not in the data"):
        frame.select(["a", "zz"])
    with pytest.raises(ValueError, match="no target variable"):
        frame.select(["c"])


def test_time_column_detection_can_be_turned_off() -> None:
    table = pd.DataFrame({"time": [3.0, 4.0, 5.0], "v": [1.0, 2.0, 3.0]})  # a numeric variable called "time"
    assert TimeSeriesFrame.from_pandas(table, detect_time=False).variables == ["time", "v"]
    assert TimeSeriesFrame.from_pandas(table).variables == ["v"]


def test_public_import_paths_are_kept() -> None:
    from mmsdk.adapters import timeseries
    from mmsdk.adapters.timeseries import data, frames, series_frame, windows

    assert frames.TimeSeriesFrame is series_frame.TimeSeriesFrame is timeseries.TimeSeriesFrame
    assert frames.ForecastWindows is windows.ForecastWindows is timeseries.ForecastWindows
    assert frames.StandardScaler is data.StandardScaler is windows.StandardScaler
    assert frames.ett_borders is data.ett_borders and frames.ratio_borders is data.ratio_borders
    for name in ("FrameSplit", "check_compatible", "ett_split", "ratio_split", "ROLES", "Borders"):
        assert getattr(frames, name) is not None
