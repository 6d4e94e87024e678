"""The video demo, smoke-run with a tiny VideoMAE on a few synthetic clips per class (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsdk.demos import DEMOS
from mmsdk.demos.video import DemoConfig, render_summary, run_demo

TINY = {
    "num_per_class": 4,  # 3 training + 1 test clip per class
    "labels_per_class": 2,
    "num_frames": 4,
    "frame_size": 16,
    "tubelet": 2,
    "patch": 8,
    "dim": 16,
    "depth": 1,
    "decoder_dim": 16,
    "decoder_depth": 1,
    "pretrain_steps": 2,
    "finetune_steps": 2,
    "batch_size": 8,
    "finetune_batch_size": 8,
    "progress_bar": False,
}
CLASSES = [f"{shape}/{motion}" for shape in ("square", "disc", "triangle") for motion in ("right", "left", "rotate")]


def test_the_demo_is_registered() -> None:
    module = DEMOS.get("video")
    assert module.DemoConfig is DemoConfig and module.run_demo is run_demo


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("av")  # a few clips are written as mp4 and one is read back
    summary = run_demo(DemoConfig.from_dict({**TINY, "output_dir": str(tmp_path)}))

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=float))
    assert written["split"] == {"train": 27, "labelled": 18, "labels_per_class": 2, "test": 9}
    assert written["classes"] == CLASSES
    assert written["model"]["tokens_per_clip"] == 2 * 2 * 2  # 4 frames of 16 × 16 in 2 × 8 × 8 tubes
    assert written["model"]["encoder_parameters"] > 0
    assert set(written["test_accuracy"]) == {"pretrained", "scratch", "chance"}
    for init in ("pretrained", "scratch"):
        assert 0.0 <= written["test_accuracy"][init]["test_acc"] <= 1.0
    assert written["test_accuracy"]["chance"]["test_acc"] == pytest.approx(1 / 9)
    assert set(written["pretrain_test_loss"]) == {"mse", "mse_zero_baseline"}

    files = written["video_files"]
    assert len(files["written"]) == 3 and all(Path(p).suffix == ".mp4" for p in files["written"])
    assert all(Path(p).stat().st_size > 0 for p in files["written"])
    assert files["read_back_shape"] == [4, 3, 16, 16]
    assert 0.0 <= files["read_back_mean_abs_error"] < 0.1  # H.264 is lossy, but close

    onnx = written["onnx"]
    assert Path(onnx["path"]).is_file() and Path(onnx["path"]).suffix == ".onnx"
    assert onnx["labels"] == CLASSES
    assert onnx["metadata"]["channels"] == "4" and onnx["metadata"]["frame_size"] == "16x16"
    assert onnx["metadata"]["tube"] == "2x8x8" and len(onnx["metadata"]["mean"].split(",")) == 4
    assert max(onnx["verified_max_abs_error"].values()) < 1e-3
    assert set(onnx["demo_max_abs_error"]) == {"4x16x16", "2x16x16", "1x11x13", "mixed_nan_padded"}
    assert onnx["demo_batch_max_abs_error"] < 1e-3
    assert all(0.0 <= acc <= 1.0 for acc in onnx["onnx_test_acc_subset"].values())
    assert onnx["decoded_mp4_prediction"]["predicted"] in CLASSES
    assert set(onnx["latency_ms"]) == {"batch_1_4x16x16", "batch_1_2x16x16", "batch_9_4x16x16"}
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
    assert "Test accuracy" in printed and "ONNX Runtime" in printed and "mp4 files" in printed


def test_too_many_labels_per_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="labels_per_class"):
        DemoConfig(num_per_class=4, labels_per_class=4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("frame_size", 8), ("num_frames", 2), ("mask_ratio", 1.0), ("patch", 64), ("decoder_depth", 0)],
)
def test_invalid_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DemoConfig.from_dict({field: value})
