"""Export verification refuses non-finite models and outputs: NaN agreeing with NaN is no verification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import mmsdk.export.onnx as onnx_module
import mmsdk.export.verify as verify_module
from mmsdk.export import ExportVerificationError, to_onnx, verify_onnx
from mmsdk.models import build_task_model

SERIES = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "bert",
}


class Sqrt(nn.Module):
    """Finite weights, NaN outputs for inputs below 10: eager and ONNX Runtime agree on every NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sqrt(self.linear(x) - 10.0)


def test_verification_names_are_importable_from_both_modules() -> None:
    for name in ("verify_onnx", "ExportVerificationError", "check_finite_state", "DEFAULT_TOLERANCE"):
        assert getattr(onnx_module, name) is getattr(verify_module, name), name
    assert verify_onnx is verify_module.verify_onnx and ExportVerificationError is verify_module.ExportVerificationError


@pytest.mark.parametrize("where", ["parameter", "buffer"])
def test_a_model_with_non_finite_state_is_refused_naming_the_tensor(where: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    with torch.no_grad():
        if where == "parameter":
            model[2].weight[1, 3] = float("nan")
        else:
            model[1].running_var[5] = float("inf")
    name = r"parameter '2\.weight' of shape \(2, 8\).*1 NaN.*\(1, 3\)"
    if where == "buffer":
        name = r"buffer '1\.running_var'.*0 NaN, 1 Inf"
    with pytest.raises(ValueError, match=f"cannot export Sequential: {name}"):
        to_onnx(model, tmp_path / "nan.onnx", torch.randn(3, 4))
    assert not (tmp_path / "nan.onnx").exists()


def test_a_task_model_with_nan_weights_is_refused(tmp_path: Path) -> None:
    model = build_task_model(SERIES, {"task": "forecast", "num_outputs": 4})
    with torch.no_grad():
        model.head.linear.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"parameter 'head\.linear\.weight'"):
        to_onnx(model, tmp_path / "task.onnx")


def test_finite_inputs_giving_nan_fail_verification(tmp_path: Path) -> None:
    torch.manual_seed(0)
    message = r"for finite input of shape \(\d, 4\), eager PyTorch gives"
    with pytest.raises(ExportVerificationError, match=message) as info:
        to_onnx(Sqrt(), tmp_path / "sqrt.onnx", torch.randn(2, 4))
    assert info.value.max_abs_error == float("inf")


def test_verify_onnx_fails_when_both_sides_give_nan(tmp_path: Path) -> None:
    model = Sqrt()
    result = to_onnx(model, tmp_path / "sqrt.onnx", torch.randn(2, 4), verify=False)
    with pytest.raises(ExportVerificationError, match=r"eager PyTorch gives \d+ non-finite output value\(s\)"):
        verify_onnx(model, result.path, [torch.randn(5, 4)])
    ok = torch.full((2, 4), 1e3)  # finite outputs: verifies
    with torch.no_grad():
        model.linear.weight.abs_()
        model.linear.bias.abs_()
    result = to_onnx(model, tmp_path / "ok.onnx", ok, verify=False)
    assert verify_onnx(model, result.path, [ok])[(2, 4)] <= 1e-3


def test_the_metadata_records_each_inputs_values(tmp_path: Path) -> None:
    model = build_task_model(SERIES, {"task": "forecast", "num_outputs": 4})
    result = to_onnx(model, tmp_path / "series.onnx", verify=False)
    assert json.loads(result.metadata["mmsdk.nonfinite"]) == {"series": "nan_as_missing"}
    assert json.loads(result.metadata["mmsdk.max_abs"]) == {"series": 1e15}
    assert "mmsdk.min_sizes" not in result.metadata  # fixed shape: nothing to add
    plain = to_onnx(nn.Linear(3, 2), tmp_path / "plain.onnx", torch.randn(2, 3))
    assert "mmsdk.nonfinite" not in plain.metadata  # no adapter: nothing is declared
    assert np.isfinite(list(plain.max_abs_error.values())).all()
