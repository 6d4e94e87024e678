"""Calibration batches and held-out arrays drawn from mmsdk datasets: a time-series and a point-cloud dataset
calibrate static int8 and feed the precision report; dict inputs, collate lookup and the errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch.utils.data import Dataset, Subset

from mmsdk.adapters.timeseries.data import WindowDataset
from mmsdk.contracts.data import InputsOnly, build_data
from mmsdk.export.calibration import calibration_batches, find_collate, heldout_arrays
from mmsdk.export.onnx import to_onnx
from mmsdk.export.quantization import precision_report, quantize
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import build_task_model
from mmsdk.models.config import ModelConfig

SERIES: dict[str, Any] = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 16, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "bert",
}
POINTS: dict[str, Any] = {
    "adapter": "pointmae",
    "adapter_config": {
        "num_points": 128,
        "num_groups": 16,
        "group_size": 8,
        "embed_hidden": 16,
        "embed_local": 16,
        "embed_global": 32,
        "cls_hidden": 16,
    },
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "decoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}


def _export(path: Path, config: dict[str, Any], head: dict[str, Any]) -> Path:
    torch.manual_seed(0)
    return to_onnx(build_task_model(config, head), path, verify_batch_sizes=(1, 2)).path


def _precision(path: Path) -> str:
    return {p.key: p.value for p in onnx.load(path).metadata_props}["mmsdk.precision"]


def test_window_dataset_calibrates_static_int8_and_scores_the_report(tmp_path: Path) -> None:
    reference = _export(tmp_path / "forecast.onnx", SERIES, {"task": "forecast", "num_outputs": 24})
    values = np.random.default_rng(0).standard_normal((600, 3)).astype(np.float32)
    windows = WindowDataset(values, context_length=96, horizon=24, stride=8)  # items (x (96, 3), y (24, 3))
    batches = calibration_batches(windows, num_batches=3, batch_size=4)
    assert [b.shape for b in batches] == [(4, 96, 3)] * 3 and all(b.dtype == np.float32 for b in batches)
    named = calibration_batches(windows, num_batches=2, batch_size=4, input_names=["series"])
    assert [sorted(b) for b in named] == [["series"], ["series"]]
    np.testing.assert_array_equal(calibration_batches(windows, 1, 4)[0][0], windows[0][0].numpy())  # first item
    assert len(calibration_batches(windows, num_batches=100, batch_size=20)) == -(-len(windows) // 20)
    path = quantize(reference, tmp_path / "forecast.int8.onnx", mode="static", calibration=named)
    assert _precision(path) == "int8-static"
    inputs, targets = heldout_arrays(windows, max_items=16, input_names=["series"])
    assert inputs["series"].shape == (16, 96, 3) and targets is not None and targets.shape == (16, 24, 3)
    report = precision_report(reference, path, inputs, targets, repeats=1, warmup=0, write_json=False)
    assert report.metric == "mse" and report.samples == 16 and np.isfinite(report.change)
    pretraining, none = heldout_arrays(WindowDataset(values, 96), max_items=5)
    assert isinstance(pretraining, np.ndarray) and pretraining.shape == (5, 96, 3) and none is None


def test_point_cloud_recipe_data_calibrates_static_int8(tmp_path: Path) -> None:
    reference = _export(tmp_path / "shapes.onnx", POINTS, {"task": "classification", "num_outputs": 10})
    splits = build_data({"num_per_class": 2, "batch_size": 4}, ModelConfig.from_dict(POINTS), "finetune")
    names = OnnxModel(reference).input_names
    batches = calibration_batches(splits.train, num_batches=2, batch_size=splits.batch_size, input_names=names)
    assert [b["points"].shape for b in batches] == [(4, 128, 3)] * 2
    path = quantize(reference, tmp_path / "shapes.int8.onnx", mode="static", calibration=batches)
    inputs, labels = heldout_arrays(splits.test, max_items=8, input_names=names)
    assert labels is not None and labels.dtype.kind == "i" and labels.shape == (len(inputs["points"]),)
    assert OnnxModel(path)(inputs["points"]).shape == (len(labels), 10) and _precision(path) == "int8-static"
    report = precision_report(reference, path, inputs, labels, repeats=1, warmup=0, write_json=False)
    assert report.metric == "accuracy"
    inputs_only = calibration_batches(InputsOnly(splits.train), num_batches=1, batch_size=3)
    assert inputs_only[0].shape == (3, 128, 3)


class _Scenes(Dataset):
    """Multimodal items as the scene builder yields them: modality → tensor plus a `present` map, and a target."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.collated: list[int] = []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        views = {"series": torch.full((8, 2), float(index)), "frames": torch.zeros(2, 1, 4, 4, dtype=torch.float64)}
        return {**views, "present": {"series": torch.tensor(True)}}, torch.tensor(index)

    def collate_fn(self, items: list[Any]) -> Any:
        self.collated.append(len(items))
        return torch.utils.data.default_collate(items)


def test_dict_inputs_are_named_by_modality_and_the_dataset_collate_is_used() -> None:
    scenes = _Scenes(10)
    wrapped = Subset(scenes, list(range(6)))
    assert find_collate(wrapped) == scenes.collate_fn and find_collate([1, 2]) is torch.utils.data.default_collate
    batches = calibration_batches(wrapped, num_batches=2, batch_size=3)
    assert scenes.collated == [3, 3]
    assert [sorted(b) for b in batches] == [["frames", "series"]] * 2  # `present` is not an input
    assert batches[0]["frames"].dtype == np.float32 and batches[0]["series"].shape == (3, 8, 2)
    assert sorted(batches[1]["series"][:, 0, 0]) == [3.0, 4.0, 5.0]
    only = calibration_batches(scenes, num_batches=1, batch_size=4, input_names=["series"])
    assert list(only[0]) == ["series"]
    inputs, targets = heldout_arrays(scenes, max_items=4, input_names=["frames", "series"], batch_size=3)
    assert inputs["series"][:, 0, 0].tolist() == [0.0, 3.0, 6.0, 9.0] and targets.tolist() == [0, 3, 6, 9]
    with pytest.raises(ValueError, match=r"lack the model's inputs \['audio'\]"):
        calibration_batches(scenes, input_names=["series", "audio"])


class _Packed:
    """A packed batch (what variable-length series collate to): not a raw array."""


def test_calibration_errors_are_clear() -> None:
    windows = WindowDataset(np.ones((120, 1), dtype=np.float32), context_length=96)
    with pytest.raises(ValueError, match="num_batches must be >= 1, got 0"):
        calibration_batches(windows, num_batches=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        calibration_batches(windows, batch_size=0)
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        heldout_arrays(windows, max_items=0)
    with pytest.raises(ValueError, match=r"calibration dataset \(list\) is empty"):
        calibration_batches([])
    with pytest.raises(ValueError, match="is empty"):
        heldout_arrays(iter([]))
    with pytest.raises(ValueError, match="batches of _Packed cannot calibrate"):
        calibration_batches(windows, collate=lambda items: _Packed())
    with pytest.raises(ValueError, match=r"takes inputs \['a', 'b'\] but the dataset yields one array"):
        calibration_batches(windows, input_names=["a", "b"])
