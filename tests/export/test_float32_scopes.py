"""Adapters' `float32_modules` survive precision conversion: the audio front end (its DFT and mel matmuls, whose power
spectrum spans orders of magnitude) stays float32 in int8 and float16 copies, while the encoder is converted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import support
import torch

from mmsdk.export.onnx import to_onnx
from mmsdk.export.quantization import quantize, to_fp16
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import build_task_model

CONTRACT = support.contract_suite()
WAVES = (np.random.default_rng(0).standard_normal((4, 4000)) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_task_model(CONTRACT._config("ssast"), {"task": "classification", "num_outputs": 3})
    return to_onnx(model, tmp_path_factory.mktemp("scopes") / "audio.onnx", verify_batch_sizes=(2,)).path


def _front_end_consumers(path: Path) -> dict[str, str]:
    """Front-end weight → the op type reading it."""
    model = onnx.load(str(path))
    return {i: n.op_type for n in model.graph.node for i in n.input if ".fbank." in i}


def test_the_export_names_the_front_end_scope(exported: Path) -> None:
    metadata = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(metadata["mmsdk.float32_scopes"]) == ["backbone.adapters.ssast.fbank"]
    consumers = _front_end_consumers(exported)
    assert {name.rsplit(".", 1)[-1] for name, op in consumers.items() if op == "MatMul"} == {"dft_basis", "mel_matrix"}


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_keeps_the_front_end_in_float32(exported: Path, tmp_path: Path, mode: str) -> None:
    converted = quantize(exported, tmp_path / "int8.onnx", mode, WAVES if mode == "static" else None)
    model = onnx.load(str(converted))
    ops = {n.op_type for n in model.graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "QLinearMatMul", "DequantizeLinear"}  # encoder is int8
    assert set(_front_end_consumers(converted).values()) == {"MatMul"}  # the front end is not
    float_weights = {t.name: t.data_type for t in model.graph.initializer if ".fbank." in t.name}
    assert set(float_weights.values()) == {onnx.TensorProto.FLOAT}
    reference, got = OnnxModel(exported)(WAVES), OnnxModel(converted)(WAVES)
    assert np.abs(got - reference).max() < 0.1 * np.abs(reference).max()


def test_fp16_keeps_the_front_end_in_float32(exported: Path, tmp_path: Path) -> None:
    converted = to_fp16(exported, tmp_path / "fp16.onnx")
    model = onnx.load(str(converted))
    front = [n for n in model.graph.node if any(".fbank." in i for i in n.input) and n.op_type == "MatMul"]
    assert len(front) == 2
    np.testing.assert_allclose(OnnxModel(converted)(WAVES), OnnxModel(exported)(WAVES), atol=5e-3)


def test_a_float32_module_that_is_not_a_submodule_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_task_model(CONTRACT._config("ssast"), {"task": "classification", "num_outputs": 3})
    adapter = model.backbone.adapters["ssast"]
    monkeypatch.setattr(type(adapter), "float32_modules", ("frontend",))
    with pytest.raises(ValueError, match=r"float32_modules names 'frontend', which is not a submodule"):
        to_onnx(model, tmp_path / "audio.onnx", verify=False)
