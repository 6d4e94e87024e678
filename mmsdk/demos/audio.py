"""`mmsdk demo --modality audio`: the whole product on synthetic sound events in a few CPU minutes.

Seeded synthetic sound events (6 classes of 1 s, 16 kHz clips, written as FLAC and read back with `AudioFolder`) →
log-mel statistics of the training clips → SSAST masked pretraining (joint InfoNCE + MSE, clusters of patches
hidden, labels unused) → few-label fine-tuning of a clip classifier with SpecAugment and random shifts from the
pretrained backbone and, with the same budget, from scratch → test accuracy against chance → ONNX export from the
raw waveform (with the class names) and verification → the ONNX model run with onnxruntime on clips of two lengths
(parity and latency) → pictures of a masked-patch reconstruction, example spectrograms and the fine-tuned
classifier's confusion matrix.
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

from mmsdk.adapters.audio.frontend import FbankConfig
from mmsdk.config import Config, require
from mmsdk.demos.audio_data import CLIP_SECONDS, SAMPLE_RATE

if TYPE_CHECKING:
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.training.api import PretrainResult

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.25
"""Share of each class held out for test."""
SHORT_SECONDS = 0.7
"""The shorter clip length the ONNX model is run on (test clips cut to it)."""
CLUSTERS = {"cluster_min": 2, "cluster_max": 4}
"""Side of the square clusters of hidden patches, drawn per batch (SSAST: 3 to 6 patches of 16 × 16 on 128 mel
bins; smaller here, on a grid of 8 × 12 patches)."""
PRETRAIN_LR = 1e-3
"""Peak learning rate of the masked pretraining."""
FINETUNE_LR = 1e-3
"""Peak learning rate of both fine-tuning runs."""


@dataclass
class DemoConfig(Config):
    """What the demo runs; the defaults finish in about 3 minutes on 2 CPU cores."""

    output_dir: str = "outputs/demo_audio"
    """Where the clips, plots, the checkpoint, the ONNX model and summary.json go."""
    num_per_class: int = 60
    """Clips per class; a quarter of each class is held out for test (270 training / 90 test clips)."""
    labels_per_class: int = 5
    """Labelled training clips per class for fine-tuning (pretraining uses every training clip, unlabelled)."""
    mel_bins: int = 64
    """Mel bins of the log-mel filterbank (25 ms frames every 10 ms: 98 frames per 1 s clip)."""
    patch: int = 8
    """Patch side in mel bins and frames (8: 8 × 12 = 96 patch tokens per 1 s clip at 64 mel bins)."""
    dim: int = 64
    """Encoder width."""
    depth: int = 2
    """Encoder blocks."""
    mask_ratio: float = 0.7
    """Share of the patches hidden during pretraining, in clusters (the `cluster` strategy)."""
    pretrain_steps: int = 1200
    """Masked-pretraining optimizer steps."""
    finetune_steps: int = 200
    """Classifier fine-tuning optimizer steps (for each of the pretrained and the scratch run)."""
    batch_size: int = 32
    """Clips per pretraining batch."""
    finetune_batch_size: int = 16
    """Clips per fine-tuning batch (at most the number of labelled clips)."""
    freq_mask: int = 12
    """SpecAugment while fine-tuning: the widest band of mel bins zeroed per clip."""
    time_mask: int = 20
    """SpecAugment while fine-tuning: the widest run of frames zeroed per clip."""
    max_shift: float = 0.25
    """Fine-tuning waveform augmentation: a random circular time shift up to this share of the clip and a random
    gain (×0.5–2) at every draw (0 = off)."""
    seed: int = 0
    """Seeds the clips, the labelled subset, the initialisations and the masks."""
    progress_bar: bool = True
    """Show Lightning's rich progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = ("pretrain_steps", "finetune_steps", "batch_size", "finetune_batch_size", "dim", "depth")
        for name in (*names, "labels_per_class"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")
        require(0 < self.mask_ratio < 1, self, "mask_ratio", f"must be in (0, 1), got {self.mask_ratio}")
        require(self.num_per_class >= 2, self, "num_per_class", f"must be >= 2, got {self.num_per_class}")
        require(self.mel_bins >= 3, self, "mel_bins", f"must be >= 3, got {self.mel_bins}")
        short_frames = FbankConfig(sample_rate=SAMPLE_RATE).num_frames(round(SHORT_SECONDS * SAMPLE_RATE))
        bounds = f"must be in [1, min(mel_bins={self.mel_bins}, {short_frames} frames of a {SHORT_SECONDS} s clip)]"
        require(1 <= self.patch <= min(self.mel_bins, short_frames), self, "patch", f"{bounds}, got {self.patch}")
        require(
            0 <= self.freq_mask < self.mel_bins, self, "freq_mask", f"must be in [0, mel_bins), got {self.freq_mask}"
        )
        require(self.time_mask >= 0, self, "time_mask", f"must be >= 0, got {self.time_mask}")
        require(0 <= self.max_shift < 1, self, "max_shift", f"must be in [0, 1), got {self.max_shift}")
        test = max(1, round(TEST_FRACTION * self.num_per_class))  # as split_per_class splits
        require(
            self.num_per_class - test >= self.labels_per_class,
            self,
            "labels_per_class",
            f"must be <= the {self.num_per_class - test} training clips per class, got {self.labels_per_class}",
        )


def _model_config(cfg: DemoConfig, norm: tuple[float, float], augment: bool = False) -> dict[str, Any]:
    """The SSAST model; `augment` turns SpecAugment on (a free field: fine-tuning may differ from pretraining)."""
    adapter = {
        "fbank": {"sample_rate": SAMPLE_RATE, "num_mel_bins": cfg.mel_bins},
        "patch_freq": cfg.patch,
        "patch_time": cfg.patch,
        "max_frames": 128,  # 1.28 s: the learned position table covers the 1 s clips
        "norm_mean": norm[0],
        "norm_std": norm[1],
        "freq_mask": cfg.freq_mask if augment else 0,
        "time_mask": cfg.time_mask if augment else 0,
    }
    encoder = {"dim": cfg.dim, "depth": cfg.depth, "heads": max(1, cfg.dim // 16), "drop_path": 0.1}
    return {"adapter": "ssast", "adapter_config": adapter, "encoder": encoder, "objective": "bert"}


def _load_clips(cfg: DemoConfig, root: Path) -> dict[str, Any]:
    """Writes the seeded clips as FLAC under `root`, reads them back and splits them (train, test, few labels)."""
    from mmsdk.demos.audio_data import read_clips, split_per_class, write_clips

    names = write_clips(root, cfg.num_per_class, cfg.seed)
    waves, labels = read_clips(root, names)  # (M, T), (M,)
    split = split_per_class(labels, TEST_FRACTION, cfg.labels_per_class, cfg.seed)
    train, test = torch.from_numpy(split["train"]), torch.from_numpy(split["test"])
    return {
        "class_names": names,
        "train_waves": waves[train],  # (M_train, T)
        "train_labels": labels[train],
        "labelled_waves": waves[split["labelled"]],  # (K·classes, T)
        "labelled_labels": labels[split["labelled"]],
        "test_waves": waves[test],  # (M_test, T)
        "test_labels": labels[test],
    }


def _predict(model: torch.nn.Module, waves: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(M, classes) logits of a classifier on (M, T) waveforms (eval mode, no grad)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(waves[i : i + batch_size]) for i in range(0, len(waves), batch_size)])


def _finetune_both(
    cfg: DemoConfig, data: dict[str, Any], norm: tuple[float, float], pretrained: Path, trainer: dict[str, Any]
) -> dict[str, Any]:
    """Fine-tunes the classifier from the pretrained backbone and from scratch with the same budget; test accuracy."""
    from mmsdk.demos.audio_data import ShiftedClips
    from mmsdk.training.api import TrainerConfig, finetune
    from mmsdk.training.optim import OptimConfig

    train: Any = (data["labelled_waves"], data["labelled_labels"])
    if cfg.max_shift > 0:
        train = ShiftedClips(*train, max_shift=cfg.max_shift)
    names = data["class_names"]
    head = {"task": "classification", "num_outputs": len(names), "labels": names, "dropout": 0.3}
    runs: dict[str, Any] = {}
    for init in ("pretrained", "scratch"):
        t0 = time.perf_counter()
        run = finetune(
            _model_config(cfg, norm, augment=True),
            head,
            train,
            pretrained=str(pretrained) if init == "pretrained" else None,
            optim=OptimConfig(lr=FINETUNE_LR, weight_decay=0.05, warmup_ratio=0.1),
            trainer=TrainerConfig(max_steps=cfg.finetune_steps, **trainer),
            batch_size=min(cfg.finetune_batch_size, len(data["labelled_waves"])),
        )
        seconds = time.perf_counter() - t0
        model = run.model.eval()
        predicted = _predict(model, data["test_waves"]).argmax(1)  # (M_test,)
        accuracy = float((predicted == data["test_labels"]).double().mean())
        runs[init] = {"model": model, "predicted": predicted, "test_acc": accuracy, "seconds": seconds}
        logger.info("fine-tuned from %s: test accuracy %.3f (%.0f s)", init, accuracy, seconds)
    return runs


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and returns (and writes) its summary."""
    from mmsdk.adapters.audio.stats import fbank_statistics
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.demos.audio_data import plot_examples
    from mmsdk.demos.plots import plot_confusion
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import TrainerConfig, pretrain
    from mmsdk.training.optim import OptimConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = _load_clips(cfg, out / "data")
    fbank = FbankConfig(sample_rate=SAMPLE_RATE, num_mel_bins=cfg.mel_bins)
    norm = fbank_statistics(data["train_waves"], fbank, max_clips=None)  # the training clips' log-mel mean, std
    timings["data_s"] = time.perf_counter() - start
    trainer = {"default_root_dir": str(out / "runs"), "progress_bar": cfg.progress_bar, "seed": cfg.seed}
    trainer["log_every_n_steps"] = 20

    # 1. masked pretraining on every training clip, labels unused (the encoder sees mask tokens in hidden patches)
    t0 = time.perf_counter()
    masking = MaskingConfig(strategy="cluster", ratio=cfg.mask_ratio, options=dict(CLUSTERS))
    pre = pretrain(
        _model_config(cfg, norm),
        data["train_waves"],
        masking=masking,
        optim=OptimConfig(lr=PRETRAIN_LR, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.pretrain_steps, **trainer),
        batch_size=min(cfg.batch_size, len(data["train_waves"])),
    )
    timings["pretrain_s"] = time.perf_counter() - t0
    save_pretrained(pre.model, out / "pretrained")
    recon_png, test_terms = _plot_reconstruction(pre.model, data, masking, out / "reconstruction.png")

    # 2-3. few-label fine-tuning from the pretrained backbone and from scratch, test accuracy of both
    runs = _finetune_both(cfg, data, norm, out / "pretrained", trainer)
    timings |= {f"finetune_{init}_s": run["seconds"] for init, run in runs.items()}
    model = runs["pretrained"]["model"]
    counts = torch.bincount(data["test_labels"])
    accuracy: dict[str, dict[str, float]] = {init: {"test_acc": run["test_acc"]} for init, run in runs.items()}
    accuracy["chance"] = {"test_acc": counts.max().item() / counts.sum().item()}

    # 4. export to ONNX from the raw waveform (verified over batch sizes and clip lengths), run it with onnxruntime
    t0 = time.perf_counter()
    onnx = _export_and_run(model, data, out / "ssast_classifier.onnx")
    timings["export_s"] = time.perf_counter() - t0

    # 5. pictures
    names = data["class_names"]
    examples_png = plot_examples(data["train_waves"], data["train_labels"], names, cfg.mel_bins, out / "examples.png")
    confusion_png = plot_confusion(
        data["test_labels"], runs["pretrained"]["predicted"], names, "SSAST fine-tuned, test", out / "confusion.png"
    )
    timings["total_s"] = time.perf_counter() - start

    plots = [recon_png, examples_png, confusion_png]
    summary = _summary(cfg, data, pre, norm, accuracy, test_terms, onnx, plots, timings)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _summary(
    cfg: DemoConfig,
    data: dict[str, Any],
    pre: PretrainResult,
    norm: tuple[float, float],
    accuracy: dict[str, dict[str, float]],
    test_terms: dict[str, float],
    onnx: dict[str, Any],
    plots: list[Path | None],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The demo's numbers as one JSON-ready dict."""
    names = data["class_names"]
    return {
        "data": f"synthetic sound events ({len(names)} classes, {CLIP_SECONDS:g} s at {SAMPLE_RATE} Hz, FLAC)",
        "split": {
            "train": len(data["train_waves"]),
            "labelled": len(data["labelled_waves"]),
            "labels_per_class": cfg.labels_per_class,
            "test": len(data["test_waves"]),
        },
        "classes": names,
        "model": {
            "mel_bins": cfg.mel_bins,
            "patch": cfg.patch,
            "tokens_per_clip": int(pre.model.tokenize(data["test_waves"][:1]).num_tokens),
            "dim": cfg.dim,
            "depth": cfg.depth,
        },
        "norm": {"mean": norm[0], "std": norm[1]},
        "steps": {"pretrain": cfg.pretrain_steps, "finetune": cfg.finetune_steps},
        "test_accuracy": accuracy,
        "pretrain_final_loss": pre.metrics.get("train/loss"),
        "pretrain_test_loss": test_terms,
        "onnx": onnx,
        "plots": [str(p) for p in plots],
        "timings_s": timings,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
    }


def _export_and_run(model: torch.nn.Module, data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Exports the classifier to ONNX, then checks onnxruntime against eager on test clips of two lengths (each
    alone and NaN-padded into one batch) and times it."""
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel

    export = to_onnx(model, path)
    runtime = OnnxModel(path)
    waves = data["test_waves"]
    pick = torch.linspace(0, len(waves) - 1, min(32, len(waves))).long()
    long = waves[pick]  # (b, T) 1 s clips, b <= 32
    short = long[:, : round(SHORT_SECONDS * SAMPLE_RATE)].contiguous()  # (b, 0.7 T)
    mixed = long.clone()
    mixed[::2, short.shape[1] :] = float("nan")  # every other clip cut to 0.7 s by NaN padding
    parity: dict[str, float] = {}
    agree = 0
    for name, x in ((f"{CLIP_SECONDS:g}s", long), (f"{SHORT_SECONDS:g}s", short), ("mixed_nan_padded", mixed)):
        eager = _predict(model, x).numpy()  # (b, classes)
        served = runtime(x.numpy(), sample_rate=SAMPLE_RATE)
        parity[name] = float(np.abs(served - eager).max())
        agree += int((served.argmax(1) == eager.argmax(1)).sum())
    test_acc = float((runtime(long.numpy()).argmax(1) == data["test_labels"][pick].numpy()).mean())
    latency = {
        f"batch_1_{CLIP_SECONDS:g}s": runtime.benchmark(long[:1].numpy(), warmup=5, repeats=50),
        f"batch_1_{SHORT_SECONDS:g}s": runtime.benchmark(short[:1].numpy(), warmup=5, repeats=50),
        f"batch_{len(long)}_{CLIP_SECONDS:g}s": runtime.benchmark(long.numpy(), warmup=3, repeats=20),
    }
    return {
        "path": str(path),
        "labels": runtime.labels,
        "sample_rate": runtime.sample_rate,
        "verified_max_abs_error": export.max_abs_error,
        "verified_shapes": {"x".join(map(str, shape)): error for shape, error in export.shape_errors.items()},
        "demo_max_abs_error": parity,
        "demo_batch_max_abs_error": max(parity.values()),
        "argmax_agreement": agree / (3 * len(long)),
        "onnx_test_acc_subset": test_acc,
        "latency_ms": latency,
    }


def _plot_reconstruction(
    model: torch.nn.Module, data: dict[str, Any], masking: MaskingConfig, path: Path
) -> tuple[Path | None, dict[str, float]]:
    """Hides clusters of patches of every test clip with one seeded mask; plots the first clip's reconstruction.

    Returns:
        The PNG (None if the adapter could not draw it) and the loss terms (InfoNCE, weighted MSE) over the test set.
    """
    from mmsdk.contracts.mask_strategies import draw_mask

    model.eval()
    with torch.no_grad():
        batch = model.tokenize(data["test_waves"])  # tokens (M, N, D), positions (M, N, 2), targets (M, N, P)
        mask = draw_mask(masking, batch, torch.Generator().manual_seed(0))
        pred = model(batch, mask).pred  # (M, N, 2P): discriminative and generative predictions
        terms = {k: float(v) for k, v in model.adapter.reconstruction_loss(pred, batch, mask.target).items()}
        one = model.tokenize(data["test_waves"][:1])  # the first clip alone: the plot draws the first
        png = model.adapter.plot_reconstruction(one, pred[:1], mask.target[:1], path)
    return png, terms


def render_summary(summary: dict[str, Any]) -> None:
    """Prints the demo summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from mmsdk.demos.plots import accuracy_table

    console = Console()
    console.print(accuracy_table(summary, "SSAST", "clips"))
    onnx = summary["onnx"]
    lat = Table(title="ONNX Runtime (raw 16 kHz waveform in, class logits out)")
    lat.add_column("what")
    lat.add_column("value", justify="right")
    lat.add_row("verified max |eager - onnx|", f"{max(onnx['verified_max_abs_error'].values()):.2e}")
    for name, error in onnx["demo_max_abs_error"].items():
        lat.add_row(f"test clips {name}: max |eager - onnx|", f"{error:.2e}")
    for name, stats in onnx["latency_ms"].items():
        lat.add_row(f"latency {name} (median ms)", f"{stats['median_ms']:.2f}")
    console.print(lat)
    terms = ", ".join(f"{k} {v:.3f}" for k, v in summary["pretrain_test_loss"].items())
    console.print(f"masked-patch pretraining loss on the test clips: {terms}")
    console.print(f"labels in the ONNX metadata: {', '.join(onnx['labels'] or [])}")
    console.print(f"plots: {', '.join(str(p) for p in summary['plots'])}")
    timings = ", ".join(f"{k}={v:.0f}" for k, v in summary["timings_s"].items())
    console.print(f"model: {onnx['path']}; timings: {timings}")
