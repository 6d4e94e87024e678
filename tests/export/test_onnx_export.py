"""ONNX export of mmsdk models: eager-vs-ONNX Runtime parity, graph signature, metadata and loud failures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from mmsdk.contracts.heads import HeadConfig
from mmsdk.export import ExportResult, ExportVerificationError, to_onnx, verify_onnx
from mmsdk.models import EmbeddingModel, TaskModel, build_task_model
from mmsdk.models.config import ModelConfig

CONFIG: dict[str, Any] = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 16, "stride": 8},
    "encoder": {"dim": 32, "depth": 2, "heads": 4},
    "objective": "bert",
}
FORECAST = {"task": "forecast", "num_outputs": 24}
BATCH_SIZES = (1, 2, 5)


def tiny_task_model(head: dict[str, Any] = FORECAST, **overrides: Any) -> TaskModel:
    torch.manual_seed(0)
    return build_task_model({**CONFIG, **overrides}, head)


def series(model: nn.Module, batch_size: int, seed: int = 123) -> Tensor:
    return model.backbone.adapter.example_input(batch_size, torch.Generator().manual_seed(seed))


def ort_run(path: Path, inputs: Tensor | np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    array = inputs.numpy() if isinstance(inputs, Tensor) else inputs
    return session.run(None, {session.get_inputs()[0].name: array})[0]


def eager(model: nn.Module, inputs: Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(inputs).numpy()


@pytest.fixture(scope="module")
def forecast(tmp_path_factory: pytest.TempPathFactory) -> tuple[TaskModel, ExportResult]:
    model = tiny_task_model().train()
    path = tmp_path_factory.mktemp("onnx") / "nested" / "dir" / "forecast.onnx"
    result = to_onnx(model, path, verify_batch_sizes=BATCH_SIZES, metadata={"run": "unit-test", "epoch": 3})
    return model, result


def test_forecast_export_matches_eager(forecast: tuple[TaskModel, ExportResult]) -> None:
    model, result = forecast
    assert result.path.is_file()  # missing parent directories were created
    assert sorted(result.max_abs_error) == list(BATCH_SIZES)
    assert max(result.max_abs_error.values()) <= 1e-4
    assert model.training, "export must restore the model's train mode"
    x = series(model, 4, seed=7)
    out = ort_run(result.path, x)
    assert out.shape == (4, 24, 3)
    np.testing.assert_allclose(out, eager(copy.deepcopy(model), x), atol=1e-4, rtol=0)


def test_graph_takes_raw_series(forecast: tuple[TaskModel, ExportResult]) -> None:
    """Instance normalization and patching live in the graph: badly scaled series with gaps go in as they are."""
    model, result = forecast
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["series"] and [o.name for o in graph.output] == ["outputs"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 96, 3]
    x = 1000.0 * series(model, 3) + 50.0
    x[0, 10:30, 1] = float("nan")
    out = ort_run(result.path, x)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, eager(copy.deepcopy(model), x), atol=1e-4 * 1000, rtol=1e-5)


def test_metadata_round_trips(forecast: tuple[TaskModel, ExportResult]) -> None:
    model, result = forecast
    stored = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert stored == result.metadata
    assert ModelConfig.from_dict(json.loads(stored["mmsdk.config"])) == model.config
    assert HeadConfig.from_dict(json.loads(stored["mmsdk.head"])) == model.head_config
    assert stored["mmsdk.kind"] == "task" and stored["mmsdk.adapter"] == "patchtst"
    assert stored["mmsdk.torch_version"] == torch.__version__
    assert stored["mmsdk.input_layout"] == "float32[batch, 96, 3]"
    assert float(stored["mmsdk.tolerance"]) == 1e-4
    assert stored["run"] == "unit-test" and json.loads(stored["epoch"]) == 3
    summary = result.summary()
    assert str(result.path) in summary and "batch 5" in summary
    assert result.nodes == len(onnx.load(str(result.path)).graph.node) > 0 and result.nodes_before_optimization is None
    assert f"{result.nodes} nodes" in summary and "before optimization" not in summary


def test_verification_fails_for_a_different_model(forecast: tuple[TaskModel, ExportResult]) -> None:
    model, result = forecast
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.head.linear.bias += 0.01
    with pytest.raises(ExportVerificationError, match=r"input shape \(2, 96, 3\).*> tolerance 1\.0e-04") as info:
        verify_onnx(perturbed, result.path, [series(model, 2)], tolerance=1e-4)
    assert isinstance(info.value, ValueError) and info.value.max_abs_error > 1e-3


def test_verification_fails_on_shape_mismatch(forecast: tuple[TaskModel, ExportResult]) -> None:
    model, result = forecast

    class Cropped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Tensor) -> Tensor:
            return self.inner(x)[:, :-1]

    with pytest.raises(ExportVerificationError, match=r"shape \(1, 24, 3\).*\(1, 23, 3\)"):
        verify_onnx(Cropped(copy.deepcopy(model)), result.path, [series(model, 1)], tolerance=1e-4)


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("embedding", lambda: EmbeddingModel(tiny_task_model().backbone)),
        ("task", lambda: tiny_task_model({"task": "classification", "num_outputs": 5})),
        ("task", lambda: tiny_task_model(FORECAST, objective="causal")),
    ],
    ids=["embedding", "classification", "causal"],
)
def test_other_models_export(kind: str, make: Any, tmp_path: Path) -> None:
    model = make()
    result = to_onnx(model, tmp_path / "model.onnx", verify_batch_sizes=BATCH_SIZES)
    assert sorted(result.max_abs_error) == list(BATCH_SIZES)
    assert max(result.max_abs_error.values()) <= 1e-4
    assert result.metadata["mmsdk.kind"] == kind
    x = series(model, 5)
    np.testing.assert_allclose(ort_run(result.path, x), eager(model, x), atol=1e-4, rtol=0)


def test_plain_module_needs_example_input_and_exports_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 2)).double()
    with pytest.raises(ValueError, match="example_input"):
        to_onnx(model, tmp_path / "plain.onnx")
    result = to_onnx(model, tmp_path / "plain.onnx", torch.randn(4, 8, dtype=torch.float64))
    assert model[0].weight.dtype == torch.float64, "the caller's model must not be converted in place"
    assert result.metadata["mmsdk.kind"] == "other" and json.loads(result.metadata["mmsdk.config"]) is None
    assert result.input_name == "inputs" and max(result.max_abs_error.values()) <= 1e-4
    assert ort_run(result.path, np.ones((7, 8), np.float32)).shape == (7, 2)


def test_non_tensor_output_is_named(tmp_path: Path) -> None:
    class TupleOut(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x * 2, x

    with pytest.raises(TypeError, match="returned tuple"):
        to_onnx(TupleOut(), tmp_path / "tuple.onnx", torch.randn(2, 3))
    assert not (tmp_path / "tuple.onnx").exists()


def test_a_dict_of_tensors_becomes_named_outputs_each_verified(tmp_path: Path) -> None:
    class DictOut(nn.Module):
        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"double": x * 2, "summed": x.sum(-1)}

    result = to_onnx(DictOut(), tmp_path / "dict.onnx", torch.randn(2, 3))
    assert result.output_names == ("double", "summed")
    assert json.loads(result.metadata["mmsdk.output_names"]) == ["double", "summed"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    double, summed = session.run(["double", "summed"], {result.input_name: x})
    np.testing.assert_allclose(double, 2 * x, atol=1e-6)
    np.testing.assert_allclose(summed, x.sum(-1), atol=1e-5)


def test_verification_checks_every_output(tmp_path: Path) -> None:
    class DictOut(nn.Module):
        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"double": x * 2, "summed": x.sum(-1)}

    model = DictOut()
    to_onnx(model, tmp_path / "dict.onnx", torch.randn(2, 3), verify=False)

    class SecondDiffers(nn.Module):
        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"double": x * 2, "summed": x.sum(-1) + 1}

    with pytest.raises(ExportVerificationError, match="differs from eager"):
        verify_onnx(SecondDiffers(), tmp_path / "dict.onnx", [torch.randn(2, 3)])


def test_reserved_metadata_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mmsdk\.kind"):
        to_onnx(nn.Linear(3, 2), tmp_path / "m.onnx", torch.randn(2, 3), metadata={"mmsdk.kind": "x"})


def test_an_axis_the_model_fixes_is_an_error_not_a_static_file(tmp_path: Path) -> None:
    class FixedBatch(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x + torch.zeros(2, 1)  # broadcasting ties the batch to 2

    with pytest.raises(ValueError, match=r"fixed axis 0 of input 'inputs' to 2.*dynamic_batch=False"):
        to_onnx(FixedBatch(), tmp_path / "fixed.onnx", torch.randn(2, 6))
    assert not (tmp_path / "fixed.onnx").exists()
    result = to_onnx(FixedBatch(), tmp_path / "fixed.onnx", torch.randn(2, 6), dynamic_batch=False)
    assert result.verified


def test_an_op_without_onnx_translation_is_named(tmp_path: Path) -> None:
    class Eigen(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.linalg.eigvals(x @ x.transpose(-1, -2)).real

    with pytest.raises(ValueError, match=r"cannot export Eigen to ONNX: aten\.linalg_eig has no ONNX translation"):
        to_onnx(Eigen(), tmp_path / "eig.onnx", torch.randn(2, 3, 3))
