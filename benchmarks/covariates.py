"""Do covariates help? The same forecaster with and without them, on three sets where the answer is known.

Cases (test MSE / MAE of the targets in standardized units, mean ± std over seeds, every model from scratch with the
same steps, best validation epoch):

    lagged     synthetic: the target is a lagged, scaled copy of a known-future covariate plus noise
               (`mmsdk.adapters.timeseries.synthetic`): with the covariate the error should fall to the noise floor.
    etth1_ms   ETTh1 with OT as the target and the six load variables as past covariates (the literature's "MS"
               setting), and with sin-cos hour / day-of-week features as known covariates on top.
    noise      the lagged set's target with a pure-noise known covariate instead of the driver: using it must not
               make the forecast worse by more than seed noise (the failure users report for uni2ts).

    python benchmarks/covariates.py                       # every case, moirai and timerxl, 2 seeds
    python benchmarks/covariates.py --cases lagged --adapters moirai --seeds 0 --quick
    python benchmarks/covariates.py --cases noise lagged --adapters moirai --covariate-dropout 0 0.5

With `--covariate-dropout p ...` (default 0), every Moirai variant with covariates is trained with each of these
covariate dropout rates (each covariate of each training sample hidden with probability p), in the same run and on
the same windows; its results are in benchmarks/results/covariates_dropout.{json,md} (`--output`).
`--merge A.json B.json` combines runs written separately (a (case, adapter, variant, seed) measured twice keeps its
first result).

Writes benchmarks/results/covariates.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from report_files import write_report

from mmsdk.adapters.timeseries.data import ForecastDataConfig, forecast_datasets
from mmsdk.adapters.timeseries.series_frame import TimeSeriesFrame
from mmsdk.adapters.timeseries.synthetic import lagged_covariate_frame
from mmsdk.adapters.timeseries.windows import ratio_split
from mmsdk.training.api import finetune

logger = logging.getLogger("benchmarks.covariates")
ROOT = Path(__file__).resolve().parents[1]
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
# case → (context L, horizon H, patch P)
SHAPES = {"lagged": (64, 24, 8), "noise": (64, 24, 8), "etth1_ms": (336, 96, 24)}
ENCODER = {"dim": 64, "depth": 3, "heads": 4, "rope": "1d", "variate_bias": True, "dropout": 0.1}


def model_config(adapter: str, case: str, past: int, known: int, dropout: float = 0.0) -> dict[str, Any]:
    """A small Moirai or Timer-XL forecaster of one target with `past` + `known` covariates (Moirai: and their
    training-time `covariate_dropout`)."""
    length, _, patch = SHAPES[case]
    spec: dict[str, Any] = {"context_length": length, "num_channels": 1, "past_covariates": past,
                            "known_covariates": known}  # fmt: skip
    if adapter == "moirai":
        spec |= {"patch_sizes": [patch], "patch_size": patch, "max_variates": 16, "covariate_dropout": dropout}
        return {"adapter": "moirai", "adapter_config": spec, "encoder": ENCODER, "objective": "bert"}
    spec |= {"patch_len": patch}
    return {"adapter": "timerxl", "adapter_config": spec, "encoder": ENCODER, "objective": "causal"}


def variants(case: str, seed: int) -> dict[str, tuple[Any, Any, Any, int, int]]:
    """Variant name → (train, val, test windows, past count, known count) of a case."""
    length, horizon, _ = SHAPES[case]
    if case == "etth1_ms":
        out = {}
        settings = {"target only": ([], None), "+ loads (past)": (LOADS, None),
                    "+ loads + calendar": (LOADS, ["hour", "dayofweek"])}  # fmt: skip
        for name, (past, calendar) in settings.items():
            config = ForecastDataConfig(columns=["OT"], past_covariates=past or None, calendar=calendar,
                                        horizon=horizon, batch_size=32)  # fmt: skip
            data = forecast_datasets(config, length)
            frame = data.frame
            out[name] = (data.train, data.val, data.test, len(frame.past_covariates), len(frame.known_covariates))
        return out
    frame = lagged_covariate_frame(items=8, length=1024, noise_covariate=case == "noise", seed=100 + seed)
    chosen: dict[str, TimeSeriesFrame] = {"target only": frame.select(["y"])}
    if case == "lagged":
        chosen["+ driver (known)"] = frame.select(["y", "driver"])
    else:
        chosen["+ noise (known)"] = frame.select(["y", "noise"])
    out = {}
    for name, part in chosen.items():
        split = ratio_split(part, length)
        covariates = bool(part.known_covariates)
        windows = [split.windows(s, horizon, 1, covariates) for s in ("train", "val", "test")]
        out[name] = (*windows, 0, len(part.known_covariates))
    return out


def run(
    case: str,
    adapter: str,
    seed: int,
    epochs: int,
    work: Path,
    dropouts: tuple[float, ...] = (0.0,),
    only: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Trains and tests every variant of a case (those named in `only`, when given) for one adapter and seed (a
    Moirai variant with covariates once per rate of `dropouts` as its covariate dropout)."""
    rows = []
    for name, (train, val, test, past, known) in variants(case, seed).items():
        if only and name not in only:
            continue
        for rate in dropouts if adapter == "moirai" and past + known > 0 else (0.0,):
            label = f"{name}, covariate dropout {rate:g}" if rate else name
            rows.append(train_one(case, adapter, seed, epochs, work, (label, train, val, test, past, known), rate))
    return rows


