"""Zero-shot Moirai on ETTh1: pretrain a small Moirai on the corpus only, then forecast ETTh1's test split.

Pretraining never sees ETT data: packed windows of the corpus (:mod:`mmsdk.adapters.timeseries.corpus`: the
statsmodels series plus KernelSynth Gaussian-process series), tail masking with a per-batch ratio drawn from
U(0.15, 0.5), mixture negative log-likelihood. The pretrained backbone (with its distribution head) then
forecasts ETTh1's standard test split (12/4/4 months; inputs scaled with the scaler fit on the training months, as
in the PatchTST benchmark) without any fine-tuning. Reported: MSE/MAE of the forecast distribution's mean (and of
the median of 50 samples at the first horizon) next to the seasonal-naive (24 h) and naive (last value)
baselines, in standardized units.

    python benchmarks/moirai_zeroshot_etth1.py              # the full run (39 minutes on 2 CPU cores)
    python benchmarks/moirai_zeroshot_etth1.py --quick      # a 1-minute smoke run, not a result

Writes `benchmarks/results/moirai_zeroshot_etth1.json` and `.md` (`..._quick.*` for --quick).
"""

from __future__ import annotations

import os

# GP sampling (numpy Cholesky) is much faster single-threaded on small, shared CPUs; set before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmsdk.adapters.timeseries.corpus import CorpusConfig, CorpusDataConfig, corpus_datasets
from mmsdk.adapters.timeseries.data import ForecastDataConfig, bundled_path, forecast_datasets
from mmsdk.adapters.timeseries.evaluation import evaluate_forecaster
from mmsdk.hub import load_backbone, save_pretrained
from mmsdk.models import build_task_model
from mmsdk.training.api import pretrain

