"""Zero-shot protocol (after Chronos' Benchmark II): a corpus-pretrained Moirai on real series it never saw, each
scored relative to seasonal naive, aggregated by geometric mean.

The model is pretrained exactly as in `benchmarks/moirai_zeroshot_etth1.py` (the statsmodels series plus KernelSynth
series; no ETT data, none of the series below) or loaded with `--pretrained`. It forecasts through a quantile head
(`HeadConfig.quantiles`, levels 0.1 … 0.9 read off its mixture, the same graph that exports to ONNX); nothing is
fine-tuned. Series:

- ETTh1 (bundled with mmsdk): the standard test split, all 7 variates jointly, horizon 96, period 24;
- hourly air temperature of Seattle and of San Francisco in 2010 (NOAA, shipped inside the `vega_datasets` wheel):
  the last 20 windows of 48 hours, period 24. These values are smooth and almost exactly 24-hour periodic (seasonal
  naive misses by 0.05–0.4 °F per hour: climate-normal-like, not raw station readings), so they test whether a model
  copies a clean daily cycle;
- daily Seattle weather 2012–2015 (maximum and minimum temperature, wind, precipitation; each its own series): the
  last 10 windows of 30 days, period 7;
- monthly US employment 2006–2015 (22 sectors) and monthly stock prices 2000–2010 (5 companies): the last 12
  months of every series, period 12.

Per series: MASE of the median and weighted quantile loss (WQL) over the 9 levels, of the model and of seasonal
naive (whose WQL puts every level at its point forecast, as Chronos scores point forecasters); reported as the
ratio model / seasonal naive (< 1: the model wins) and aggregated by geometric mean. Windows are as long as the
model's context (504 steps) and left-padded with NaN (missing values) where a series is shorter.

    pip install vega_datasets                               # the real series (MIT-licensed package, data bundled)
    python benchmarks/zeroshot.py                           # pretrain, then evaluate
    python benchmarks/zeroshot.py --pretrained DIR          # evaluate a pretrained Moirai only (same model flags)
    python benchmarks/zeroshot.py --quick                   # a smoke run (tiny model), not a result

Writes `benchmarks/results/zeroshot.json` and `.md` (`zeroshot_quick.*` for --quick).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # GP sampling of the corpus (see moirai_zeroshot_etth1)

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import moirai_zeroshot_etth1 as etth1

from mmsdk.adapters.timeseries.data import ForecastDataConfig, bundled_path, forecast_datasets
from mmsdk.adapters.timeseries.evaluation import seasonal_naive_forecast
from mmsdk.adapters.timeseries.metrics import mase, weighted_quantile_loss
from mmsdk.contracts.tasks import FORECAST, QUANTILES
from mmsdk.hub import load_backbone
from mmsdk.models import build_task_model

logger = logging.getLogger("benchmarks.zeroshot")

LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class Windows:
    """Evaluation windows of one dataset: contexts x (N, L, C) (NaN = missing) and targets y (N, H, C)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    period: int
    source: str


def _vega() -> Any:
    try:
        from vega_datasets import local_data
    except ImportError as error:
        raise ImportError(
            "the real series of this benchmark ship in vega_datasets: pip install vega_datasets"
        ) from error
    return local_data


