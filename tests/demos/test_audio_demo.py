"""The audio demo, smoke-run with a tiny SSAST on a few synthetic clips per class (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsdk.demos import DEMOS
from mmsdk.demos.audio import DemoConfig, render_summary, run_demo
from mmsdk.demos.audio_data import SOUNDS, make_clip

TINY = {
    "num_per_class": 4,  # 3 training + 1 test clip per class
    "labels_per_class": 2,
    "mel_bins": 32,
    "patch": 8,
    "dim": 16,
    "depth": 1,
    "pretrain_steps": 2,
    "finetune_steps": 2,
    "batch_size": 8,
    "finetune_batch_size": 8,
    "freq_mask": 4,
    "time_mask": 8,
    "progress_bar": False,
}


def test_the_demo_is_registered() -> None:
    module = DEMOS.get("audio")
    assert module.DemoConfig is DemoConfig and module.run_demo is run_demo


def test_clips_are_seeded_one_second_and_in_range() -> None:
    for label, name in enumerate(SOUNDS):
        clip = make_clip(name, np.random.default_rng([0, label, 0]))
        assert clip.shape == (16000,) and clip.dtype == np.float32
        assert np.isfinite(clip).all() and np.abs(clip).max() <= 1.0
        np.testing.assert_array_equal(clip, make_clip(name, np.random.default_rng([0, label, 0])))


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("soundfile")  # the clips are written and read back as FLAC
    summary = run_demo(DemoConfig.from_dict({**TINY, "output_dir": str(tmp_path)}))

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=float))
    assert written["split"] == {"train": 18, "labelled": 12, "labels_per_class": 2, "test": 6}
    assert len(list((tmp_path / "data").glob("*/*.flac"))) == 24
    assert written["classes"] == list(SOUNDS)
    assert set(written["test_accuracy"]) == {"pretrained", "scratch", "chance"}
    for init in ("pretrained", "scratch"):
        assert 0.0 <= written["test_accuracy"][init]["test_acc"] <= 1.0
    assert written["test_accuracy"]["chance"]["test_acc"] == pytest.approx(1 / 6)
    assert written["norm"]["std"] > 0
    assert set(written["pretrain_test_loss"]) == {"infonce", "mse"}

    onnx = written["onnx"]
    assert Path(onnx["path"]).is_file() and Path(onnx["path"]).suffix == ".onnx"
    assert onnx["labels"] == list(SOUNDS) and onnx["sample_rate"] == 16000
    assert max(onnx["verified_max_abs_error"].values()) < 1e-3
    assert len(onnx["verified_shapes"]) > len(onnx["verified_max_abs_error"])  # several clip lengths were checked
    assert set(onnx["demo_max_abs_error"]) == {"1s", "0.7s", "mixed_nan_padded"}
    assert onnx["demo_batch_max_abs_error"] < 1e-3
    assert onnx["argmax_agreement"] == 1.0
    assert set(onnx["latency_ms"]) == {"batch_1_1s", "batch_1_0.7s", "batch_6_1s"}
    assert all(stats["median_ms"] > 0 for stats in onnx["latency_ms"].values())

    assert [Path(p).name for p in written["plots"]] == ["reconstruction.png", "examples.png", "confusion.png"]
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


def test_a_patch_longer_than_the_short_clip_is_an_error() -> None:
    with pytest.raises(ValueError, match="patch"):
        DemoConfig(mel_bins=128, patch=80)
