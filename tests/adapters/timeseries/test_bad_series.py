"""Bad time-series data: all-NaN series and channels, non-UTF-8 and non-CSV files, messages without file contents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mmsdk.adapters.timeseries import corpus
from mmsdk.adapters.timeseries.corpus import CorpusConfig, build_corpus, build_moirai_data
from mmsdk.adapters.timeseries.data import WindowDataset, build_forecast_data, load_csv
from mmsdk.adapters.timeseries.frames import ForecastWindows, TimeSeriesFrame
from mmsdk.models.config import ModelConfig

SECRET = "hunter2-do-not-print"


def _patchtst() -> ModelConfig:
    adapter = {"context_length": 16, "num_channels": 2, "patch_len": 4, "stride": 4}
    return ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": adapter})


def _moirai() -> ModelConfig:
    adapter = {"context_length": 16, "patch_sizes": [4, 8], "patch_size": 4, "max_variates": 4}
    encoder = {"dim": 16, "depth": 1, "heads": 2, "rope": "1d", "variate_bias": True}
    return ModelConfig.from_dict({"adapter": "moirai", "adapter_config": adapter, "encoder": encoder})


def _csv(path: Path, a: np.ndarray, b: np.ndarray) -> Path:
    stamps = pd.date_range("2024-01-01", periods=len(a), freq="h")
    pd.DataFrame({"date": stamps, "a": a, "b": b}).to_csv(path, index=False)
    return path


def _data(path: Path, **overrides: Any) -> dict[str, Any]:
    return {"path": str(path), "split": "ratio", "horizon": 4, "batch_size": 4, **overrides}


def _partly_missing(n: int = 120) -> np.ndarray:
    values = np.sin(np.arange(n, dtype=np.float64) / 5)
    values[::7] = np.nan
    return values


def test_window_dataset_refuses_all_nan_series_and_channels() -> None:
    with pytest.raises(ValueError, match=r"WindowDataset: the series has no observed value.*shape \(50, 2\)"):
        WindowDataset(np.full((50, 2), np.nan, np.float32), 8)
    values = np.stack([_partly_missing(50), np.full(50, np.nan)], axis=1).astype(np.float32)
    with pytest.raises(ValueError, match=r"channel\(s\) \['pressure'\] of 2 have no observed value"):
        WindowDataset(values, 8, horizon=2, columns=["temp", "pressure"])
    assert len(WindowDataset(values[:, :1], 8, horizon=2)) == 50 - 10 + 1  # partly missing is fine


def test_frames_and_windows_refuse_all_nan_series_and_target_columns() -> None:
    with pytest.raises(ValueError, match=r"numpy input: no observed value: every value of \['0', '1'\] is NaN"):
        TimeSeriesFrame.from_numpy(np.full((40, 2), np.nan))
    covariate = np.stack([np.full(40, np.nan), np.ones(40)], axis=1)  # only the covariate is observed
    with pytest.raises(ValueError, match=r"the target variables \['y'\] have no observed value"):
        TimeSeriesFrame.from_numpy(covariate, targets=["y"], past_covariates=["c"], variables=["y", "c"])
    values = np.stack([_partly_missing(40), np.full(40, np.nan), np.ones(40)], axis=1)
    frame = TimeSeriesFrame.from_numpy(values, targets=["a", "b"], past_covariates=["c"], variables=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"variables \['b \(target\)'\] have no observed value in the data"):
        ForecastWindows(frame, context_length=8, horizon=2)
    frame = frame.select(["a", "c"])
    assert len(ForecastWindows(frame, context_length=8, horizon=2, with_covariates=True)) == 40 - 10 + 1
    frame = TimeSeriesFrame.from_numpy(values, targets=["a"], past_covariates=["b"], variables=["a", "b", "c"])
    assert len(ForecastWindows(frame, 8, 2)) == 31  # an unused covariate does not matter ...
    with pytest.raises(ValueError, match=r"\['b \(past\)'\] have no observed value in rows 0-20"):
        ForecastWindows(frame, 8, 2, split=(0, 20), with_covariates=True)  # ... a windowed one does


@pytest.mark.parametrize("builder", [build_forecast_data, build_moirai_data])
def test_recipe_builders_refuse_all_nan_files_and_columns(tmp_path: Path, builder: Any) -> None:
    model = _patchtst() if builder is build_forecast_data else _moirai()
    empty = _csv(tmp_path / "empty_series.csv", np.full(120, np.nan), np.full(120, np.nan))
    with pytest.raises(ValueError, match=r"empty_series\.csv: no observed value: every value of \['a', 'b'\]"):
        builder(_data(empty), model, "pretrain")
    dead = _csv(tmp_path / "dead_column.csv", _partly_missing(), np.full(120, np.nan))
    for stage in ("pretrain", "finetune"):
        with pytest.raises(ValueError, match=r"dead_column\.csv: train split: variables \['b \(target\)'\] have no"):
            builder(_data(dead), model, stage)
    splits = builder(_data(dead, columns=["a"]), model, "finetune")  # partly missing values are fine
    assert splits.info["columns"] == ["a"] and len(splits.train) > 0


def test_corpus_series_without_observed_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    nile = pd.DataFrame({"year": np.arange(1871, 1971), "volume": np.nan})
    monkeypatch.setattr(corpus, "_load_statsmodels", lambda name: nile)
    with pytest.raises(ValueError, match=r"corpus series 'nile': the series has no observed value"):
        build_corpus(CorpusConfig(statsmodels=("nile",), synthetic_series=0))
    data = {"corpus": {"statsmodels": ["nile"], "synthetic_series": 2, "synthetic_length": 64}, "max_tokens": 32}
    with pytest.raises(ValueError, match="corpus series 'nile'"):
        build_moirai_data(data, _moirai(), "pretrain")


def test_latin1_csv_names_the_file_and_the_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    rows = "date,température,pression\n" + "".join(f"2024-01-01 {h:02d}:00,{h},{2 * h}\n" for h in range(24))
    path.write_bytes(rows.encode("latin-1"))
    for read in (load_csv, TimeSeriesFrame.from_csv):
        with pytest.raises(ValueError, match=r"latin\.csv: the file is not utf-8 text .*pass encoding="):
            read(path)
    assert load_csv(path, encoding="latin-1").columns == ["température", "pression"]
    assert TimeSeriesFrame.from_csv(path, encoding="latin-1").variables == ["température", "pression"]
    with pytest.raises(ValueError, match=r"latin\.csv: the file is not utf-8 text .*data\.encoding="):
        build_forecast_data(_data(path, horizon=1), _patchtst(), "finetune")


def test_bad_files_are_named_without_echoing_their_lines(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(f"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:{SECRET}:/usr/sbin\nbin:x:2:2:bin:/bin\n")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    cell = tmp_path / "cell.csv"
    cell.write_text(f"date,a,b\n2024-01-01,1,2\n2024-01-02,{SECRET},3\n2024-01-03,4,5\n")
    date = tmp_path / "date.csv"
    date.write_text(f"date,a,b\n2024-01-01,1,2\n{SECRET},2,3\n2024-01-03,4,5\n")
    cases = [(passwd, "is not numeric"), (binary, "binary data"), (cell, "data row 2 of 3"), (date, "data row 2 of 3")]
    recipe = lambda p: build_forecast_data(_data(p, horizon=1), _patchtst(), "finetune")  # noqa: E731
    for path, match in cases:
        for read in (load_csv, TimeSeriesFrame.from_csv, recipe):
            with pytest.raises(ValueError, match=match) as info:
                read(path)
            message = str(info.value)
            assert path.name in message and SECRET not in message and "daemon" not in message
