"""Converting models too large for one protobuf (2 GB): weights past `EXTERNAL_DATA_BYTES` go to `<name>.data`.

The threshold is lowered so a tiny model takes the large-model path: every conversion then writes its weights
beside the model, the result runs from any folder it is moved to with its data file, and matches the conversion of
the same model kept in one file. A source model stored with external data converts too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mmsdk.export import quantization
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import build_task_model

CONFIG = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 64, "num_channels": 2, "patch_len": 16, "stride": 16},
    "encoder": {"dim": 32, "depth": 1, "heads": 2},
}
SERIES = np.random.default_rng(0).standard_normal((4, 64, 2)).astype(np.float32)
CONVERSIONS: dict[str, Callable[[Path, Path], Path]] = {
    "dynamic": lambda src, dst: quantization.quantize(src, dst, "dynamic"),
    "static": lambda src, dst: quantization.quantize(src, dst, "static", SERIES),
    "fp16": quantization.to_fp16,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_task_model(CONFIG, {"task": "forecast", "num_outputs": 8})
    return to_onnx(model, tmp_path_factory.mktemp("external") / "model.onnx", verify_batch_sizes=(2,)).path


@pytest.mark.parametrize("conversion", sorted(CONVERSIONS))
def test_large_models_keep_their_weights_beside_the_file(
    conversion: str, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    convert = CONVERSIONS[conversion]
    small = convert(exported, tmp_path / "small" / "model.onnx")
    monkeypatch.setattr(quantization, "EXTERNAL_DATA_BYTES", 1024)
    large = convert(exported, tmp_path / "large" / "model.onnx")
    assert sorted(p.name for p in large.parent.iterdir()) == ["model.onnx", "model.onnx.data"]  # no temporaries left
    assert sorted(p.name for p in small.parent.iterdir()) == ["model.onnx"]
    data = large.with_name("model.onnx.data").stat().st_size
    assert data > 0 and large.stat().st_size < small.stat().st_size  # the large weights left the protobuf
    moved = tmp_path / "moved"
    shutil.copytree(large.parent, moved)
    np.testing.assert_allclose(OnnxModel(moved / "model.onnx")(SERIES), OnnxModel(small)(SERIES), atol=1e-6)


def test_a_source_with_external_data_converts(exported: Path, tmp_path: Path) -> None:
    source = tmp_path / "source" / "model.onnx"
    source.parent.mkdir()
    onnx.save(onnx.load(exported), source, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (source.parent / "weights.bin").is_file()
    converted = quantization.quantize(source, tmp_path / "int8.onnx", "dynamic")
    reference = quantization.quantize(exported, tmp_path / "int8_plain.onnx", "dynamic")
    np.testing.assert_allclose(OnnxModel(converted)(SERIES), OnnxModel(reference)(SERIES), atol=1e-6)