def last_windows(values: np.ndarray, context: int, horizon: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last `count` back-to-back windows of a (T, C) series, every series column its own sample: x (N, L, 1),
    y (N, H, 1); contexts before the series' start are NaN."""
    xs, ys = [], []
    series = np.asarray(values, dtype=np.float32)
    padded = np.concatenate([np.full((context, series.shape[1]), np.nan, np.float32), series])
    end = len(padded)
    for k in range(count):
        stop = end - k * horizon
        start = stop - horizon
        if start <= context:  # the context must hold at least one observed step
            break
        xs.append(padded[start - context : start])
        ys.append(padded[start:stop])
    x = torch.from_numpy(np.stack(xs[::-1]))  # (count, L, C)
    y = torch.from_numpy(np.stack(ys[::-1]))
    return x.permute(0, 2, 1).reshape(-1, context, 1), y.permute(0, 2, 1).reshape(-1, horizon, 1)


def vega_sets(context: int, quick: bool) -> list[Windows]:
    """The real series of `vega_datasets` (see the module docstring)."""
    data = _vega()
    hourly, daily = (20, 10) if not quick else (2, 2)
    weather = data.seattle_weather()[["temp_max", "temp_min", "wind", "precipitation"]].to_numpy()
    employment = data.us_employment().drop(columns=["month", "nonfarm_change"]).to_numpy()
    stocks = data.stocks().pivot(index="date", columns="symbol", values="price").sort_index().to_numpy()
    sets = [
        ("seattle_temps_hourly", data.seattle_temps()[["temp"]].to_numpy(), 24, 48, hourly, "NOAA via vega_datasets"),
        ("sf_temps_hourly", data.sf_temps()[["temp"]].to_numpy(), 24, 48, hourly, "NOAA via vega_datasets"),
        ("seattle_weather_daily", weather, 7, 30, daily, "NOAA via vega_datasets"),
        ("us_employment_monthly", employment, 12, 12, 1, "BLS via vega_datasets"),
        ("stocks_monthly", stocks, 12, 12, 1, "vega_datasets"),
    ]
    out = []
    for name, values, period, horizon, count, source in sets:
        x, y = last_windows(values, context, horizon, count)
        out.append(Windows(name, x, y, period, source))
    return out


def etth1_set(context: int, quick: bool) -> Windows:
    """ETTh1's standard test split at horizon 96 (all 7 variates jointly, standardized with the training scaler)."""
    test = forecast_datasets(ForecastDataConfig(path=str(bundled_path("ETTh1")), horizon=96), context).test
    step = 50 if quick else 1
    pairs = [test[i] for i in range(0, len(test), step)]
    x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
    y = torch.stack([torch.as_tensor(p[1]) for p in pairs])
    return Windows("etth1_h96", x, y, 24, "ETDataset (bundled)")


def forecast(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (N, H, C), quantiles (Q, N, H, C)) of the quantile-head model."""
    means, quantiles = [], []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            out = model(chunk)
            means.append(out[FORECAST])
            quantiles.append(out[QUANTILES].permute(3, 0, 1, 2))
    return torch.cat(means), torch.cat(quantiles, dim=1)


def score(windows: Windows, model_for: Callable[[int], torch.nn.Module], batch_size: int) -> dict[str, Any]:
    """MASE (median) and WQL of the model and of seasonal naive on one dataset, and their ratios."""
    start = time.perf_counter()
    horizon = windows.y.shape[1]
    mean, quantiles = forecast(model_for(horizon), windows.x, batch_size)
    median = quantiles[LEVELS.index(0.5)]
    naive = seasonal_naive_forecast(windows.x, horizon, windows.period)
    model = {
        "mase": mase(median, windows.y, windows.x, windows.period),
        "mase_mean": mase(mean, windows.y, windows.x, windows.period),
        "wql": weighted_quantile_loss(quantiles, LEVELS, windows.y),
    }
    baseline = {
        "mase": mase(naive, windows.y, windows.x, windows.period),
        "wql": weighted_quantile_loss(naive.unsqueeze(0).expand(len(LEVELS), -1, -1, -1), LEVELS, windows.y),
    }
    row = {
        "dataset": windows.name,
        "source": windows.source,
        "windows": int(windows.x.shape[0]),
        "variates": int(windows.x.shape[-1]),
        "horizon": horizon,
        "period": windows.period,
        "model": model,
        "seasonal_naive": baseline,
        "relative_mase": model["mase"] / baseline["mase"],
        "relative_wql": model["wql"] / baseline["wql"],
        "seconds": time.perf_counter() - start,
    }
    logger.info("%s: relative MASE %.3f, relative WQL %.3f", windows.name, row["relative_mase"], row["relative_wql"])
    return row


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def table(rows: list[dict[str, Any]], aggregate: dict[str, float]) -> str:
    lines = [
        "| dataset | windows × variates | horizon | period | MASE: Moirai | seasonal naive | relative "
        "| WQL: Moirai | seasonal naive | relative |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        m, b = r["model"], r["seasonal_naive"]
        lines.append(
            f"| {r['dataset']} | {r['windows']} × {r['variates']} | {r['horizon']} | {r['period']} | "
            f"{m['mase']:.3f} | {b['mase']:.3f} | {r['relative_mase']:.3f} | "
            f"{m['wql']:.4f} | {b['wql']:.4f} | {r['relative_wql']:.3f} |"
        )
    mase_gm, wql_gm = aggregate["relative_mase"], aggregate["relative_wql"]
    lines.append(f"| **geometric mean** | | | | | | **{mase_gm:.3f}** | | | **{wql_gm:.3f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = etth1.build_parser()
    parser.description = __doc__
    args = parser.parse_args()
    if args.quick:
        args.steps, args.synthetic_series, args.synthetic_length, args.dim, args.depth = 20, 40, 512, 32, 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning").setLevel(logging.WARNING)
    args.output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sets = [etth1_set(args.context, args.quick), *vega_sets(args.context, args.quick)]  # fails early without data
    if args.pretrained is None:
        pretrained, facts = etth1.run_pretraining(args, args.output)
    else:
        pretrained, facts = str(args.pretrained), {}

    def model_for(horizon: int) -> torch.nn.Module:
        head = {"task": "forecast", "num_outputs": horizon, "quantiles": LEVELS}
        model = build_task_model(etth1.model_config(args), head).eval()
        report = load_backbone(model, pretrained)
        if report.missing:
            raise ValueError(f"the pretrained backbone lacks {report.missing}")
        return model

    rows = [score(windows, model_for, batch_size=64) for windows in sets]
    aggregate = {key: geometric_mean([r[key] for r in rows]) for key in ("relative_mase", "relative_wql")}
    report = {
        "benchmark": "zero-shot Moirai on real series it never saw, relative to seasonal naive (Chronos Benchmark II)",
        **etth1.run_facts(args),
        "levels": LEVELS,
        **facts,
        "total_seconds": time.perf_counter() - start,
        "aggregate": aggregate,
        "results": rows,
    }
    name = args.name or ("zeroshot_quick" if args.quick else "zeroshot")
    (args.output / f"{name}.json").write_text(json.dumps(report, indent=2, default=float))
    (args.output / f"{name}.md").write_text(table(rows, aggregate) + "\n")
    print(table(rows, aggregate))


if __name__ == "__main__":
    main()
