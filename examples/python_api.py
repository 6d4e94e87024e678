"""Pretrain and fine-tune on your own data from Python — no training loop to write.

Here "your data" is a synthetic 3-variable series with daily and weekly seasonality and 2 % missing values (NaN),
standing in for a numpy array or DataFrame you already have. The script pretrains a PatchTST model with masked
patches, fine-tunes a forecaster from it, saves it, exports it to ONNX and runs it with onnxruntime.

    python examples/python_api.py --steps 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import mmsdk
from mmsdk.adapters.timeseries import WindowDataset
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel


def make_series(steps: int = 4000, seed: int = 0) -> np.ndarray:
    """(T, 3) float32 series with missing values."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    base = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 168), np.sin(2 * np.pi * t / 12)], axis=1)
    series = base + 0.1 * rng.standard_normal(base.shape) + np.linspace(0, 1, steps)[:, None]
    series[rng.random(series.shape) < 0.02] = np.nan
    return series.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps for each of pretraining/fine-tuning")
    parser.add_argument("--output", type=Path, default=None, help="output directory (default: a temp dir)")
    args = parser.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="mmsdk-api-"))

    series = make_series()
    train, test = series[:3200], series[3200 - 96 :]
    model = {
        "adapter": "patchtst",
        "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 12, "stride": 12},
        "encoder": {"dim": 32, "depth": 2, "heads": 4},
        "objective": "bert",
    }
    trainer = {"max_steps": args.steps, "progress_bar": False, "logger": "none", "default_root_dir": str(out)}

    pre = mmsdk.pretrain(model, WindowDataset(train, 96), trainer=trainer, batch_size=32)
    mmsdk.save_pretrained(pre.model, out / "pretrained")

    head = {"task": "forecast", "num_outputs": 24}
    ft = mmsdk.finetune(
        model,
        head,
        WindowDataset(train, 96, horizon=24),
        test_data=WindowDataset(test, 96, horizon=24, stride=24),
        pretrained=str(out / "pretrained"),
        trainer=trainer,
        batch_size=32,
    )
    print("test metrics:", {k: round(v, 4) for k, v in ft.metrics.items() if k.startswith("test/")})

    result = to_onnx(ft.model, out / "forecaster.onnx")
    runtime = OnnxModel(out / "forecaster.onnx")
    x = WindowDataset(test, 96, horizon=24)[0][0].unsqueeze(0)  # (1, 96, 3), may contain NaN
    with torch.no_grad():
        eager = ft.model.eval()(x).numpy()
    print(
        f"ONNX verified (max abs error {max(result.max_abs_error.values()):.2e}); this window differs by "
        f"{np.abs(runtime(x.numpy()) - eager).max():.2e}; outputs in {out}"
    )


if __name__ == "__main__":
    main()
