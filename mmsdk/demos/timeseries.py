"""`mmsdk demo --modality timeseries`: the whole product on real data in a few CPU minutes.

ETTh1 (bundled) → masked pretraining of a PatchTST model → fine-tuning a 96-step forecaster from the pretrained
backbone → test MSE/MAE against naive baselines → ONNX export with verification → the ONNX model run with
onnxruntime (parity and latency) → plots of forecasts and masked-patch reconstructions.
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


@dataclass
class DemoConfig(Config):
    """What the demo runs; the defaults finish in under 5 minutes on 2 CPU cores."""

    output_dir: str = "outputs/demo_timeseries"
    """Where plots, the checkpoint, the ONNX model and summary.json go."""
    data: str | None = None
    """A wide CSV to use instead of the bundled ETTh1 (needs the ETT length for the standard split)."""
    context_length: int = 336
    """Look-back window L in time steps."""
    horizon: int = 96
    """Forecast horizon H."""
    pretrain_steps: int = 500
    """Masked-pretraining optimizer steps."""
    finetune_steps: int = 500
    """Forecast fine-tuning optimizer steps."""
    batch_size: int = 64
    """Windows per batch."""
    patch_len: int = 16
    """Time steps per patch; patches do not overlap, so a hidden patch cannot be read off its neighbours."""
    dim: int = 64
    """Encoder width."""
    depth: int = 2
    """Encoder blocks."""
    progress_bar: bool = True
    """Show Lightning's rich progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("context_length", "horizon", "pretrain_steps", "finetune_steps", "batch_size", "dim", "depth"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")


