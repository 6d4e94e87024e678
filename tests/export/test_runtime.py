"""The torch-free ONNX runtime: import isolation, signature, metadata, input validation and benchmarking."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
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
        "quantiles": None,
        "quantile_scales": None,
    }
    assert runtime.quantile_levels is None
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


def two_output_model(path: Path) -> Path:
    """A hand-built graph of a NaN-padded waveform (batch, samples) with two outputs: `total`, each sample's sum
    over its real values (batch,), and `stats`, their max and count (batch, 2)."""
    helper, tp = onnx.helper, onnx.TensorProto
    nodes = [
        helper.make_node("IsNaN", ["waveform"], ["nan"]),
        helper.make_node("Not", ["nan"], ["real"]),
        helper.make_node("Where", ["nan", "zero", "waveform"], ["filled"]),
        helper.make_node("Where", ["nan", "low", "waveform"], ["floored"]),
        helper.make_node("ReduceSum", ["filled", "axis"], ["total"], keepdims=0),
        helper.make_node("ReduceMax", ["floored", "axis"], ["peak"], keepdims=1),
        helper.make_node("Cast", ["real"], ["ones"], to=tp.FLOAT),
        helper.make_node("ReduceSum", ["ones", "axis"], ["count"], keepdims=1),
        helper.make_node("Concat", ["peak", "count"], ["stats"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "two_outputs",
        [helper.make_tensor_value_info("waveform", tp.FLOAT, ["batch", "samples"])],
        [
            helper.make_tensor_value_info("total", tp.FLOAT, ["batch"]),
            helper.make_tensor_value_info("stats", tp.FLOAT, ["batch", 2]),
        ],
        initializer=[
            helper.make_tensor("zero", tp.FLOAT, [], [0.0]),
            helper.make_tensor("low", tp.FLOAT, [], [-1e30]),
            helper.make_tensor("axis", tp.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.helper.set_model_props(model, {"mmsdk.nonfinite": json.dumps({"waveform": "nan_as_padding"})})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    return OnnxModel(two_output_model(tmp_path_factory.mktemp("two_outputs") / "padded.onnx"), threads=1)


def test_batch_size_runs_in_chunks_and_matches_one_call(runtime: OnnxModel) -> None:
    x = np.random.default_rng(0).normal(size=(7, 96, 3)).astype(np.float32)
    whole = runtime(x)
    for batch_size in (1, 3, 7, 100):
        np.testing.assert_allclose(runtime(x, batch_size=batch_size), whole, atol=1e-5, rtol=0)
    chunked = runtime.run({"series": x}, batch_size=2)["outputs"]
    assert chunked.shape == whole.shape == (7, 24, 3)
    for batch_size in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            runtime(x, batch_size=batch_size)


def test_batch_size_still_validates_every_row(runtime: OnnxModel) -> None:
    x = np.zeros((5, 96, 3), np.float32)
    x[4, 10, 2] = np.inf
    with pytest.raises(
        ValueError, match=r"series holds 1 Inf value\(s\) \(shape \(5, 96, 3\), the first at index \(4, 10, 2\)"
    ):
        runtime(x, batch_size=2)


def test_batch_size_needs_one_batch_size_across_inputs(padded: OnnxModel) -> None:
    padded._inputs = {**padded._inputs, "other": padded._inputs["waveform"]}  # a copy with a second input
    padded.nonfinite = {**padded.nonfinite, "other": "nan_as_padding"}
    try:
        with pytest.raises(ValueError, match=r"inputs of one batch size \(axis 0\), got waveform: 3, other: 2"):
            padded.run({"waveform": np.ones((3, 4), np.float32), "other": np.ones((2, 4), np.float32)}, batch_size=2)
    finally:
        del padded._inputs["other"], padded.nonfinite["other"]


def test_named_outputs_return_only_those_asked_for(padded: OnnxModel) -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, -1.0, np.nan]], np.float32)
    everything = padded.run({"waveform": x})
    assert list(everything) == ["total", "stats"] == padded.output_names
    np.testing.assert_allclose(everything["total"], [6.0, 3.0])
    np.testing.assert_allclose(everything["stats"], [[3.0, 3.0], [4.0, 2.0]])
    only = padded.run({"waveform": x}, outputs=["stats"])
    assert list(only) == ["stats"]
    np.testing.assert_array_equal(only["stats"], everything["stats"])
    assert list(padded.run({"waveform": x}, outputs="total", batch_size=1)) == ["total"]
    assert list(padded.run({"waveform": x}, outputs=["stats", "total"])) == ["stats", "total"]
    with pytest.raises(ValueError, match=r"padded\.onnx has outputs \['total', 'stats'\]; got unknown \['quantiles'\]"):
        padded.run({"waveform": x}, outputs=["total", "quantiles"])
    np.testing.assert_array_equal(padded(x), everything["total"])  # calling it: the first output


def test_samples_of_different_lengths_are_padded_with_nan(padded: OnnxModel) -> None:
    samples = [np.array([1.0, 2.0, 3.0, 4.0], np.float32), np.array([5.0]), [6.0, 7.0]]
    out = padded.run({"waveform": samples}, batch_size=2)
    np.testing.assert_allclose(out["total"], [10.0, 5.0, 13.0])
    np.testing.assert_allclose(out["stats"][:, 1], [4.0, 1.0, 2.0])  # real lengths: the rest is padding
    equal = [np.ones(3, np.float32), np.zeros(3, np.float32)]
    np.testing.assert_allclose(padded.run({"waveform": equal})["total"], [3.0, 0.0])
    with pytest.raises(ValueError, match=r"waveform\[1\] expects float32 values, got an array of dtype int64"):
        padded.run({"waveform": [np.ones(3, np.float32), np.arange(2)]})
    with pytest.raises(ValueError, match=r"NaN value.*before the end of their sample"):
        padded.run({"waveform": [np.array([1.0, np.nan, 2.0]), np.ones(2)]})


def test_samples_of_different_shapes_need_padding(runtime: OnnxModel, padded: OnnxModel) -> None:
    with pytest.raises(
        ValueError,
        match=r"series got samples of different shapes \[\(96, 3\), \(90, 3\)\], but this input has no padding",
    ):
        runtime([np.zeros((96, 3)), np.zeros((90, 3))])
    with pytest.raises(
        ValueError, match=r"samples of shapes \[\(2, 3\), \(3\,\)\]: samples may differ only in their last"
    ):
        padded.run({"waveform": [np.ones((2, 3)), np.ones(3)]})


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "external_data_missing"])
def test_damaged_files_name_the_file_and_the_problem(
    damage: str, exported: tuple[TaskModel, Path], tmp_path: Path
) -> None:
    source = exported[1]
    path = tmp_path / f"{damage}.onnx"
    if damage == "empty":
        path.write_bytes(b"")
        message = r"empty\.onnx is empty \(0 bytes\), not an ONNX model"
    elif damage == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        message = r"truncated\.onnx is not a valid ONNX model: its \d+ bytes do not parse \(a truncated or corrupted"
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        message = r"random\.onnx is not a valid ONNX model"
    else:
        onnx.save(
            onnx.load(str(source)), str(path), save_as_external_data=True, location="weights.data", size_threshold=0
        )
        (tmp_path / "weights.data").unlink()
        message = r"external_data_missing\.onnx needs its external data \['weights\.data'\], which is missing from"
    with pytest.raises(ValueError, match=message) as info:
        OnnxModel(path)
    assert "re-export or re-download it (ONNX Runtime: " in str(info.value)
    assert type(info.value.__cause__).__module__.startswith("onnxruntime")  # ONNX Runtime's own error, as the cause


def test_auto_providers_take_the_fastest_installed(exported: tuple[TaskModel, Path]) -> None:
    from mmsdk.export.sessions import choose_providers

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider", "CUDAExecutionProvider"]) == gpu[1:]
    assert choose_providers("auto", ["AzureExecutionProvider", *gpu]) == gpu
    assert choose_providers("auto", []) == ["CPUExecutionProvider"]
    assert choose_providers(None, gpu) == ["CPUExecutionProvider"]  # the default: results independent of the build
    assert choose_providers("CUDAExecutionProvider", gpu) == ["CUDAExecutionProvider"]
    model = OnnxModel(exported[1], providers="auto", threads=1)  # here: the CPU provider last (or alone)
    assert model.session.get_providers()[-1] == "CPUExecutionProvider"