def train_one(
    case: str, adapter: str, seed: int, epochs: int, work: Path, variant: tuple[Any, ...], dropout: float
) -> dict[str, Any]:
    """Trains and tests one variant (name, train, val, test windows, past count, known count)."""
    name, train, val, test, past, known = variant
    start = time.perf_counter()
    run_dir = work / f"{case}_{adapter}_{seed}" / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    trainer = {"max_epochs": epochs, "seed": seed, "logger": "none", "progress_bar": False,
               "select_best": "val/mse", "default_root_dir": str(run_dir)}  # fmt: skip
    head = {"task": "forecast", "num_outputs": SHAPES[case][1]}
    result = finetune(model_config(adapter, case, past, known, dropout), head, train, val, test, trainer=trainer,
                      optim={"lr": 1e-3, "warmup_ratio": 0.05}, batch_size=32)  # fmt: skip
    row = {"case": case, "adapter": adapter, "variant": name, "seed": seed, "past": past, "known": known,
           "mse": result.metrics["test/mse"], "mae": result.metrics["test/mae"],
           "seconds": time.perf_counter() - start, "steps": int(result.trainer.global_step),
           "epochs": epochs, "covariate_dropout": dropout}  # fmt: skip
    logger.info("%s", row)
    return row


def summary(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(case, adapter, variant) → mean and std of MSE / MAE over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["case"], row["adapter"], row["variant"]), []).append(row)
    out = {}
    for key, group in groups.items():
        stats: dict[str, float] = {"seeds": len(group)}
        for metric in ("mse", "mae"):
            values = [r[metric] for r in group]
            stats[metric] = statistics.mean(values)
            stats[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        stats["seconds"] = statistics.mean(r["seconds"] for r in group)
        out[key] = stats
    return out


def _epochs(report: dict[str, Any], case: str) -> int:
    return next((r.get("epochs", report["epochs"]) for r in report["runs"] if r["case"] == case), report["epochs"])


def _seeds(report: dict[str, Any], case: str) -> list[int]:
    return sorted({r["seed"] for r in report["runs"] if r["case"] == case})


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Covariates: the same forecaster with and without them", "",
             f"Device: {report['device']}, torch {report['torch']}. Every model trained from scratch (best validation "
             "epoch; the epochs and seeds of each case below); test MSE / MAE of the targets in standardized units. "
             "Shapes (context, horizon, patch): "
             + ", ".join(f"{case} {SHAPES[case]}" for case in report["cases"]) + ". Epochs and seeds: "
             + ", ".join(f"{case} {_epochs(report, case)} epochs, seeds {_seeds(report, case)}"
                         for case in report["cases"]) + ".", "",
             "| case | adapter | variant | covariates (past + known) | MSE | MAE | ratio to target only | s / run |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    table = summary(report["runs"])
    for (case, adapter, variant), stats in table.items():
        base = table.get((case, adapter, "target only"), stats)
        first = next(r for r in report["runs"] if (r["case"], r["adapter"], r["variant"]) == (case, adapter, variant))
        lines.append(
            f"| {case} | {adapter} | {variant} | {first['past']} + {first['known']} | {stats['mse']:.4f} ± "
            f"{stats['mse_std']:.4f} | {stats['mae']:.4f} ± {stats['mae_std']:.4f} | {stats['mse'] / base['mse']:.2f} "
            f"| {stats['seconds']:.0f} |"
        )
    return "\n".join([*lines, "", *report.get("notes", [])]) + "\n"


def merge(paths: list[Path]) -> dict[str, Any]:
    """One report of the runs of several result JSONs (metadata and notes of the first; a (case, adapter, variant,
    seed) run that appears twice keeps its first result)."""
    reports = [json.loads(path.read_text()) for path in paths]
    merged = {**reports[0], "runs": [], "merged_from": [str(path) for path in paths]}
    seen = set()
    for report in reports:
        for row in report["runs"]:
            key = (row["case"], row["adapter"], row["variant"], row["seed"])
            if key not in seen:
                seen.add(key)
                merged["runs"].append(row)
    merged["cases"] = list(dict.fromkeys(c for r in reports for c in r["cases"]))
    merged["seeds"] = sorted({s for r in reports for s in r["seeds"]})

    def base(variant: str) -> str:
        return variant.split(", covariate dropout")[0]

    bases = list(dict.fromkeys(base(r["variant"]) for r in merged["runs"]))
    merged["runs"].sort(  # each case's variants together, a variant's dropout rates in order
        key=lambda r: (merged["cases"].index(r["case"]), r["adapter"], bases.index(base(r["variant"])),
                       r.get("covariate_dropout", 0.0), r["seed"])
    )  # fmt: skip
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--adapters", nargs="+", choices=["moirai", "timerxl"], default=["moirai", "timerxl"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="one epoch (a smoke run)")
    parser.add_argument(
        "--covariate-dropout",
        type=float,
        nargs="+",
        default=[0.0],
        help="train each Moirai covariate variant once per rate (0: no covariate dropout)",
    )
    parser.add_argument(
        "--variants", nargs="+", default=[], help="run only these variants, e.g. 'target only' '+ loads (past)'"
    )
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="combine these result JSONs, then exit")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmsdk-covariates"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "covariates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("lightning", "lightning.pytorch", "mmsdk.adapters.timeseries.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.merge:
        write_report(merge(args.merge), args.output, markdown)
        return
    epochs = 1 if args.quick else args.epochs
    report: dict[str, Any] = {
        "device": f"CPU ({platform.machine()}), {torch.get_num_threads()} threads", "torch": torch.__version__,
        "epochs": epochs, "seeds": args.seeds, "cases": args.cases, "runs": [],
    }  # fmt: skip
    for case in args.cases:
        for adapter in args.adapters:
            for seed in args.seeds:
                rates, only = tuple(args.covariate_dropout), tuple(args.variants)
                report["runs"] += run(case, adapter, seed, epochs, args.work, rates, only)
                write_report(report, args.output, markdown)
    print(markdown(report))


if __name__ == "__main__":
    main()
