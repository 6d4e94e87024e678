"""The video recipes from the command line: VideoMAE pretraining on a folder of real video files with pictures, a
linear probe and LP-FT on the synthetic moving shapes at another clip size than pretraining, and export to one ONNX
graph from raw frames with labels and the clip geometry inside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.cli import main
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained

pytest.importorskip("av")

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "video"
VIDEO_TINY = [  # a tiny model on 8-frame 32×32 clips of 2×8×8 tubes
    "--model.adapter_config.num_frames=8",
    "--model.adapter_config.frame_size=[32, 32]",
    "--model.adapter_config.patch=8",
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--data.batch_size=8",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]
DECODER_TINY = ["--model.decoder.dim=16", "--model.decoder.depth=1", "--model.decoder.heads=2"]
SHAPES = [
    "--data.synthetic={num_samples: 48, shapes: [square, disc], motions: [right, rotate]}",
    "--head.num_outputs=4",
]


def _videos(root: Path, count: int = 4) -> Path:
    """A folder of short mp4 files (moving gradients) written with PyAV."""
    from mmsdk.adapters.video.videomae import example_clips
    from mmsdk.adapters.video.writer import write_video

    root.mkdir(parents=True)
    clips = example_clips(count, 20, 3, (40, 48), torch.Generator().manual_seed(0))
    for i, clip in enumerate(clips):
        write_video(root / f"clip{i}.mp4", clip, fps=10)
    return root


def test_videomae_recipes_pretrain_probe_finetune_export(tmp_path: Path) -> None:
    videos, pre, probe, ft = _videos(tmp_path / "videos"), tmp_path / "pre", tmp_path / "probe", tmp_path / "ft"
    main(["pretrain", "--config", str(RECIPES / "videomae_pretrain.yaml"), *VIDEO_TINY, *DECODER_TINY,
          f"--data.folder={videos}", "--data.stride=2", "--plot_every_n_steps=2", f"--output_dir={pre}",
          f"--trainer.default_root_dir={pre}"])  # fmt: skip
    assert (pre / "plots" / "reconstruction_step000002.png").read_bytes()[:4] == b"\x89PNG"
    other_clips = ["--data.num_frames=6", "--data.frame_size=[24, 40]"]  # not the pretraining clip size
    main(["finetune", "--config", str(RECIPES / "videomae_linear_probe.yaml"), *VIDEO_TINY, *SHAPES, *other_clips,
          f"--pretrained={pre / 'model'}", f"--output_dir={probe}", f"--trainer.default_root_dir={probe}"])  # fmt: skip
    main(["finetune", "--config", str(RECIPES / "videomae_finetune.yaml"), *VIDEO_TINY, *SHAPES, *other_clips,
          f"--pretrained={probe / 'model'}", f"--output_dir={ft}", f"--trainer.default_root_dir={ft}"])  # fmt: skip
    metrics = json.loads((ft / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and np.isfinite(metrics["test/loss"])

    onnx_path = tmp_path / "video.onnx"
    main(["export", f"--model_dir={ft / 'model'}", f"--output={onnx_path}"])
    runtime = OnnxModel(onnx_path)
    assert runtime.labels == ["square/right", "square/rotate", "disc/right", "disc/rotate"]
    assert runtime.input_name == "frames" and runtime.input_shape == ["batch", "frames", 3, "height", "width"]
    assert runtime.metadata["mmsdk.num_frames"] == "8" and runtime.metadata["mmsdk.frame_size"] == "32x32"
    model = from_pretrained(ft / "model")
    for frames, size in ((6, (24, 40)), (9, (35, 21))):  # any clip size, tube padding inside the graph
        clips = np.random.default_rng(frames).uniform(0, 1, (2, frames, 3, *size)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(clips)).numpy()
        np.testing.assert_allclose(runtime(clips), expected, atol=1e-4)


def test_the_finetune_recipe_adds_a_class_token_head_to_a_pretrained_backbone(tmp_path: Path) -> None:
    videos, pre, ft = _videos(tmp_path / "videos", 2), tmp_path / "pre", tmp_path / "ft"
    main(["pretrain", "--config", str(RECIPES / "videomae_pretrain.yaml"), *VIDEO_TINY, *DECODER_TINY,
          f"--data.folder={videos}", f"--output_dir={pre}", f"--trainer.default_root_dir={pre}"])  # fmt: skip
    main(["finetune", "--config", str(RECIPES / "videomae_finetune.yaml"), *VIDEO_TINY, *SHAPES,
          "--model.class_tokens=1", "--head.pooling=first", f"--pretrained={pre / 'model'}",
          f"--output_dir={ft}", f"--trainer.default_root_dir={ft}"])  # fmt: skip
    pretrained, model = from_pretrained(pre / "model"), from_pretrained(ft / "model")
    assert model.backbone.cls_token.shape == (1, 1, 16) and pretrained.backbone.cls_token is None
    assert model.head.pooling == "first"
    clips = torch.rand(2, 8, 3, 32, 32)
    with torch.no_grad():  # the head reads the class token: changing it changes the logits
        before = model(clips)
        model.backbone.cls_token.add_(torch.randn_like(model.backbone.cls_token))
        assert not torch.allclose(model(clips), before)


def test_a_video_model_refuses_a_synthetic_set_of_other_channels(tmp_path: Path) -> None:
    with pytest.raises((SystemExit, ValueError)):
        main(["finetune", "--config", str(RECIPES / "videomae_finetune.yaml"), *VIDEO_TINY,
              "--model.adapter_config.channels=2", "--data.synthetic={channels: [rgb, depth]}",
              "--pretrained=null", f"--output_dir={tmp_path}"])  # fmt: skip
