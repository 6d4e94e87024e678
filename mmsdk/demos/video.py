"""`mmsdk demo --modality video`: the whole product on synthetic moving shapes in a few CPU minutes.

Seeded moving-shape clips (9 classes = 3 shapes × 3 motions, RGB + depth: 4 channels; a few written as mp4 and one
read back) → VideoMAE masked pretraining (MAE objective, 90 % of the tubes hidden as tubes, labels unused) →
few-label fine-tuning of a clip classifier from the pretrained backbone and, with the same budget, from scratch →
test accuracy against chance → ONNX export from the raw frames (with the class names and the channel layout) →
the ONNX model run with onnxruntime on clips of the training size, fewer frames and a size the tubes do not divide
(parity and latency) → pictures of a masked-tube reconstruction and of the fine-tuned classifier's confusion matrix.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmsdk.config import Config, require

if TYPE_CHECKING:
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.training.api import PretrainResult

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.25
"""Share of each class held out for test."""
MOTIONS = ("right", "left", "rotate")
"""Motions of the moving shapes; the classes are the 3 shapes × these (e.g. "square/right", "disc/rotate")."""
CHANNELS = ("rgb", "depth")
"""Channel kinds of the clips: RGB and a depth map, 4 channels in all (the model takes any channel count)."""
VIDEO_FILES = 3
"""Test clips written as mp4 (their RGB channels); the first is read back."""
PRETRAIN_LR = 1.5e-3
"""Peak learning rate of the masked pretraining (VideoMAE: 1.5e-4 per 256 clips, higher for this small model)."""
FINETUNE_LR = 3e-4
"""Peak learning rate of both fine-tuning runs (low, so that the few labels do not wash the pretrained features
out; from scratch the model stays near chance on 5 labels per class at 1e-3 as well)."""

Norm = tuple[list[float], list[float]]
"""Per-channel mean and standard deviation of the clips."""


@dataclass
class DemoConfig(Config):
    """What the demo runs; the defaults finish in under 5 minutes on 2 CPU cores (4 min 45 s on one thread)."""

    output_dir: str = "outputs/demo_video"
    """Where the mp4 files, plots, the checkpoint, the ONNX model and summary.json go."""
    num_per_class: int = 40
    """Clips per class; a quarter of each class is held out for test (270 training / 90 test clips)."""
    labels_per_class: int = 5
    """Labelled training clips per class for fine-tuning (pretraining uses every training clip, unlabelled)."""
    num_frames: int = 16
    """Frames per clip."""
    frame_size: int = 32
    """Frame height and width in pixels."""
    tubelet: int = 4
    """Frames per tube."""
    patch: int = 4
    """Pixels per tube side (4 × 4 × 4 tubes: 4 × 8 × 8 = 256 per 16-frame 32 × 32 clip, so that 90 % tube masking
    leaves 6 of the 64 places visible; a coarser grid of 16 places leaves 2, too few to learn from)."""
    dim: int = 96
    """Encoder width."""
    depth: int = 3
    """Encoder blocks."""
    decoder_dim: int = 64
    """MAE decoder width."""
    decoder_depth: int = 1
    """MAE decoder blocks."""
    mask_ratio: float = 0.9
    """Share of the tubes hidden during pretraining, the same places in every frame (the `tube` strategy)."""
    pretrain_steps: int = 800
    """Masked-pretraining optimizer steps."""
    finetune_steps: int = 150
    """Classifier fine-tuning optimizer steps (for each of the pretrained and the scratch run)."""
    batch_size: int = 32
    """Clips per pretraining batch."""
    finetune_batch_size: int = 16
    """Clips per fine-tuning batch (at most the number of labelled clips)."""
    seed: int = 0
    """Seeds the clips, the split, the labelled subset, the initialisations and the masks."""
    progress_bar: bool = True
    """Show Lightning's rich progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = ("pretrain_steps", "finetune_steps", "batch_size", "finetune_batch_size", "dim", "depth")
        for name in (*names, "decoder_dim", "decoder_depth", "labels_per_class", "tubelet", "patch"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")
        require(0 < self.mask_ratio < 1, self, "mask_ratio", f"must be in (0, 1), got {self.mask_ratio}")
        require(self.num_per_class >= 2, self, "num_per_class", f"must be >= 2, got {self.num_per_class}")
        require(self.num_frames >= 4, self, "num_frames", f"must be >= 4, got {self.num_frames}")
        require(self.frame_size >= 16, self, "frame_size", f"must be >= 16, got {self.frame_size}")
        require(self.tubelet <= self.num_frames, self, "tubelet", f"must be <= num_frames={self.num_frames}")
        require(self.patch <= self.frame_size, self, "patch", f"must be <= frame_size={self.frame_size}")
        test = max(1, round(TEST_FRACTION * self.num_per_class))  # as _load_clips splits
        require(
            self.num_per_class - test >= self.labels_per_class,
            self,
            "labels_per_class",
            f"must be <= the {self.num_per_class - test} training clips per class, got {self.labels_per_class}",
        )

    def other_sizes(self) -> dict[str, tuple[int, int, int]]:
        """(frames, height, width) the ONNX model is also run at: half the frames, and a size the tubes do not
        divide (cut from the test clips), keyed like "8x32x32"."""
        s = self.frame_size
        sizes = [(self.num_frames // 2, s, s), (self.num_frames - 3, s - 5, s - 3)]
        return {"x".join(map(str, size)): size for size in sizes}


def _model_config(cfg: DemoConfig, norm: Norm) -> dict[str, Any]:
    """The VideoMAE model on 4-channel clips, normalized with the training clips' per-channel statistics."""
    adapter = {
        "channels": 4,
        "num_frames": cfg.num_frames,
        "frame_size": [cfg.frame_size, cfg.frame_size],
        "tubelet": cfg.tubelet,
        "patch": cfg.patch,
        "positions": "sincos",
        "mean": norm[0],
        "std": norm[1],
        "target_norm": "tube",
    }
    encoder = {"dim": cfg.dim, "depth": cfg.depth, "heads": max(1, cfg.dim // 32), "drop_path": 0.1}
    decoder = {"dim": cfg.decoder_dim, "depth": cfg.decoder_depth, "heads": max(1, cfg.decoder_dim // 32)}
    model = {"adapter": "videomae", "adapter_config": adapter, "encoder": encoder, "decoder": decoder}
    return {**model, "objective": "mae"}  # the encoder sees the visible tubes only, the decoder predicts the rest


def _load_clips(cfg: DemoConfig) -> dict[str, Any]:
    """Renders the seeded clips and splits them per class (train, test, and a few labels per training class)."""
    from mmsdk.adapters.video.synthetic import MovingShapes
    from mmsdk.contracts.data import per_class_split

    shapes = MovingShapes(
        num_samples=cfg.num_per_class * 9,  # 3 shapes × 3 motions
        num_frames=cfg.num_frames,
        size=cfg.frame_size,
        motions=MOTIONS,
        channels=CHANNELS,
        seed=cfg.seed,
    )
    clips, labels = shapes.tensors()  # (M, T, 4, H, W) in [0, 1], (M,)
    test, train = per_class_split(labels.tolist(), cfg.seed, lambda n: max(1, round(TEST_FRACTION * n)))
    train_labels = labels[train]
    few, _ = per_class_split(train_labels.tolist(), cfg.seed, lambda n: cfg.labels_per_class, stream=1)
    labelled = torch.tensor(train)[few]
    return {
        "class_names": shapes.class_names,
        "train_clips": clips[train],  # (M_train, T, C, H, W)
        "train_labels": train_labels,
        "labelled_clips": clips[labelled],  # (K·classes, T, C, H, W)
        "labelled_labels": labels[labelled],
        "test_clips": clips[test],  # (M_test, T, C, H, W)
        "test_labels": labels[test],
    }


def _channel_statistics(clips: torch.Tensor) -> Norm:
    """Per-channel mean and standard deviation of (M, T, C, H, W) clips."""
    per_channel = clips.transpose(0, 2).flatten(1)  # (C, ·)
    return per_channel.mean(1).tolist(), per_channel.std(1).tolist()


def _write_videos(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """Writes the RGB channels of a few test clips as mp4 and decodes the first back (H.264 is lossy)."""
    from mmsdk.adapters.video.io import read_video
    from mmsdk.adapters.video.writer import write_video

    root.mkdir(parents=True, exist_ok=True)
    names = data["class_names"]
    paths = []
    for i in range(min(VIDEO_FILES, len(data["test_clips"]))):
        name = names[int(data["test_labels"][i])].replace("/", "_")
        paths.append(write_video(root / f"test{i:02d}_{name}.mp4", data["test_clips"][i, :, :3], fps=8))
    clip = data["test_clips"][0]  # (T, C, H, W)
    rgb = read_video(paths[0], num_frames=clip.shape[0], stride=1)  # (T, 3, H, W)
    data["decoded_clip"] = torch.cat([rgb, clip[:, 3:]], dim=1)  # the file's RGB with the clip's depth
    return {
        "written": [str(p) for p in paths],
        "read_back": str(paths[0]),
        "read_back_shape": list(rgb.shape),
        "read_back_mean_abs_error": float((rgb - clip[:, :3]).abs().mean()),
    }


def _predict(model: torch.nn.Module, clips: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(M, classes) logits of a classifier on (M, T, C, H, W) clips (eval mode, no grad)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])


def _finetune_both(
    cfg: DemoConfig, data: dict[str, Any], norm: Norm, pretrained: Path, trainer: dict[str, Any]
) -> dict[str, Any]:
    """Fine-tunes the classifier from the pretrained backbone and from scratch with the same budget; test accuracy."""
    from mmsdk.training.api import TrainerConfig, finetune
    from mmsdk.training.optim import OptimConfig

    names = data["class_names"]
    head = {"task": "classification", "num_outputs": len(names), "labels": names, "pooling": "mean", "dropout": 0.3}
    runs: dict[str, Any] = {}
    for init in ("pretrained", "scratch"):
        t0 = time.perf_counter()
        run = finetune(
            _model_config(cfg, norm),
            head,
            (data["labelled_clips"], data["labelled_labels"]),
            pretrained=str(pretrained) if init == "pretrained" else None,
            optim=OptimConfig(lr=FINETUNE_LR, weight_decay=0.05, warmup_ratio=0.1),
            trainer=TrainerConfig(max_steps=cfg.finetune_steps, **trainer),
            batch_size=min(cfg.finetune_batch_size, len(data["labelled_clips"])),
        )
        seconds = time.perf_counter() - t0
        model = run.model.eval()
        predicted = _predict(model, data["test_clips"]).argmax(1)  # (M_test,)
        accuracy = float((predicted == data["test_labels"]).double().mean())
        runs[init] = {"model": model, "predicted": predicted, "test_acc": accuracy, "seconds": seconds}
        logger.info("fine-tuned from %s: test accuracy %.3f (%.0f s)", init, accuracy, seconds)
    return runs


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and returns (and writes) its summary."""
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.demos.plots import plot_confusion
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import TrainerConfig, pretrain
    from mmsdk.training.optim import OptimConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = _load_clips(cfg)
    norm = _channel_statistics(data["train_clips"])  # per-channel mean, std of the training clips
    files = _write_videos(data, out / "videos")
    timings["data_s"] = time.perf_counter() - start
    trainer = {"default_root_dir": str(out / "runs"), "progress_bar": cfg.progress_bar, "seed": cfg.seed}
    trainer["log_every_n_steps"] = 20

    # 1. masked pretraining on every training clip, labels unused (the encoder sees the visible tubes only)
    t0 = time.perf_counter()
    masking = MaskingConfig(strategy="tube", ratio=cfg.mask_ratio)
    pre = pretrain(
        _model_config(cfg, norm),
        data["train_clips"],
        masking=masking,
        optim=OptimConfig(lr=PRETRAIN_LR, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.pretrain_steps, **trainer),
        batch_size=min(cfg.batch_size, len(data["train_clips"])),
    )
    timings["pretrain_s"] = time.perf_counter() - t0
    save_pretrained(pre.model, out / "pretrained")
    recon_png, test_terms = _plot_reconstruction(pre.model, data, masking, out / "reconstruction.png")

    # 2-3. few-label fine-tuning from the pretrained backbone and from scratch, test accuracy of both
    runs = _finetune_both(cfg, data, norm, out / "pretrained", trainer)
    timings |= {f"finetune_{init}_s": run["seconds"] for init, run in runs.items()}
    counts = torch.bincount(data["test_labels"])
    accuracy: dict[str, dict[str, float]] = {init: {"test_acc": run["test_acc"]} for init, run in runs.items()}
    accuracy["chance"] = {"test_acc": counts.max().item() / counts.sum().item()}

    # 4. export to ONNX from the raw frames (verified over batch sizes and clip sizes), run it with onnxruntime
    t0 = time.perf_counter()
    onnx = _export_and_run(cfg, runs["pretrained"]["model"], data, out / "videomae_classifier.onnx")
    timings["export_s"] = time.perf_counter() - t0

    # 5. pictures
    confusion_png = plot_confusion(
        data["test_labels"],
        runs["pretrained"]["predicted"],
        data["class_names"],
        "VideoMAE fine-tuned, test",
        out / "confusion.png",
    )
    timings["total_s"] = time.perf_counter() - start

    summary = _summary(cfg, data, pre, accuracy, test_terms, onnx, files, [recon_png, confusion_png], timings)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _summary(
    cfg: DemoConfig,
    data: dict[str, Any],
    pre: PretrainResult,
    accuracy: dict[str, dict[str, float]],
    test_terms: dict[str, float],
    onnx: dict[str, Any],
    files: dict[str, Any],
    plots: list[Path | None],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The demo's numbers as one JSON-ready dict."""
    names = data["class_names"]
    size = cfg.frame_size
    return {
        "data": f"synthetic moving shapes ({len(names)} classes, {cfg.num_frames} frames of {size}x{size}, "
        f"channels {' + '.join(CHANNELS)} = 4)",
        "split": {
            "train": len(data["train_clips"]),
            "labelled": len(data["labelled_clips"]),
            "labels_per_class": cfg.labels_per_class,
            "test": len(data["test_clips"]),
        },
        "classes": names,
        "model": {
            "channels": 4,
            "tube": f"{cfg.tubelet}x{cfg.patch}x{cfg.patch}",
            "tokens_per_clip": int(pre.model.tokenize(data["test_clips"][:1]).num_tokens),
            "dim": cfg.dim,
            "depth": cfg.depth,
            "encoder_parameters": sum(p.numel() for p in pre.model.backbone.parameters()),
        },
        "steps": {"pretrain": cfg.pretrain_steps, "finetune": cfg.finetune_steps},
        "test_accuracy": accuracy,
        "pretrain_final_loss": pre.metrics.get("train/loss"),
        "pretrain_test_loss": test_terms,
        "video_files": files,
        "onnx": onnx,
        "plots": [str(p) for p in plots],
        "timings_s": timings,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
    }


def _export_and_run(cfg: DemoConfig, model: torch.nn.Module, data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Exports the classifier to ONNX, then checks onnxruntime against eager on test clips of the training size,
    of the other sizes (cut from them) and NaN-padded into one batch, and times it."""
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel

    export = to_onnx(model, path)
    runtime = OnnxModel(path)
    clips, labels = data["test_clips"], data["test_labels"]
    pick = torch.linspace(0, len(clips) - 1, min(16, len(clips))).long()
    full = clips[pick]  # (b, T, C, H, W), b <= 16
    inputs = {f"{cfg.num_frames}x{cfg.frame_size}x{cfg.frame_size}": full}
    for name, (t, h, w) in cfg.other_sizes().items():
        inputs[name] = full[:, :t, :, :h, :w].contiguous()
    mixed = full.clone()
    mixed[::2, cfg.num_frames // 2 :] = float("nan")  # every other clip cut to half its frames by NaN padding
    inputs["mixed_nan_padded"] = mixed
    parity: dict[str, float] = {}
    accuracy: dict[str, float] = {}
    for name, x in inputs.items():
        eager = _predict(model, x).numpy()  # (b, classes)
        served = runtime(x.numpy())
        parity[name] = float(np.abs(served - eager).max())
        accuracy[name] = float((served.argmax(1) == labels[pick].numpy()).mean())
    decoded = runtime(data["decoded_clip"][None].numpy())[0]  # the mp4's RGB + the clip's depth
    names = runtime.labels or data["class_names"]
    two = list(inputs)[:2]  # the training size and half the frames
    latency = {f"batch_1_{n}": runtime.benchmark(inputs[n][:1].numpy(), warmup=3, repeats=30) for n in two}
    latency[f"batch_{len(full)}_{next(iter(inputs))}"] = runtime.benchmark(full.numpy(), warmup=2, repeats=10)
    keys = ("channels", "num_frames", "frame_size", "tube", "mean", "std")
    return {
        "path": str(path),
        "labels": runtime.labels,
        "metadata": {key: runtime.metadata.get(f"mmsdk.{key}") for key in keys},
        "verified_max_abs_error": export.max_abs_error,
        "verified_shapes": {"x".join(map(str, shape)): error for shape, error in export.shape_errors.items()},
        "demo_max_abs_error": parity,
        "demo_batch_max_abs_error": max(parity.values()),
        "onnx_test_acc_subset": accuracy,
        "decoded_mp4_prediction": {"predicted": names[int(decoded.argmax())], "true": names[int(labels[0])]},
        "latency_ms": latency,
    }


def _plot_reconstruction(
    model: torch.nn.Module, data: dict[str, Any], masking: MaskingConfig, path: Path
) -> tuple[Path | None, dict[str, float]]:
    """Hides tubes of every test clip with one seeded mask; plots the first clip's reconstruction.

    Returns:
        The PNG (None if the adapter could not draw it) and the masked-tube MSE over the test set, with the MSE of
        predicting zeros (the per-tube mean of the normalized targets) as a baseline.
    """
    from mmsdk.contracts.mask_strategies import draw_mask

    model.eval()
    with torch.no_grad():
        batch = model.tokenize(data["test_clips"])  # tokens (M, N, D), positions (M, N, 3), targets (M, N, P)
        mask = draw_mask(masking, batch, torch.Generator().manual_seed(0))
        pred = model(batch, mask).pred  # (M, N, P) predicted tube pixels
        loss = model.adapter.reconstruction_loss
        terms = {k: float(v) for k, v in loss(pred, batch, mask.target).items()}
        terms |= {f"{k}_zero_baseline": float(v) for k, v in loss(torch.zeros_like(pred), batch, mask.target).items()}
        one = model.tokenize(data["test_clips"][:1])  # the first clip alone: the plot draws the first
        png = model.adapter.plot_reconstruction(one, pred[:1], mask.target[:1], path)
    return png, terms


def render_summary(summary: dict[str, Any]) -> None:
    """Prints the demo summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from mmsdk.demos.plots import accuracy_table

    console = Console()
    console.print(accuracy_table(summary, "VideoMAE", "clips"))
    onnx = summary["onnx"]
    lat = Table(title="ONNX Runtime (raw frames (B, T, C, H, W) in, class logits out)")
    lat.add_column("what")
    lat.add_column("value", justify="right")
    lat.add_row("verified max |eager - onnx|", f"{max(onnx['verified_max_abs_error'].values()):.2e}")
    for name, error in onnx["demo_max_abs_error"].items():
        acc = onnx["onnx_test_acc_subset"][name]
        lat.add_row(f"test clips {name}: max |eager - onnx| (accuracy)", f"{error:.2e} ({acc:.0%})")
    for name, stats in onnx["latency_ms"].items():
        lat.add_row(f"latency {name} (median ms)", f"{stats['median_ms']:.2f}")
    console.print(lat)
    terms = ", ".join(f"{k} {v:.3f}" for k, v in summary["pretrain_test_loss"].items())
    console.print(f"masked-tube pretraining loss on the test clips: {terms}")
    meta = ", ".join(f"{k}={v}" for k, v in onnx["metadata"].items())
    console.print(f"ONNX metadata: {meta}; labels: {', '.join(onnx['labels'] or [])}")
    files = summary["video_files"]
    decoded = onnx["decoded_mp4_prediction"]
    console.print(
        f"mp4 files: {len(files['written'])} written; {files['read_back']} read back "
        f"(mean |decoded - rendered| {files['read_back_mean_abs_error']:.3f}), classified by the ONNX model as "
        f"{decoded['predicted']} (true {decoded['true']})"
    )
    console.print(f"plots: {', '.join(str(p) for p in summary['plots'])}")
    timings = ", ".join(f"{k}={v:.0f}" for k, v in summary["timings_s"].items())
    console.print(f"model: {onnx['path']}; timings: {timings}")
