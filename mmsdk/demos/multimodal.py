"""`mmsdk demo --modality multimodal`: one 4M-style model over video, sound and sensor series, in a few CPU minutes.

A bouncing ball seen three ways (generated on the fly: the ball filmed side-on, the sound of its impacts, and its
height and an accelerometer trace) → 4m pretraining of one transformer over the three adapters' tokens (timerxl
series patches, audiomae log-mel patches, videomae tubes; per-sample input and target budgets from Dirichlet draws,
a cross-attention decoder) → any-to-any prediction on unseen scenes, each direction's error against predicting the
training mean → cross-modal fine-tuning (the drop height and restitution regressed from the sound alone, with the
pretrained backbone and from scratch) → ONNX export of a video → series predictor, run with onnxruntime (parity and
latency) → pictures of cross-modal predictions next to the truth.
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

logger = logging.getLogger(__name__)

DIRECTIONS = ("video→series", "audio→series", "series→video", "audio→video", "video→audio", "series→audio")
"""The directions evaluated (one source modality each)."""
PLOTS = (("video", "series"), ("series", "video"), ("video", "audio"))
"""(source, target) pairs drawn."""
PROPERTIES = ("height", "restitution")
"""Hidden properties the cross-modal fine-tuning regresses from the sound."""
PRETRAIN_LR = 2e-3
"""Peak learning rate of the 4m pretraining."""
FINETUNE_LR = 1e-3
"""Peak learning rate of both fine-tuning runs."""
AUDIO_MEAN, AUDIO_STD = -2.12, 3.06
"""Log-mel statistics of the scene's sound (32 mel bins), measured with `fbank_statistics` over 300 clips."""