def _model_config(cfg: DemoConfig, channels: int) -> dict[str, Any]:
    return {
        "adapter": "patchtst",
        "adapter_config": {
            "context_length": cfg.context_length,
            "num_channels": channels,
            "patch_len": cfg.patch_len,
            "stride": cfg.patch_len,
            "padding_patch": "none",
        },
        "encoder": {"dim": cfg.dim, "depth": cfg.depth, "heads": 4, "dropout": 0.1},
        "objective": "bert",
    }


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and returns (and writes) its summary."""
    from mmsdk.adapters.timeseries.data import ForecastDataConfig, forecast_datasets
    from mmsdk.adapters.timeseries.evaluation import evaluate_forecaster, plot_forecasts
    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import TrainerConfig, finetune, pretrain
    from mmsdk.training.optim import OptimConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    data_cfg = ForecastDataConfig(path=cfg.data, horizon=cfg.horizon, batch_size=cfg.batch_size)
    pre_data = forecast_datasets(data_cfg, cfg.context_length, pretraining=True)
    ft_data = forecast_datasets(data_cfg, cfg.context_length)
    model_cfg = _model_config(cfg, len(ft_data.columns))
    trainer = dict(default_root_dir=str(out / "runs"), progress_bar=cfg.progress_bar, log_every_n_steps=20)

    # 1. masked pretraining (BERT-style: hidden patches become a mask token inside the encoder)
    t0 = time.perf_counter()
    pre = pretrain(
        model_cfg,
        pre_data.train,
        masking=MaskingConfig(strategy="random", ratio=0.4),
        optim=OptimConfig(lr=1e-3, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.pretrain_steps, **trainer),
        batch_size=cfg.batch_size,
    )
    timings["pretrain_s"] = time.perf_counter() - t0
    save_pretrained(pre.model, out / "pretrained")
    recon_png = _plot_reconstruction(pre.model, ft_data, out / "reconstruction.png")

    # 2. fine-tune a forecaster from the pretrained backbone
    t0 = time.perf_counter()
    head = {"task": "forecast", "num_outputs": cfg.horizon, "dropout": 0.1}
    ft = finetune(
        model_cfg,
        head,
        ft_data.train,
        val_data=ft_data.val,
        pretrained=str(out / "pretrained"),
        optim=OptimConfig(lr=5e-4, weight_decay=0.05, warmup_ratio=0.05),
        trainer=TrainerConfig(max_steps=cfg.finetune_steps, **trainer),
        batch_size=cfg.batch_size,
    )
    timings["finetune_s"] = time.perf_counter() - t0
    model = ft.model.eval()

    # 3. test error against naive baselines (standardized units, as in the PatchTST paper)
    metrics = {
        "mmsdk_patchtst": evaluate_forecaster(model, ft_data.test),
        "naive_last_value": evaluate_forecaster(None, ft_data.test, baseline="naive"),
        "seasonal_naive_24h": evaluate_forecaster(None, ft_data.test, baseline="seasonal_naive", period=24),
    }

    # 4. export to ONNX (verified against eager over several batch sizes) and run it with onnxruntime
    onnx_path = out / "patchtst_forecast.onnx"
    export = to_onnx(model, onnx_path)
    runtime = OnnxModel(onnx_path)
    x = torch.stack([ft_data.test[i][0] for i in range(0, len(ft_data.test), max(1, len(ft_data.test) // 32))][:32])
    with torch.no_grad():
        eager = model(x).numpy()
    onnx_out = runtime(x.numpy())
    parity = float(np.abs(onnx_out - eager).max())
    latency = {
        "batch_1": runtime.benchmark(x[:1].numpy(), warmup=5, repeats=50),
        f"batch_{len(x)}": runtime.benchmark(x.numpy(), warmup=3, repeats=20),
    }

    # 5. plots
    i = len(ft_data.test) // 2
    xw, yw = ft_data.test[i]
    with torch.no_grad():
        pred = model(xw.unsqueeze(0))[0].numpy()
    onnx_pred = runtime(xw.unsqueeze(0).numpy())[0]
    season = np.tile(xw[-24:].numpy(), (-(-cfg.horizon // 24), 1))[: cfg.horizon]
    forecast_png = plot_forecasts(
        xw.numpy()[-2 * cfg.horizon :],
        yw.numpy(),
        {"seasonal naive": season, "mmsdk (eager)": pred, "mmsdk (ONNX)": onnx_pred},
        ft_data.columns,
        out / "forecast.png",
        channels=[len(ft_data.columns) - 1, 0],
    )
    timings["total_s"] = time.perf_counter() - start

    summary = {
        "data": str(cfg.data or "bundled ETTh1"),
        "split": {"train": len(ft_data.train), "val": len(ft_data.val), "test": len(ft_data.test)},
        "context_length": cfg.context_length,
        "horizon": cfg.horizon,
        "test_metrics": metrics,
        "pretrain_final_loss": pre.metrics.get("train/loss"),
        "onnx": {
            "path": str(onnx_path),
            "verified_max_abs_error": export.max_abs_error,
            "demo_batch_max_abs_error": parity,
            "latency_ms": latency,
        },
        "plots": [str(forecast_png), str(recon_png)],
        "timings_s": timings,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _plot_reconstruction(model: torch.nn.Module, data: Any, path: Path) -> Path:
    """Masks 40 % of the patches of one test window and plots the model's reconstruction of channel OT."""
    from mmsdk.adapters.timeseries.evaluation import plot_reconstruction, reconstruct
    from mmsdk.contracts.mask_strategies import random_mask

    x = data.test[len(data.test) // 3][0].unsqueeze(0)  # (1, L, C)
    tokens = model.tokenize(x)
    mask = random_mask(tokens.batch_size, tokens.num_tokens, 0.4, torch.Generator().manual_seed(0))
    targets, pred, hidden = reconstruct(model, x, mask)
    channel = targets.shape[0] - 1  # sequences are (sample, channel) pairs; the last is OT
    return plot_reconstruction(
        targets[channel].numpy(),
        pred[channel].numpy(),
        hidden[channel].numpy(),
        model.adapter.config.stride,
        path,
        title=f"masked-patch reconstruction ({data.columns[-1]}, normalized)",
    )


def render_summary(summary: dict[str, Any]) -> None:
    """Prints the demo summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Test error, horizon {summary['horizon']} (standardized units)")
    table.add_column("model")
    table.add_column("MSE", justify="right")
    table.add_column("MAE", justify="right")
    for name, m in summary["test_metrics"].items():
        table.add_row(name, f"{m['mse']:.4f}", f"{m['mae']:.4f}")
    console.print(table)
    onnx = summary["onnx"]
    lat = Table(title="ONNX Runtime")
    lat.add_column("what")
    lat.add_column("value", justify="right")
    lat.add_row("verified max |eager - onnx|", f"{max(onnx['verified_max_abs_error'].values()):.2e}")
    lat.add_row("demo batch max |eager - onnx|", f"{onnx['demo_batch_max_abs_error']:.2e}")
    for name, stats in onnx["latency_ms"].items():
        lat.add_row(f"latency {name} (median ms)", f"{stats['median_ms']:.2f}")
    console.print(lat)
    console.print(f"plots: {', '.join(summary['plots'])}")
    timings = ", ".join(f"{k}={v:.0f}" for k, v in summary["timings_s"].items())
    console.print(f"model: {onnx['path']}; timings: {timings}")
