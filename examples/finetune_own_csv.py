"""Fine-tune a PatchTST forecaster on your own CSV and export it.

The CSV is wide: an optional time column plus one numeric column per variable (empty cells = missing values).
Rows are split 70/10/20 % into train/val/test; the scaler is fit on the training rows only.

    python examples/finetune_own_csv.py --csv my_data.csv --time-column date --horizon 24
    python examples/finetune_own_csv.py                  # writes and uses a synthetic CSV

Outputs (in --output): the fine-tuned model (`model/`), `forecaster.onnx`, `forecast.png` and `metrics.json`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import mmsdk
from mmsdk.adapters.timeseries.data import ForecastDataConfig, forecast_datasets
from mmsdk.adapters.timeseries.evaluation import evaluate_forecaster, plot_forecasts
from mmsdk.export.onnx import to_onnx


def synthetic_csv(path: Path, steps: int = 3000, seed: int = 0) -> Path:
    """A small hourly CSV with two seasonal variables, a trend and a few missing cells."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=steps, freq="h"),
            "load": 10 + 3 * np.sin(2 * np.pi * t / 24) + 0.002 * t + rng.normal(0, 0.3, steps),
            "temperature": 20 + 5 * np.sin(2 * np.pi * (t - 6) / 24) + rng.normal(0, 0.5, steps),
        }
    )
    frame.loc[rng.random(steps) < 0.01, "load"] = np.nan
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=None, help="your wide CSV (default: a synthetic one)")
    parser.add_argument("--time-column", default="date", help="name of the time column ('' if none)")
    parser.add_argument("--columns", nargs="+", default=None, help="variables to use (default: all numeric)")
    parser.add_argument("--context", type=int, default=96, help="look-back window in time steps")
    parser.add_argument("--horizon", type=int, default=24, help="forecast horizon in time steps")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning optimizer steps")
    parser.add_argument("--pretrained", default=None, help="a directory written by `mmsdk pretrain` (optional)")
    parser.add_argument("--output", type=Path, default=None, help="output directory (default: a temp dir)")
    args = parser.parse_args()
    out = args.output or Path(tempfile.mkdtemp(prefix="mmsdk-csv-"))
    out.mkdir(parents=True, exist_ok=True)
    csv = args.csv or synthetic_csv(out / "synthetic.csv")

    data_cfg = ForecastDataConfig(
        path=str(csv), time_column=args.time_column or None, columns=args.columns, split="ratio", horizon=args.horizon
    )
    data = forecast_datasets(data_cfg, args.context)
    model = {
        "adapter": "patchtst",
        "adapter_config": {
            "context_length": args.context,
            "num_channels": len(data.columns),
            "patch_len": 12,
            "stride": 12,
            "padding_patch": "none",
        },
        "encoder": {"dim": 64, "depth": 2, "heads": 4, "dropout": 0.1},
        "objective": "bert",
    }
    result = mmsdk.finetune(
        model,
        {"task": "forecast", "num_outputs": args.horizon},
        data.train,
        val_data=data.val,
        pretrained=args.pretrained,
        trainer={"max_steps": args.steps, "default_root_dir": str(out / "runs"), "select_best": "val/mse"},
        batch_size=32,
    )
    forecaster = result.model.eval()
    metrics = {
        "mmsdk": evaluate_forecaster(forecaster, data.test),
        "seasonal_naive_24": evaluate_forecaster(None, data.test, baseline="seasonal_naive", period=24),
    }
    mmsdk.save_pretrained(forecaster, out / "model")
    export = to_onnx(forecaster, out / "forecaster.onnx")

    x, y = data.test[len(data.test) // 2]
    with torch.no_grad():
        pred = forecaster(x.unsqueeze(0))[0].numpy()
    plot_forecasts(
        x.numpy(), y.numpy(), {"mmsdk": pred}, data.columns, out / "forecast.png", list(range(len(data.columns)))
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"ONNX verified: max abs error {max(export.max_abs_error.values()):.2e}; outputs in {out}")


if __name__ == "__main__":
    main()
