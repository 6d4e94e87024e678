"""The multimodal demo, smoke-run with a tiny 4m model on a few scenes (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsdk.demos import DEMOS
from mmsdk.demos.multimodal import DIRECTIONS, DemoConfig, render_summary, run_demo

TINY = {
    "num_samples": 16,
    "test_samples": 8,
    "finetune_samples": 8,
    "dim": 16,
    "depth": 1,
    "decoder_depth": 1,
    "input_tokens": 24,
    "target_tokens": 24,
    "pretrain_steps": 2,
    "finetune_steps": 2,
    "batch_size": 8,
    "progress_bar": False,
}


def test_the_demo_is_registered() -> None:
    module = DEMOS.get("multimodal")
    assert module.DemoConfig is DemoConfig and module.run_demo is run_demo


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_demo(DemoConfig.from_dict({**TINY, "output_dir": str(tmp_path)}))
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=float))
    assert written["model"]["tokens"] == {"series": 16, "audio": 24, "video": 64}
    assert [row["direction"] for row in written["cross_modal"]] == list(DIRECTIONS)
    assert all(row["mse"] > 0 and row["mean_mse"] > 0 for row in written["cross_modal"])
    assert set(written["finetune"]) == {"pretrained", "scratch", "training mean"}
    assert all(run["test_mse"] >= 0 for run in written["finetune"].values())
    onnx = written["onnx"]
    assert onnx["inputs"] == ["frames"] and onnx["output"] == "series"
    assert onnx["demo_max_abs_error"] < 1e-4 and onnx["latency_ms_per_clip"] > 0
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in written["plots"]) and len(written["plots"]) == 3
    render_summary(summary)
    assert "video→series" in capsys.readouterr().out


def test_bad_budgets_name_the_field() -> None:
    with pytest.raises(ValueError, match="target_tokens"):
        DemoConfig(input_tokens=100, target_tokens=100)
