"""The point-cloud demo, smoke-run with a tiny Point-MAE on a few bundled shapes (a few seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsdk.demos import DEMOS
from mmsdk.demos.pointcloud import DemoConfig, render_summary, run_demo

TINY = {
    "num_per_class": 4,  # 3 training + 1 test cloud per class
    "labels_per_class": 2,
    "num_points": 64,
    "num_groups": 8,
    "group_size": 8,
    "dim": 16,
    "depth": 1,
    "pretrain_steps": 2,
    "finetune_steps": 2,
    "batch_size": 8,
    "finetune_batch_size": 8,
    "votes": 2,
    "progress_bar": False,
}


def test_the_demo_is_registered() -> None:
    module = DEMOS.get("pointcloud")
    assert module.DemoConfig is DemoConfig and module.run_demo is run_demo


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("open3d")  # the bundled shapes are made with open3d
    summary = run_demo(DemoConfig.from_dict({**TINY, "output_dir": str(tmp_path)}))

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=float))
    assert written["split"] == {"train": 30, "labelled": 20, "labels_per_class": 2, "test": 10}
    assert set(written["test_accuracy"]) == {"pretrained", "scratch", "chance"}
    for init in ("pretrained", "scratch"):
        assert set(written["test_accuracy"][init]) == {"test_acc", "test_acc_vote"}
        assert all(0.0 <= acc <= 1.0 for acc in written["test_accuracy"][init].values())
    assert written["test_accuracy"]["chance"]["test_acc"] == pytest.approx(0.1)
    assert written["pretrain_test_chamfer"] >= 0.0
    onnx = written["onnx"]
    assert Path(onnx["path"]).is_file() and Path(onnx["path"]).suffix == ".onnx"
    assert onnx["demo_batch_max_abs_error"] < 1e-4
    assert max(onnx["verified_max_abs_error"].values()) < 1e-4
    assert set(onnx["latency_ms"]) == {"batch_1", "batch_10"}
    assert all(stats["median_ms"] > 0 for stats in onnx["latency_ms"].values())
    assert [Path(p).name for p in written["plots"]] == ["reconstruction.png", "confusion.png"]
    for png in written["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "pretrained" / "model.safetensors").is_file()
    assert {"data_s", "pretrain_s", "finetune_pretrained_s", "finetune_scratch_s", "export_s", "total_s"} <= set(
        written["timings_s"]
    )

    render_summary(summary)
    printed = capsys.readouterr().out
    assert "Test accuracy" in printed and "ONNX Runtime" in printed


def test_too_many_labels_per_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="labels_per_class"):
        DemoConfig(num_per_class=4, labels_per_class=4)
