"""The torch-free ONNX runtime: import isolation, signature, metadata, input validation and benchmarking."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.export import OnnxModel, to_onnx
from mmsdk.models import TaskModel, build_task_model
from mmsdk.models.config import ModelConfig

CONFIG = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 16, "stride": 8},
    "encoder": {"dim": 32, "depth": 2, "heads": 4},
    "objective": "bert",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[TaskModel, Path]:
    torch.manual_seed(0)
    model = build_task_model(CONFIG, {"task": "forecast", "num_outputs": 24}).eval()
    path = tmp_path_factory.mktemp("runtime") / "forecast.onnx"
    to_onnx(model, path, verify=False)
    return model, path


@pytest.fixture(scope="module")
def runtime(exported: tuple[TaskModel, Path]) -> OnnxModel:
    return OnnxModel(exported[1], threads=1)


@pytest.mark.parametrize("module", ["mmsdk.export.runtime", "mmsdk.export"])
def test_import_does_not_load_torch(module: str) -> None:
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_signature_and_metadata(runtime: OnnxModel, exported: tuple[TaskModel, Path]) -> None:
    assert runtime.input_name == "series"
    assert runtime.input_shape == ["batch", 96, 3]
    assert runtime.output_names == ["outputs"]
    assert ModelConfig.from_dict(runtime.metadata["config"]) == exported[0].config
    assert runtime.metadata["head"] == {
        **{"task": "forecast", "num_outputs": 24, "pooling": None, "dropout": 0.0},
        "modality": None,
        "labels": None,
    }
    assert runtime.metadata["mmsdk.adapter"] == "patchtst"
    assert "series(batch, 96, 3)" in repr(runtime)


def test_outputs_match_eager_and_inputs_are_converted(
    runtime: OnnxModel, exported: tuple[TaskModel, Path], caplog: pytest.LogCaptureFixture
) -> None:
    model = exported[0]
    x = model.backbone.adapter.example_input(5, torch.Generator().manual_seed(3)).double().numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x).float()).numpy()
    with caplog.at_level(logging.DEBUG, logger="mmsdk.export.runtime"):
        out = runtime(x)  # float64 is cast to float32
    assert "float64" in caplog.text
    assert out.dtype == np.float32 and out.shape == (5, 24, 3)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(runtime(x.tolist()), out, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(runtime.run({"series": x.astype(np.float32)})["outputs"], out)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 95, 3), np.float32), r"series expects \(batch, 96, 3\), got \(2, 95, 3\)"),
        (np.zeros((2, 96, 4), np.float32), r"series expects \(batch, 96, 3\), got \(2, 96, 4\)"),
        (np.zeros((96, 3), np.float32), r"series expects \(batch, 96, 3\) \(rank 3\), got \(96, 3\) \(rank 2\)"),
        (np.zeros((0, 96, 3), np.float32), r"series got an empty batch"),
        (np.zeros((2, 96, 3), np.int64), r"series expects float32 values, got an array of dtype int64"),
    ],
    ids=["length", "channels", "rank", "empty", "dtype"],
)
def test_invalid_inputs_name_the_problem(runtime: OnnxModel, array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runtime(array)


def test_run_checks_input_names(runtime: OnnxModel) -> None:
    with pytest.raises(ValueError, match=r"unknown \['x'\], missing \['series'\]"):
        runtime.run({"x": np.zeros((1, 96, 3), np.float32)})


def test_loading_errors(exported: tuple[TaskModel, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        OnnxModel(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        OnnxModel(exported[1], providers=["NoSuchExecutionProvider"])


def test_benchmark_reports_positive_latency(runtime: OnnxModel) -> None:
    stats = runtime.benchmark(np.random.default_rng(0).normal(size=(4, 96, 3)), warmup=2, repeats=10)
    assert stats["batch_size"] == 4 and stats["repeats"] == 10
    for key in ("median_ms", "p90_ms", "mean_ms", "min_ms", "throughput"):
        assert stats[key] > 0, key
    assert stats["p90_ms"] >= stats["median_ms"] >= stats["min_ms"]
    with pytest.raises(ValueError, match="repeats"):
        runtime.benchmark(np.zeros((1, 96, 3), np.float32), repeats=0)


def test_task_and_adapter_config_come_from_the_metadata(runtime: OnnxModel) -> None:
    assert runtime.task == "forecast"
    assert runtime.adapter_config["context_length"] == 96 and runtime.adapter_config["num_channels"] == 3
    bare = copy.copy(runtime)
    bare.metadata = {}
    assert bare.task is None
    with pytest.raises(ValueError, match=r"no single-modality mmsdk\.config metadata"):
        bare.adapter_config  # noqa: B018


def test_top_classes_rank_probabilities_with_the_labels(runtime: OnnxModel) -> None:
    with pytest.raises(ValueError, match="is not a classifier"):
        runtime.top_classes(np.zeros(3))
    classifier = copy.copy(runtime)
    classifier.metadata = {"head": {"task": "classification"}, "mmsdk.labels": '["cat", "dog", "owl"]'}
    best = classifier.top_classes(np.array([0.0, 2.0, 1.0]), top=2)
    assert [name for name, _ in best] == ["dog", "owl"]
    assert best[0][1] == pytest.approx(np.exp(2) / (1 + np.exp(1) + np.exp(2)))
    classifier.metadata["head"] = {"task": "multilabel"}
    assert classifier.top_classes(np.array([0.0, 0.0, 0.0]))[0][1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="stores 3 labels for 2 outputs"):
        classifier.top_classes(np.zeros(2))
