"""A small 4m model pretrained on the bouncing scene predicts the ball's height and accelerometer trace from the
video clearly better than the training mean does, and draws the prediction next to the truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mmsdk
from mmsdk.adapters.multimodal import BouncingScene, cross_modal_errors, mean_tokens
from mmsdk.adapters.multimodal.plots import plot_cross_modal
from mmsdk.adapters.multimodal.recipe_data import SceneData

SCENE = {"frame_size": 16}  # 8 frames of 16 × 16: 2 × 8 × 8 tubes, 16 video tokens
VIEWS = ["series", "video"]
STEPS = 600
SERIES = {"context_length": 64, "num_channels": 2, "patch_len": 8, "revin": False, "positions": "sincos"}
VIDEO = {"channels": 1, "num_frames": 8, "frame_size": 16, "tubelet": 2, "patch": 8, "target_norm": "none"}
MODEL = {
    "modalities": {
        "series": {"adapter": "timerxl", "adapter_config": SERIES},
        "video": {"adapter": "videomae", "adapter_config": {**VIDEO, "mean": [0.2], "std": [0.3]}},
    },
    "encoder": {"dim": 48, "depth": 2, "heads": 4},
    "decoder": {"dim": 48, "depth": 1, "heads": 4, "cross_attention": True},
    "objective": "4m",
    "max_variates": 2,
    "shared_time": True,
    "objective_config": {"input_tokens": 12, "target_tokens": 12, "input_alpha": 0.0, "target_alpha": 0.5},
}


def _views(size: int, seed: int) -> SceneData:
    return SceneData(BouncingScene(size, SCENE, seed=seed, pairs=True), VIEWS)


def _batch(data: SceneData) -> dict[str, torch.Tensor]:
    return {name: torch.stack([data[i][name] for i in range(len(data))]) for name in VIEWS}


@pytest.mark.slow
def test_video_predicts_the_series_better_than_the_training_mean(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = {"max_steps": STEPS, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    optim = {"lr": 3e-3, "warmup_ratio": 0.05}
    model = mmsdk.pretrain(MODEL, _views(2000, 0), optim=optim, trainer=trainer, batch_size=32).model.eval()
    # the ball's height, which every frame shows: per time step, against the training mean height
    train, test = _batch(_views(256, 0)), _batch(_views(128, 9))
    height = model.predict({"video": test["video"]}, ["series"])["series"][..., 0]  # (B, L)
    truth, mean = test["series"][..., 0], train["series"][..., 0].mean(dim=0)
    ratio = float(((height - truth) ** 2).mean() / ((mean - truth) ** 2).mean())
    assert ratio < 0.6, ratio  # measured 0.42
    # every series token (height and the accelerometer's impact spikes) in the model's own target units
    means = {name: mean_tokens(model, _views(256, 0), name) for name in VIEWS}
    (error,) = cross_modal_errors(model, _views(128, 9), ["video→series"], means)
    assert error.ratio < 0.95, error
    png = plot_cross_modal(model, test, ["video"], "series", tmp_path / "video_to_series.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