@dataclass
class DemoConfig(Config):
    """What the demo runs; the defaults finish in under 5 minutes on 2 CPU cores."""

    output_dir: str = "outputs/demo_multimodal"
    """Where the plots, the checkpoint, the ONNX model and summary.json go."""
    num_samples: int = 4000
    """Training scenes (each seen once or twice: the set is generated on the fly)."""
    test_samples: int = 256
    """Unseen scenes for the cross-modal errors and the fine-tuning test."""
    finetune_samples: int = 256
    """Labelled scenes for the cross-modal fine-tuning (the drop height and restitution known)."""
    dim: int = 64
    """Encoder and decoder width."""
    depth: int = 3
    """Encoder blocks."""
    decoder_depth: int = 2
    """Cross-attention decoder blocks."""
    tubelet: int = 2
    """Frames per video tube (8 frames of 32 × 32 in 8 × 8 patches: 16 tubes per time step)."""
    input_tokens: int = 56
    """Input budget per scene (of 104 tokens: 16 series, 24 audio and 64 video tokens)."""
    target_tokens: int = 48
    """Target budget per scene."""
    input_alpha: float = 0.0
    """Dirichlet concentration of the input shares: 0 = one modality in per scene (the setting of predicting one
    from another, which is what the demo evaluates)."""
    pretrain_steps: int = 1500
    """4m pretraining optimizer steps."""
    finetune_steps: int = 150
    """Fine-tuning optimizer steps (for each of the pretrained and the scratch run)."""
    batch_size: int = 32
    """Scenes per batch."""
    seed: int = 0
    """Seeds the scenes, the initialisations and the budgets."""
    progress_bar: bool = True
    """Show Lightning's rich progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = ("num_samples", "test_samples", "finetune_samples", "dim", "depth", "decoder_depth")
        for name in (*names, "input_tokens", "target_tokens", "pretrain_steps", "finetune_steps", "batch_size"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.dim % 4 == 0, self, "dim", f"must be a multiple of the 4 heads, got {self.dim}")
        require(self.tubelet in (1, 2, 4, 8), self, "tubelet", f"must divide the 8 frames, got {self.tubelet}")
        require(
            self.input_tokens + self.target_tokens <= self.num_tokens,
            self,
            "target_tokens",
            f"input_tokens + target_tokens must fit the {self.num_tokens} tokens of a scene",
        )
        require(self.input_alpha >= 0, self, "input_alpha", f"must be >= 0, got {self.input_alpha}")

    @property
    def num_tokens(self) -> int:
        """Tokens per scene: 16 series patches, 24 log-mel patches and 16 tubes per video time step."""
        return 16 + 24 + 16 * (8 // self.tubelet)


def model_config(cfg: DemoConfig) -> dict[str, Any]:
    """The 4m model over the scene's three views (sizes of the default `SceneConfig`)."""
    series = {"context_length": 64, "num_channels": 2, "patch_len": 8, "revin": False, "positions": "sincos"}
    audio = {
        "fbank": {"num_mel_bins": 32},
        "patch_freq": 32,  # one token = every mel bin of 4 frames (40 ms)
        "patch_time": 4,
        "max_frames": 98,  # one second
        "norm_mean": AUDIO_MEAN,
        "norm_std": AUDIO_STD,
    }
    video = {"channels": 1, "num_frames": 8, "frame_size": 32, "tubelet": cfg.tubelet, "patch": 8}
    video |= {"target_norm": "none", "mean": [0.2], "std": [0.3]}  # raw pixels: predictable from the other views
    heads = 4
    return {
        "modalities": {
            "series": {"adapter": "timerxl", "adapter_config": series},
            "audio": {"adapter": "audiomae", "adapter_config": audio},
            "video": {"adapter": "videomae", "adapter_config": video},
        },
        "encoder": {"dim": cfg.dim, "depth": cfg.depth, "heads": heads},
        "decoder": {"dim": cfg.dim, "depth": cfg.decoder_depth, "heads": heads, "cross_attention": True},
        "objective": "4m",
        "max_variates": 2,  # height and acceleration patches share positions: tell them apart
        "shared_time": True,  # one clock for the three views: where in the second each token lies
        "objective_config": {
            "input_tokens": cfg.input_tokens,
            "target_tokens": cfg.target_tokens,
            "input_alpha": cfg.input_alpha,
            "target_alpha": 0.5,
        },
    }


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and returns (and writes) its summary."""
    from mmsdk.adapters.multimodal import BouncingScene, cross_modal_errors, mean_tokens
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import TrainerConfig, pretrain
    from mmsdk.training.optim import OptimConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    train = BouncingScene(cfg.num_samples, seed=cfg.seed, pairs=True, cache=True)  # read ~12 times: render once
    test = BouncingScene(cfg.test_samples, seed=cfg.seed + 1000, pairs=True, cache=True)  # read once per direction
    trainer = {"default_root_dir": str(out / "runs"), "progress_bar": cfg.progress_bar, "seed": cfg.seed}
    trainer["log_every_n_steps"] = 20

    # 1. 4m pretraining: per scene, Dirichlet budgets of inputs and targets over the three views
    t0 = time.perf_counter()
    pre = pretrain(
        model_config(cfg),
        train,
        optim=OptimConfig(lr=PRETRAIN_LR, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.pretrain_steps, **trainer),
        batch_size=cfg.batch_size,
    )
    timings["pretrain_s"] = time.perf_counter() - t0
    model = pre.model.eval()
    save_pretrained(model, out / "pretrained")

    # 2. any-to-any on unseen scenes, against the training mean of each target
    t0 = time.perf_counter()
    means = {m: mean_tokens(model, BouncingScene(512, seed=cfg.seed, pairs=True), m) for m in model.backbone.names}
    errors = [e.to_dict() for e in cross_modal_errors(model, test, DIRECTIONS, means)]
    timings["evaluate_s"] = time.perf_counter() - t0

    # 3. the drop height and restitution from the sound alone: pretrained backbone vs scratch
    finetune = _finetune_both(cfg, out / "pretrained", trainer)
    timings |= {f"finetune_{init}_s": run.pop("seconds") for init, run in finetune.items() if "seconds" in run}

    # 4. a video → series predictor in ONNX, run with onnxruntime
    t0 = time.perf_counter()
    onnx = _export_and_run(model, test, out / "video_to_series.onnx")
    timings["export_s"] = time.perf_counter() - t0

    # 5. pictures of cross-modal predictions next to the truth
    from mmsdk.adapters.multimodal.plots import plot_cross_modal

    batch = _first(test, 4)
    plots = [str(plot_cross_modal(model, batch, [s], t, out / f"{s}_to_{t}.png")) for s, t in PLOTS]
    timings["total_s"] = time.perf_counter() - start

    summary = {
        "data": "bouncing ball: 8 frames of 32x32 video, 1 s of 16 kHz sound, 64 samples of height + accelerometer",
        "split": {"train": cfg.num_samples, "test": cfg.test_samples, "finetune_labelled": cfg.finetune_samples},
        "model": {
            "tokens": {name: int(part.num_tokens) for name, part in model.tokenize(batch).parts.items()},
            "budgets": {"inputs": cfg.input_tokens, "targets": cfg.target_tokens},
            "dim": cfg.dim,
            "depth": cfg.depth,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "steps": {"pretrain": cfg.pretrain_steps, "finetune": cfg.finetune_steps},
        "pretrain_final_loss": pre.metrics.get("train/loss"),
        "cross_modal": errors,
        "finetune": finetune,
        "onnx": onnx,
        "plots": plots,
        "timings_s": timings,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _first(data: Any, n: int) -> dict[str, Any]:
    """The inputs of the first n items of an (inputs, state) dataset, batched."""
    from torch.utils.data import default_collate

    return default_collate([data[i][0] for i in range(min(n, len(data)))])


def _finetune_both(cfg: DemoConfig, pretrained: Path, trainer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Regresses the hidden properties from the sound alone (the other views absent), from the pretrained backbone
    and from scratch with the same budget; test MSE beside predicting the training mean."""
    from mmsdk.adapters.multimodal.recipe_data import SceneData
    from mmsdk.adapters.multimodal.scene import BouncingScene
    from mmsdk.training.api import TrainerConfig, finetune
    from mmsdk.training.optim import OptimConfig

    head = {"task": "regression", "num_outputs": len(PROPERTIES), "modality": "audio", "pooling": "mean"}

    def data(size: int, seed: int) -> SceneData:  # each set is read by both runs, the training set every epoch
        return SceneData(BouncingScene(size, seed=seed, pairs=True, cache=True), ["audio"], PROPERTIES)

    train, test = data(cfg.finetune_samples, cfg.seed + 2000), data(cfg.test_samples, cfg.seed + 1000)
    targets = torch.stack([train[i][1] for i in range(len(train))])
    truth = torch.stack([test[i][1] for i in range(len(test))])
    mean_mse = float(((truth - targets.mean(0)) ** 2).mean())
    runs: dict[str, dict[str, Any]] = {}
    root = Path(trainer["default_root_dir"]).with_name("finetune_runs")  # one directory per run: no stale checkpoints
    for init, source in (("pretrained", str(pretrained)), ("scratch", None)):
        t0 = time.perf_counter()
        result = finetune(
            model_config(cfg),
            head,
            train,
            test_data=test,
            pretrained=source,
            optim=OptimConfig(lr=FINETUNE_LR, weight_decay=0.05, warmup_ratio=0.1),
            trainer=TrainerConfig(max_steps=cfg.finetune_steps, **{**trainer, "default_root_dir": str(root / init)}),
            batch_size=min(32, cfg.finetune_samples),
        )
        runs[init] = {"test_mse": result.metrics.get("test/mse"), "seconds": time.perf_counter() - t0}
    runs["training mean"] = {"test_mse": mean_mse}
    return runs


