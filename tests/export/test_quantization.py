"""int8 and float16 copies of exported models: they run in OnnxModel, stay close to float32, keep the metadata, and
the precision report measures and bounds what the conversion cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from mmsdk.export.onnx import to_onnx
from mmsdk.export.quantization import PrecisionLossError, precision_report, quantize, to_fp16
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import build_task_model

CONFIG: dict[str, Any] = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 16, "stride": 8},
    "encoder": {"dim": 64, "depth": 2, "heads": 4},
    "objective": "bert",
}
# Measured on these models (onnxruntime 1.23, 64 held-out series): max |int8 dynamic - fp32| 0.025 (outputs up to ~2.2),
# int8 static QDQ 0.092, fp16 1.3e-3 on series around 50 (outputs up to ~52), i.e. ~2.5e-5 of the output scale (4.4e-4
# for series of scale 1000); the bounds leave about 2-3x headroom.
DYNAMIC_ATOL, STATIC_ATOL, FP16_RTOL = 0.08, 0.25, 1e-3


def _series(batch_size: int, seed: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal((batch_size, 96, 3))
    return (scale * values + offset).astype(np.float32)


def _export(directory: Path, name: str, head: dict[str, Any], dim: int) -> Path:
    torch.manual_seed(0)
    model = build_task_model({**CONFIG, "encoder": {**CONFIG["encoder"], "dim": dim}}, head)
    return to_onnx(model, directory / f"{name}.onnx", verify_batch_sizes=(1, 3)).path


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("quant"), "forecast", {"task": "forecast", "num_outputs": 24}, dim=64)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("quant"), "classify", {"task": "classification", "num_outputs": 5}, dim=32)


@pytest.fixture(scope="module")
def dynamic(forecaster: Path) -> Path:
    return quantize(forecaster, forecaster.with_name("nested") / "forecast.int8.onnx")


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_dynamic_int8_forecaster_runs_close_smaller_and_keeps_metadata(forecaster: Path, dynamic: Path) -> None:
    reference, converted = OnnxModel(forecaster), OnnxModel(dynamic)
    x = _series(8, seed=1)
    expected, actual = reference(x), converted(x)
    assert actual.shape == expected.shape == (8, 24, 3)
    np.testing.assert_allclose(actual, expected, atol=DYNAMIC_ATOL, rtol=0)
    assert not np.array_equal(actual, expected)  # the weights really are int8
    assert dynamic.stat().st_size < 0.5 * forecaster.stat().st_size
    ops = {node.op_type for node in onnx.load(dynamic).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}, ops
    stored, original = _metadata(dynamic), _metadata(forecaster)
    assert {k: stored[k] for k in original} == original and stored["mmsdk.precision"] == "int8-dynamic"
    assert (converted.nonfinite, converted.max_abs, converted.min_sizes) == (
        reference.nonfinite,
        reference.max_abs,
        reference.min_sizes,
    )
    bad = x.copy()
    bad[0, 5, 1] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        converted(bad)
    with pytest.raises(ValueError, match=r"series expects \(batch, 96, 3\)"):
        converted(x[:, :50])


def test_dynamic_int8_classifier_keeps_its_predictions(classifier: Path, tmp_path: Path) -> None:
    path = quantize(classifier, tmp_path / "classify.int8.onnx", per_channel=False)
    x = _series(32, seed=2)
    expected, actual = OnnxModel(classifier)(x), OnnxModel(path)(x)
    np.testing.assert_allclose(actual, expected, atol=DYNAMIC_ATOL, rtol=0)
    assert OnnxModel(path).labels == OnnxModel(classifier).labels
    targets = expected.argmax(axis=-1)
    report = precision_report(classifier, path, x, targets, repeats=3, warmup=1)
    assert report.metric == "accuracy" and report.reference_value == 100.0
    assert report.change == pytest.approx(100.0 - report.converted_value) and report.change <= 10.0


def test_static_qdq_with_calibration(forecaster: Path, tmp_path: Path) -> None:
    calibration = (_series(4, seed=10 + i) for i in range(50))  # a generator: only the first batches are read
    path = quantize(forecaster, tmp_path / "forecast.qdq.onnx", mode="static", calibration=calibration)
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    x = _series(8, seed=1)
    np.testing.assert_allclose(OnnxModel(path)(x), OnnxModel(forecaster)(x), atol=STATIC_ATOL, rtol=0)
    assert _metadata(path)["mmsdk.precision"] == "int8-static"
    from_array = quantize(forecaster, tmp_path / "array.onnx", mode="static", calibration=_series(24, seed=3))
    assert OnnxModel(from_array)(x).shape == (8, 24, 3)


def _int8_weights(path: Path) -> np.ndarray:
    weights = [
        onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights, "no int8 weights"
    return np.concatenate([w.ravel() for w in weights])


def test_weights_are_7_bit_by_default_so_cpus_without_vnni_do_not_saturate(
    forecaster: Path, dynamic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    default = _int8_weights(dynamic)
    assert np.abs(default.astype(np.int32)).max() <= 64  # 7 bits: u8 x s8 pair sums (<= 2 * 255 * 64) fit int16
    import mmsdk.export.quantization as quantization

    monkeypatch.setattr(quantization, "saturates_full_range", lambda: True)
    with caplog.at_level("WARNING", logger="mmsdk.export.quantization"):
        full = _int8_weights(quantize(forecaster, tmp_path / "full.onnx", reduce_range=False))
    assert np.abs(full.astype(np.int32)).max() > 64
    assert "no VNNI" in caplog.text


@pytest.mark.parametrize(
    ("flags", "saturates"),
    [
        ("fpu sse2 avx2 fma", True),
        ("fpu avx2 avx512f avx512_vnni", False),
        ("fpu avx2 avx_vnni", False),
        ("fp asimd", False),
    ],
)
def test_saturation_is_read_from_the_cpu_flags(flags: str, saturates: bool, tmp_path: Path) -> None:
    from mmsdk.export.quantization import saturates_full_range

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\nvmx flags\t: ept\n")
    assert saturates_full_range(cpuinfo) is saturates
    assert saturates_full_range(tmp_path / "missing") is False  # cannot tell: no warning


def test_static_without_calibration_is_a_clear_error(forecaster: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"static quantization needs calibration data.*\['series'\]"):
        quantize(forecaster, tmp_path / "q.onnx", mode="static")
    with pytest.raises(ValueError, match="empty calibration data"):
        quantize(forecaster, tmp_path / "q.onnx", mode="static", calibration=[])
    with pytest.raises(ValueError, match=r"must name the model's inputs \['series'\]"):
        quantize(forecaster, tmp_path / "q.onnx", mode="static", calibration=[{"x": _series(2, 0)}])
    with pytest.raises(ValueError, match="mode must be"):
        quantize(forecaster, tmp_path / "q.onnx", mode="int4")  # type: ignore[arg-type]
    assert not (tmp_path / "q.onnx").exists()


def test_fp16_keeps_float32_io_and_runs(forecaster: Path, tmp_path: Path) -> None:
    path = to_fp16(forecaster, tmp_path / "forecast.fp16.onnx")
    graph = onnx.load(path).graph
    float32 = onnx.TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)] == [float32, float32]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    assert path.stat().st_size < 0.75 * forecaster.stat().st_size
    reference, converted = OnnxModel(forecaster), OnnxModel(path)
    assert _metadata(path)["mmsdk.precision"] == "fp16" and converted.max_abs == reference.max_abs
    for scale, offset in ((1.0, 50.0), (1000.0, 50.0)):  # badly scaled raw series must not overflow float16
        x = _series(8, seed=4, scale=scale, offset=offset)
        expected, actual = reference(x), converted(x)
        assert actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, atol=FP16_RTOL * np.abs(expected).max(), rtol=0)


def test_precision_bound_raises_when_tight_and_passes_when_loose(forecaster: Path, dynamic: Path) -> None:
    x = _series(16, seed=5)
    targets = OnnxModel(forecaster)(x) + np.random.default_rng(6).normal(0, 0.5, (16, 24, 3)).astype(np.float32)
    report = precision_report(forecaster, dynamic, x, targets, max_metric_change=0.5, repeats=5, warmup=1)
    assert report.metric == "mse" and report.precision == "int8-dynamic" and report.samples == 16
    assert report.change == pytest.approx((report.converted_value - report.reference_value) / report.reference_value)
    assert 0 < report.max_abs_diff < DYNAMIC_ATOL and report.mean_abs_diff <= report.max_abs_diff
    assert report.converted_bytes == dynamic.stat().st_size and report.size_ratio < 0.5
    assert set(report.latency_ms["converted"]) == {"1", "32"} and report.latency_ratio(32) > 0
    written = json.loads(Path(report.json_path).read_text())
    assert Path(report.json_path).parent == dynamic.parent and written["change"] == report.change
    mae = precision_report(forecaster, dynamic, x, targets, metric="mae", repeats=1, warmup=0, write_json=False)
    assert mae.metric == "mae" and mae.reference_value <= report.reference_value**0.5  # mean |e| <= sqrt(mean e²)
    with pytest.raises(PrecisionLossError, match=r"max_abs change .* exceeds max_metric_change 1e-09") as info:
        precision_report(forecaster, dynamic, x, max_metric_change=1e-9, repeats=1, warmup=0)
    assert isinstance(info.value, ValueError) and info.value.report.change == info.value.report.max_abs_diff
    lenient = precision_report(forecaster, dynamic, x, max_metric_change=1e-9, raise_on_violation=False, repeats=1)
    assert lenient.change > 1e-9
    with pytest.raises(ValueError, match="needs targets"):
        precision_report(forecaster, dynamic, x, metric="mse", repeats=1)


@pytest.mark.parametrize("convert", [quantize, to_fp16], ids=["quantize", "to_fp16"])
def test_missing_or_truncated_input_is_a_clear_error(convert: Any, forecaster: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        convert(missing, tmp_path / "out.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(forecaster.read_bytes()[: forecaster.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.onnx is not a readable ONNX model"):
        convert(truncated, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_a_quantile_forecasters_report_scores_every_output(tmp_path: Path) -> None:
    """The forecast and the quantiles both count: per-output differences, the quantiles' weighted quantile loss (as
    the time-series metrics compute it) on both models, and the bound applies to the worse of the two changes."""
    from mmsdk.adapters.timeseries.metrics import weighted_quantile_loss

    levels = [0.1, 0.5, 0.9]
    head = {"task": "forecast", "num_outputs": 24, "quantiles": levels}
    reference = _export(tmp_path, "quantiles", head, dim=32)
    converted = quantize(reference, tmp_path / "quantiles.int8.onnx")
    x = _series(16, seed=7)
    model = OnnxModel(reference)
    assert model.output_names == ["forecast", "quantiles"]
    targets = model(x) + np.random.default_rng(8).normal(0, 0.5, (16, 24, 3)).astype(np.float32)
    report = precision_report(reference, converted, x, targets, repeats=1, warmup=0, write_json=False)
    assert set(report.outputs) == {"forecast", "quantiles"}
    assert report.max_abs_diff == max(o["max_abs_diff"] for o in report.outputs.values()) > 0
    scored = report.outputs["quantiles"]
    quantiles = model.run({model.input_name: x})["quantiles"]  # (B, H, C, Q)
    want = weighted_quantile_loss(torch.from_numpy(quantiles).permute(3, 0, 1, 2), levels, torch.from_numpy(targets))
    assert scored["metric"] == "wql" and scored["reference_value"] == pytest.approx(want, rel=1e-9)
    assert scored["change"] == pytest.approx((scored["converted_value"] - want) / want)
    assert "quantiles wql" in report.summary()
    low, high = sorted([report.change, scored["change"]])
    where = "of output 'quantiles'" if scored["change"] > report.change else "mse change"
    with pytest.raises(PrecisionLossError, match=where):
        precision_report(reference, converted, x, targets, max_metric_change=(low + high) / 2, repeats=1, warmup=0)