logger = logging.getLogger("benchmarks.moirai_zeroshot_etth1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "timeseries" / "ETTh1.csv"


def data_path() -> str:
    return str(SHARED if SHARED.is_file() else bundled_path("ETTh1"))


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """A small Moirai: rotary time ids + same-variate attention bias, mixture output, masked encoder."""
    return {
        "adapter": "moirai",
        "adapter_config": {
            "context_length": args.context,
            "patch_sizes": sorted({8, 16, 32, 64, args.patch_size}),
            "patch_size": args.patch_size,
            "max_variates": 16,
            "stat_ratio": 0.5,
            "components": args.components,
        },
        "encoder": {
            "dim": args.dim,
            "depth": args.depth,
            "heads": args.heads,
            "dropout": 0.0,
            "norm": "rmsnorm",
            "mlp": "swiglu",
            "rope": "1d",
            "variate_bias": True,
        },
        "objective": "bert",
    }


class ChannelIndependent(nn.Module):
    """Forecasts every variate of x (B, L, C) as its own univariate series: (B·C, L, 1) → (B, H, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        out = self.model(x.transpose(1, 2).reshape(b * c, length, 1))  # (B·C, H, 1)
        return out.reshape(b, c, -1).transpose(1, 2)  # (B, H, C)


class MeanForecaster(nn.Module):
    """The forecast distribution's mean: what the task model returns, without its unused plain-context pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.model.head
        hidden, batch = self.model.encode(head.extend(x))  # the context followed by the masked forecast slots
        return head.denormalize(head.distribution(hidden, batch).mean, batch)  # (B, H, C)


class MedianForecaster(nn.Module):
    """The median of `num_samples` draws of the forecast distribution (seeded)."""

    def __init__(self, model: nn.Module, num_samples: int = 100) -> None:
        super().__init__()
        self.model, self.num_samples = model, num_samples
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = self.model.adapter.forecast_distribution(
            self.model, x, num_samples=self.num_samples, quantiles=(0.5,), generator=self.generator
        )
        return dist.quantiles[0]  # (B, H, C)


def run_pretraining(args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    """Builds the corpus and pretrains on its packed windows; returns (saved directory, facts)."""
    start = time.perf_counter()
    corpus = CorpusConfig(
        synthetic_series=args.synthetic_series,
        synthetic_length=args.synthetic_length,
        synthetic_min_length=args.synthetic_length // 4,
        synthetic_variates=args.synthetic_variates,
        real_repeats=args.real_repeats,
        seed=0,
    )
    data = CorpusDataConfig(corpus=corpus, max_tokens=args.max_tokens, batch_size=args.batch_size, val_fraction=0.0)
    train, _ = corpus_datasets(data, args.patch_size, args.context, max_variates=16)
    corpus_seconds = time.perf_counter() - start
    logger.info("corpus: %d windows, %d tokens, built in %.0f s", len(train), train.num_tokens, corpus_seconds)
    start = time.perf_counter()
    result = pretrain(
        model_config(args),
        train,
        masking={"strategy": "tail", "ratio": 0.15, "ratio_max": 0.5},
        optim={"lr": args.lr, "weight_decay": 0.1, "warmup_ratio": 0.05},
        trainer={
            "max_steps": args.steps,
            "progress_bar": False,
            "logger": "csv",
            "log_every_n_steps": 50,
            "default_root_dir": str(out / "runs_moirai_zeroshot"),
        },
        batch_size=args.batch_size,
    )
    facts = {
        "corpus_windows": len(train),
        "corpus_tokens": train.num_tokens,
        "corpus_seconds": corpus_seconds,
        "pretrain_seconds": time.perf_counter() - start,
        "pretrain_steps": int(result.trainer.global_step),
        "final_train_nll": result.metrics.get("train/loss"),
    }
    return str(save_pretrained(result.model, out / "pretrained_moirai_corpus")), facts


def evaluate(args: argparse.Namespace, pretrained: str) -> list[dict[str, Any]]:
    """Zero-shot test metrics of the pretrained model and the baselines, per horizon."""
    rows = []
    for k, horizon in enumerate(args.horizons):
        start = time.perf_counter()
        test = forecast_datasets(ForecastDataConfig(path=data_path(), horizon=horizon), args.context).test
        if args.quick:
            test = torch.utils.data.Subset(test, range(0, len(test), 50))
        model = build_task_model(model_config(args), {"task": "forecast", "num_outputs": horizon}).eval()
        report = load_backbone(model, pretrained)
        if report.missing:
            raise ValueError(f"the pretrained backbone lacks {report.missing}")
        mean = MeanForecaster(model)
        forecaster = ChannelIndependent(mean) if args.channel_independent else mean
        row = {"horizon": horizon, "windows": len(test)}
        row["mean"] = evaluate_forecaster(forecaster, test, batch_size=64)
        if k == 0 and args.median_samples > 0:
            median = MedianForecaster(model, args.median_samples)
            row["median"] = evaluate_forecaster(
                ChannelIndependent(median) if args.channel_independent else median, test, 32
            )
        row["seasonal_naive_24h"] = evaluate_forecaster(None, test, baseline="seasonal_naive", period=24)
        row["naive"] = evaluate_forecaster(None, test, baseline="naive")
        row["eval_seconds"] = time.perf_counter() - start
        logger.info("horizon %d: %s", horizon, row)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: MSE / MAE per horizon and forecaster."""
    lines = [
        "| horizon | Moirai zero-shot mean: MSE | MAE | median: MSE | MAE | seasonal naive 24 h: MSE | MAE "
        "| naive: MSE | MAE |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        median = r.get("median")
        med = f"{median['mse']:.4f} | {median['mae']:.4f}" if median else "– | –"
        lines.append(
            f"| {r['horizon']} | {r['mean']['mse']:.4f} | {r['mean']['mae']:.4f} | {med} | "
            f"{r['seasonal_naive_24h']['mse']:.4f} | {r['seasonal_naive_24h']['mae']:.4f} | "
            f"{r['naive']['mse']:.4f} | {r['naive']['mae']:.4f} |"
        )
    return "\n".join(lines)


def run_facts(args: argparse.Namespace) -> dict[str, Any]:
    """What a report records about the run: the device, threads, command-line settings and model config."""
    device = f"cpu: {platform.machine()}, {os.cpu_count()} cores"
    return {
        "quick": args.quick,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else device,
        "threads": torch.get_num_threads(),
        "settings": {k: (v.name if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": model_config(args),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line; its defaults are the benchmark's recipe (`benchmarks/zeroshot.py` pretrains with them)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-minute smoke run (tiny corpus, few steps)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    parser.add_argument("--steps", type=int, default=30000, help="pretraining steps")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per batch (packed into rows)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per packed row")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context", type=int, default=504, help="longest pretraining window = test context")
    parser.add_argument("--patch-size", type=int, default=24, help="one day of hourly data (patch_size_for_freq: 32)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument(
        "--components", nargs="+", default=["student_t", "normal"], help="mixture families (Moirai: 4; 2 are cheaper)"
    )
    parser.add_argument("--synthetic-series", type=int, default=6000)
    parser.add_argument("--synthetic-length", type=int, default=1024)
    parser.add_argument("--synthetic-variates", type=int, default=3)
    parser.add_argument("--real-repeats", type=int, default=5, help="upweights the statsmodels series")
    parser.add_argument(
        "--channel-independent",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="forecast every ETTh1 variate alone (default: all 7 variates in one token sequence)",
    )
    parser.add_argument("--median-samples", type=int, default=50, help="samples for the median (0: skip)")
    parser.add_argument("--pretrained", type=Path, default=None, help="evaluate this pretrained directory only")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results", help="results directory")
    parser.add_argument("--name", default=None, help="file name stem (default moirai_zeroshot_etth1)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.quick:
        args.steps, args.synthetic_series, args.synthetic_length, args.dim, args.depth = 20, 40, 512, 32, 2
        args.horizons, args.median_samples = [96], 20
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning").setLevel(logging.WARNING)
    args.output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.pretrained is None:
        pretrained, facts = run_pretraining(args, args.output)
    else:  # evaluation only (the model flags must match the pretrained model)
        pretrained, facts = str(args.pretrained), {}
    rows = evaluate(args, pretrained)
    report = {
        "benchmark": "Moirai zero-shot on ETTh1 (pretrained on the statsmodels + KernelSynth corpus only)",
        **run_facts(args),
        **facts,
        "total_seconds": time.perf_counter() - start,
        "results": rows,
    }
    name = args.name or ("moirai_zeroshot_etth1_quick" if args.quick else "moirai_zeroshot_etth1")
    (args.output / f"{name}.json").write_text(json.dumps(report, indent=2, default=float))
    (args.output / f"{name}.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