def _export_and_run(model: torch.nn.Module, test: Any, path: Path) -> dict[str, Any]:
    """Exports a video → series predictor, checks onnxruntime against eager on test scenes and times it."""
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel
    from mmsdk.models import CrossModalPredictor

    predictor = CrossModalPredictor(model, ["video"], "series").eval()
    export = to_onnx(predictor, path)
    runtime = OnnxModel(path)
    clips = _first(test, 16)["video"]
    with torch.no_grad():
        eager = predictor(clips).numpy()
    got = runtime(clips.numpy())
    times = []
    one = clips[:1].numpy()
    for _ in range(20):
        t0 = time.perf_counter()
        runtime(one)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "path": str(path),
        "inputs": list(export.input_names),
        "output": export.output_names[0],
        "verified_max_abs_error": {str(k): v for k, v in export.max_abs_error.items()},
        "demo_max_abs_error": float(np.abs(got - eager).max()),
        "latency_ms_per_clip": float(np.median(times)),
    }


def render_summary(summary: dict[str, Any]) -> None:
    """Prints the demo summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Any-to-any on unseen scenes (MSE in each target's token units)")
    for column in ("direction", "4m model", "training mean", "ratio"):
        table.add_column(column, justify="right" if column != "direction" else "left")
    for row in summary["cross_modal"]:
        table.add_row(row["direction"], f"{row['mse']:.4f}", f"{row['mean_mse']:.4f}", f"{row['ratio']:.2f}")
    console.print(table)
    fine = Table(title=f"{' and '.join(PROPERTIES)} regressed from the sound alone (test MSE)")
    fine.add_column("initialisation")
    fine.add_column("test MSE", justify="right")
    for init, run in summary["finetune"].items():
        fine.add_row(init, f"{run['test_mse']:.4f}")
    console.print(fine)
    onnx = summary["onnx"]
    console.print(
        f"ONNX {onnx['path']} ({', '.join(onnx['inputs'])} → {onnx['output']}): max |eager - onnx| "
        f"{onnx['demo_max_abs_error']:.2e}, {onnx['latency_ms_per_clip']:.1f} ms per clip"
    )
    console.print(f"plots: {', '.join(summary['plots'])}")
    timings = ", ".join(f"{k}={v:.0f}" for k, v in summary["timings_s"].items())
    console.print(f"timings (s): {timings}")
