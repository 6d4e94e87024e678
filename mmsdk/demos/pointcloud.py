"""`mmsdk demo --modality pointcloud`: the whole product on bundled 3-D shapes in a few CPU minutes.

Bundled synthetic shapes (10 classes of open3d primitives) → Point-MAE masked pretraining (MAE objective, 60 % of
the groups hidden, labels unused) → few-label fine-tuning of a shape classifier from the pretrained backbone and,
with the same budget, from scratch → test accuracy (plain and with test-time voting) against chance → ONNX export
with verification → the ONNX model run with onnxruntime (parity and latency) → pictures of a masked-group
reconstruction and of the fine-tuned classifier's confusion matrix.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsdk.config import Config, require
from mmsdk.demos.plots import plot_confusion

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.25
"""Share of each class of the bundled shapes held out for test."""
PLOT_CLASS = "torus"
"""The class of the test cloud whose masked-group reconstruction is drawn."""


@dataclass
class DemoConfig(Config):
    """What the demo runs; the defaults finish in about 2 minutes on 2 CPU cores."""

    output_dir: str = "outputs/demo_pointcloud"
    """Where plots, the checkpoint, the ONNX model and summary.json go."""
    num_per_class: int = 40
    """Bundled shapes per class; a quarter of each class is held out for test (300 training / 100 test clouds)."""
    labels_per_class: int = 5
    """Labelled training clouds per class for fine-tuning (pretraining uses every training cloud, unlabelled)."""
    num_points: int = 256
    """Points per cloud the model sees (a fresh random subset of a twice as dense cloud at every training step)."""
    num_groups: int = 32
    """Groups (tokens) per cloud, picked by farthest point sampling."""
    group_size: int = 16
    """Points per group (nearest neighbours of each center)."""
    dim: int = 96
    """Encoder width."""
    depth: int = 3
    """Encoder blocks."""
    mask_ratio: float = 0.6
    """Share of the groups hidden during pretraining (Point-MAE: 0.6)."""
    pretrain_steps: int = 600
    """Masked-pretraining optimizer steps."""
    finetune_steps: int = 150
    """Classifier fine-tuning optimizer steps (for each of the pretrained and the scratch run)."""
    batch_size: int = 32
    """Clouds per pretraining batch."""
    finetune_batch_size: int = 16
    """Clouds per fine-tuning batch (at most the number of labelled clouds)."""
    votes: int = 10
    """Random point subsets averaged by the test-time voting evaluation."""
    seed: int = 0
    """Seeds the shapes, the labelled subset, the initialisations and the masks."""
    progress_bar: bool = True
    """Show Lightning's rich progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = ("pretrain_steps", "finetune_steps", "batch_size", "finetune_batch_size", "dim", "depth", "votes")
        for name in (*names, "num_points", "num_groups", "group_size", "labels_per_class"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")
        require(0 < self.mask_ratio < 1, self, "mask_ratio", f"must be in (0, 1), got {self.mask_ratio}")
        require(self.num_per_class >= 2, self, "num_per_class", f"must be >= 2, got {self.num_per_class}")
        test = max(1, round(TEST_FRACTION * self.num_per_class))  # as ShapesDataset splits
        require(
            self.num_per_class - test >= self.labels_per_class,
            self,
            "labels_per_class",
            f"must be <= the {self.num_per_class - test} training clouds per class, got {self.labels_per_class}",
        )


def _model_config(cfg: DemoConfig) -> dict[str, Any]:
    heads = max(1, cfg.dim // 32)
    return {
        "adapter": "pointmae",
        "adapter_config": {
            "num_points": cfg.num_points,
            "num_groups": cfg.num_groups,
            "group_size": cfg.group_size,
            "embed_hidden": 32,
            "embed_local": 64,
            "embed_global": 128,
            "cls_hidden": 128,
        },
        "encoder": {"dim": cfg.dim, "depth": cfg.depth, "heads": heads, "drop_path": 0.1},
        "decoder": {"dim": cfg.dim, "depth": 1, "heads": heads},
        "objective": "mae",
    }


def _load_shapes(cfg: DemoConfig) -> dict[str, Any]:
    """Train/test shapes at twice `num_points` (dense), plain `num_points` test clouds and a few-label subset."""
    from mmsdk.adapters.pointcloud.data import ShapesDataset

    common = {"num_per_class": cfg.num_per_class, "num_points": 2 * cfg.num_points, "seed": cfg.seed}
    common["test_fraction"] = TEST_FRACTION
    train, test = ShapesDataset("train", **common), ShapesDataset("test", **common)
    labels = train.labels.numpy()  # (M,)
    rng = np.random.default_rng([cfg.seed, cfg.labels_per_class])
    chosen = [rng.choice(np.flatnonzero(labels == c), cfg.labels_per_class, replace=False) for c in np.unique(labels)]
    return {
        "class_names": list(train.class_names),
        "train_dense": train.points,  # (M, 2N, 3) uniform surface samples: any N of them are a random subset
        "train_labels": train.labels,  # (M,)
        "labelled": torch.from_numpy(np.sort(np.concatenate(chosen))),  # (K·classes,) indices into the train set
        "test_dense": test.points,  # (T, 2N, 3)
        "test_plain": test.points[:, : cfg.num_points].contiguous(),  # (T, N, 3) one fixed subset per cloud
        "test_labels": test.labels,  # (T,)
    }


def _predict(model: torch.nn.Module, points: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(T,) predicted classes of a classifier on (T, N, 3) clouds (eval mode, no grad)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(points[i : i + batch_size]).argmax(1) for i in range(0, len(points), batch_size)])


def _finetune_both(cfg: DemoConfig, data: dict[str, Any], pretrained: Path, trainer: dict[str, Any]) -> dict[str, Any]:
    """Fine-tunes the classifier from the pretrained backbone and from scratch with the same budget; test accuracy."""
    from mmsdk.adapters.pointcloud.data import Augment
    from mmsdk.adapters.pointcloud.evaluation import vote_predict
    from mmsdk.adapters.pointcloud.resampled import ResampledClouds
    from mmsdk.training.api import TrainerConfig, finetune
    from mmsdk.training.optim import OptimConfig

    ids = data["labelled"]
    train = ResampledClouds(data["train_dense"][ids], data["train_labels"][ids], cfg.num_points, Augment())
    head = {"task": "classification", "num_outputs": len(data["class_names"]), "dropout": 0.5}
    runs: dict[str, Any] = {}
    for init in ("pretrained", "scratch"):
        t0 = time.perf_counter()
        run = finetune(
            _model_config(cfg),
            head,
            train,
            pretrained=str(pretrained) if init == "pretrained" else None,
            optim=OptimConfig(lr=5e-4, weight_decay=0.05, warmup_ratio=0.1),  # Point-MAE fine-tunes at 5e-4
            trainer=TrainerConfig(max_steps=cfg.finetune_steps, **trainer),
            batch_size=min(cfg.finetune_batch_size, len(train)),
        )
        seconds = time.perf_counter() - t0
        model = run.model.eval()
        predicted = _predict(model, data["test_plain"])  # (T,)
        generator = torch.Generator().manual_seed(cfg.seed)
        logits = vote_predict(model, data["test_dense"], cfg.num_points, cfg.votes, generator, (2 / 3, 3 / 2))
        runs[init] = {
            "model": model,
            "predicted": predicted,
            "test_acc": float((predicted == data["test_labels"]).double().mean()),
            "test_acc_vote": float((logits.argmax(1) == data["test_labels"]).double().mean()),
            "seconds": seconds,
        }
        logger.info("fine-tuned from %s: test accuracy %.3f (%.0f s)", init, runs[init]["test_acc"], seconds)
    return runs


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and returns (and writes) its summary."""
    from mmsdk.adapters.pointcloud.data import Augment
    from mmsdk.adapters.pointcloud.resampled import ResampledClouds
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import TrainerConfig, pretrain
    from mmsdk.training.optim import OptimConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = _load_shapes(cfg)
    timings["data_s"] = time.perf_counter() - start
    trainer = {"default_root_dir": str(out / "runs"), "progress_bar": cfg.progress_bar, "seed": cfg.seed}
    trainer["log_every_n_steps"] = 20

    # 1. masked pretraining on every training cloud, labels unused (the encoder sees the visible groups only)
    t0 = time.perf_counter()
    pre = pretrain(
        _model_config(cfg),
        ResampledClouds(data["train_dense"], None, cfg.num_points, Augment()),  # Point-MAE's scale-and-translate
        masking=MaskingConfig(strategy="random", ratio=cfg.mask_ratio),
        optim=OptimConfig(lr=1e-3, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.pretrain_steps, **trainer),
        batch_size=min(cfg.batch_size, len(data["train_dense"])),
    )
    timings["pretrain_s"] = time.perf_counter() - t0
    save_pretrained(pre.model, out / "pretrained")
    recon_png, chamfer = _plot_reconstruction(pre.model, data, cfg, out / "reconstruction.png")

    # 2-3. few-label fine-tuning from the pretrained backbone and from scratch, test accuracy of both
    runs = _finetune_both(cfg, data, out / "pretrained", trainer)
    timings |= {f"finetune_{init}_s": run["seconds"] for init, run in runs.items()}
    model = runs["pretrained"]["model"]
    counts = torch.bincount(data["test_labels"])
    accuracy = {init: {k: run[k] for k in ("test_acc", "test_acc_vote")} for init, run in runs.items()}
    accuracy["chance"] = {"test_acc": counts.max().item() / counts.sum().item()}

    # 4. export to ONNX (verified against eager over several batch sizes) and run it with onnxruntime
    t0 = time.perf_counter()
    onnx = _export_and_run(model, data["test_plain"], out / "pointmae_classifier.onnx")
    timings["export_s"] = time.perf_counter() - t0

    # 5. pictures
    predicted = runs["pretrained"]["predicted"]  # (T,)
    title = "Point-MAE fine-tuned, test confusion matrix"
    confusion_png = plot_confusion(data["test_labels"], predicted, data["class_names"], title, out / "confusion.png")
    timings["total_s"] = time.perf_counter() - start

    summary = {
        "data": "bundled synthetic shapes (10 classes)",
        "split": {
            "train": len(data["train_dense"]),
            "labelled": len(data["labelled"]),
            "labels_per_class": cfg.labels_per_class,
            "test": len(data["test_plain"]),
        },
        "classes": data["class_names"],
        "model": {
            "num_points": cfg.num_points,
            "num_groups": cfg.num_groups,
            "group_size": cfg.group_size,
            "dim": cfg.dim,
            "depth": cfg.depth,
        },
        "steps": {"pretrain": cfg.pretrain_steps, "finetune": cfg.finetune_steps},
        "test_accuracy": accuracy,
        "pretrain_final_loss": pre.metrics.get("train/loss"),
        "pretrain_test_chamfer": chamfer,
        "onnx": onnx,
        "plots": [str(recon_png), str(confusion_png)],
        "timings_s": timings,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _export_and_run(model: torch.nn.Module, test_points: torch.Tensor, path: Path) -> dict[str, Any]:
    """Exports the classifier to ONNX, then checks onnxruntime against eager on a test batch and times it."""
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel

    export = to_onnx(model, path)
    runtime = OnnxModel(path)
    x = test_points[torch.linspace(0, len(test_points) - 1, min(32, len(test_points))).long()]  # (b, N, 3), b <= 32
    with torch.no_grad():
        eager = model(x).numpy()  # (b, classes)
    parity = float(np.abs(runtime(x.numpy()) - eager).max())
    latency = {
        "batch_1": runtime.benchmark(x[:1].numpy(), warmup=5, repeats=50),
        f"batch_{len(x)}": runtime.benchmark(x.numpy(), warmup=3, repeats=20),
    }
    return {
        "path": str(path),
        "verified_max_abs_error": export.max_abs_error,
        "demo_batch_max_abs_error": parity,
        "latency_ms": latency,
    }


def _plot_reconstruction(
    model: torch.nn.Module, data: dict[str, Any], cfg: DemoConfig, path: Path
) -> tuple[Path | None, float]:
    """Hides `mask_ratio` of the groups of every test cloud with one fixed mask; plots one cloud's reconstruction.

    Returns:
        The PNG (None if the adapter could not draw it) and the Chamfer loss of the hidden groups over the test set.
    """
    from mmsdk.contracts.mask_strategies import random_mask

    model.eval()
    with torch.no_grad():
        batch = model.tokenize(data["test_plain"])  # tokens (T, S, D), positions (T, S, 3), targets (T, S, k·3)
        mask = random_mask(batch.batch_size, batch.num_tokens, cfg.mask_ratio, torch.Generator().manual_seed(0))
        pred = model(batch, mask).pred  # (T, S, k·3) re-centred group points
        chamfer = float(sum(model.adapter.reconstruction_loss(pred, batch, mask.target).values()))
        names = data["class_names"]
        i = int((data["test_labels"] == (names.index(PLOT_CLASS) if PLOT_CLASS in names else 0)).nonzero()[0, 0])
        one = model.tokenize(data["test_plain"][i : i + 1])  # the same cloud alone: the plot draws the first
        png = model.adapter.plot_reconstruction(one, pred[i : i + 1], mask.target[i : i + 1], path)
    return png, chamfer


def render_summary(summary: dict[str, Any]) -> None:
    """Prints the demo summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from mmsdk.demos.plots import accuracy_table

    console = Console()
    console.print(accuracy_table(summary, "Point-MAE", "clouds", vote=True))
    onnx = summary["onnx"]
    lat = Table(title="ONNX Runtime")
    lat.add_column("what")
    lat.add_column("value", justify="right")
    lat.add_row("verified max |eager - onnx|", f"{max(onnx['verified_max_abs_error'].values()):.2e}")
    lat.add_row("demo batch max |eager - onnx|", f"{onnx['demo_batch_max_abs_error']:.2e}")
    for name, stats in onnx["latency_ms"].items():
        lat.add_row(f"latency {name} (median ms)", f"{stats['median_ms']:.2f}")
    console.print(lat)
    console.print(
        f"masked-group reconstruction, test Chamfer L2 of hidden groups: {summary['pretrain_test_chamfer']:.4f}"
    )
    console.print(f"plots: {', '.join(str(p) for p in summary['plots'])}")
    timings = ", ".join(f"{k}={v:.0f}" for k, v in summary["timings_s"].items())
    console.print(f"model: {onnx['path']}; timings: {timings}")
