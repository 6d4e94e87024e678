"""Forecast the next steps of a CSV table with an exported mmsdk forecaster (numpy + onnxruntime only, no torch).

    python examples/product/forecast_csv.py forecaster.onnx data.csv [--output forecast.csv] [--columns a b]

The model's metadata (`mmsdk.config`) gives the context length L and the number of channels C: the last L rows of
the CSV's C numeric columns (empty cells are missing values, NaN) form the (1, L, C) input, and the forecast
(H, C) is written as CSV (to stdout, or to `--output`) with a `step` column and the input's column names.

Scaling: the training recipes and demos standardize each column with a scaler fit on the training rows before
the model, and that scaler is not stored in the ONNX file. A PatchTST model with instance normalization (RevIN,
`revin: true`, the default) normalizes each window inside the graph and undoes it on the forecast, so raw values
give the same forecast in raw units (a per-column affine map commutes with the window normalization). Without
RevIN pass the training statistics with `--mean`/`--std`: the script standardizes with them and maps the forecast
back to raw units.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsdk.export.runtime import OnnxModel


def check_forecaster(model: OnnxModel) -> tuple[int, int, dict[str, Any]]:
    """(context length, channels, adapter config) of a forecaster; ValueError for any other kind of model."""
    task = model.task
    cfg = model.adapter_config
    if task != "forecast" or "context_length" not in cfg or "num_channels" not in cfg:
        raise ValueError(
            f"{model.path.name} is not a time-series forecaster (adapter {model.metadata.get('mmsdk.adapter')!r}, "
            f"task {task!r}); export a model fine-tuned with task: forecast"
        )
    return int(cfg["context_length"]), int(cfg["num_channels"]), cfg


def _number(cell: str) -> float | None:
    """The cell as a float (an empty cell or NA marker is NaN); None when it is not a number."""
    text = cell.strip()
    if text == "" or text.lower() in ("nan", "na", "null", "none"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_table(path: Path, columns: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """(column names, values (rows, columns) float64) of the CSV's numeric columns (or of `columns`).

    A first row that is not all numbers is the header; without one, columns are named `col0`, `col1`, ... Columns
    holding any non-numeric cell (a timestamp, an id) are skipped unless named in `columns`, which is an error then.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    has_header = any(_number(cell) is None for cell in rows[0])
    header = [h.strip() for h in rows[0]] if has_header else [f"col{i}" for i in range(len(rows[0]))]
    body = rows[1:] if has_header else rows
    if not body:
        raise ValueError(f"{path} has a header but no data rows")
    width = len(header)
    for number, row in enumerate(body, start=2 if has_header else 1):
        if len(row) != width:
            raise ValueError(f"{path} line {number} has {len(row)} cells, the header {width}")
    parsed = [[_number(cell) for cell in row] for row in body]
    numeric = [j for j in range(width) if all(row[j] is not None for row in parsed)]
    if columns:
        unknown = [c for c in columns if c not in header]
        if unknown:
            raise ValueError(f"{path} has no column(s) {unknown}; its columns are {header}")
        chosen = [header.index(c) for c in columns]
        bad = [header[j] for j in chosen if j not in numeric]
        if bad:
            raise ValueError(f"{path}: column(s) {bad} hold non-numeric cells")
    else:
        chosen = numeric
        skipped = [header[j] for j in range(width) if j not in numeric]
        if skipped:
            print(f"skipping non-numeric column(s) {skipped}", file=sys.stderr)
    values = np.array([[row[j] for j in chosen] for row in parsed], dtype=np.float64).reshape(len(parsed), -1)
    return [header[j] for j in chosen], values


def forecast(
    model: OnnxModel, values: np.ndarray, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """The forecast (H, C) of the model from the last `context_length` rows of `values` (rows, C), in raw units.

    With `mean` and `std` (one per column, the training scaler) the context is standardized before the model and
    the forecast mapped back.
    """
    context_length, channels, _ = check_forecaster(model)
    if values.shape[1] != channels:
        raise ValueError(
            f"{model.path.name} forecasts {channels} channel(s) but the table has {values.shape[1]} numeric "
            "column(s); choose them with --columns"
        )
    if values.shape[0] < context_length:
        raise ValueError(f"{model.path.name} needs the last {context_length} rows, the table has {values.shape[0]}")
    window = values[-context_length:]
    if np.isnan(window).all(axis=0).any():
        raise ValueError(f"a column has no observed value in the last {context_length} rows")
    loc = np.zeros(channels) if mean is None else np.asarray(mean, dtype=np.float64)
    scale = np.ones(channels) if std is None else np.asarray(std, dtype=np.float64)
    if loc.shape != (channels,) or scale.shape != (channels,) or not (scale > 0).all():
        raise ValueError(f"--mean and --std need {channels} value(s) each (std > 0)")
    output = model(((window - loc) / scale)[None].astype(np.float32))  # (1, H, C)
    return output[0].astype(np.float64) * scale + loc


def write_forecast(names: Sequence[str], prediction: np.ndarray) -> str:
    """The forecast as CSV text: a `step` column (1..H) and one column per input column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", *names])
    for step, row in enumerate(prediction, start=1):
        writer.writerow([step, *(f"{value:.9g}" for value in row)])
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad model or input, with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="the exported forecaster (.onnx)")
    parser.add_argument("data", type=Path, help="a CSV table, one row per time step, oldest first")
    parser.add_argument("--output", type=Path, help="write the forecast CSV here instead of stdout")
    parser.add_argument("--columns", nargs="+", help="the columns to feed, in the model's channel order")
    parser.add_argument("--mean", type=float, nargs="+", help="training scaler means, one per column")
    parser.add_argument("--std", type=float, nargs="+", help="training scaler standard deviations, one per column")
    args = parser.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    try:
        model = OnnxModel(args.model)
        _, _, cfg = check_forecaster(model)
        if not cfg.get("revin", True) and args.mean is None:
            print("warning: the model has no instance normalization; pass the training --mean/--std", file=sys.stderr)
        names, values = read_table(args.data, args.columns)
        prediction = forecast(model, values, args.mean, args.std)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = write_forecast(names, prediction)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote a {len(prediction)}-step forecast of {names} to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
