"""Streaming from shards vs the in-memory dataset, per family: loader samples/s, and the share of a training step
spent waiting for data.

For each family the pretraining recipe's data section (scaled down where it generates data, see FAMILIES) is built
in memory, written to shards (`mmsdk.contracts.shards.write_shards`, timed), and read back. Both sides then go
through the same `mmsdk.training.data.DataModule`, in turn:

- loader throughput: samples/s of iterating the training loader (the recipe's batch size, 0 and 2 worker
  processes), the first batch (worker start-up) excluded;
- training: the recipe's model, masking and optimizer pretrain for `--steps` steps with 2 loader workers; a callback
  times each step (batch start → batch end) and the gap before it (the previous step's end → this start: the wait
  for the next batch plus Lightning's own loop overhead). The share is gap / (gap + step), over the steps after the
  first two.

    python benchmarks/data_throughput.py    # every family (writes benchmarks/results/data_throughput.*)
    python benchmarks/data_throughput.py --families patchtst --steps 6 --batches 10 --output /tmp/smoke

The audio family reads the speech set under ../shared/data (skipped without it).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf.measure import environment
from report_files import write_report

from mmsdk.contracts.data import build_data
from mmsdk.contracts.shards import read_shards, write_shards
from mmsdk.models.config import ModelConfig
from mmsdk.training import pretrain
from mmsdk.training.data import DataModule

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "recipes"
SHARED = ROOT.parent / "shared" / "data"
# family: (pretraining recipe, overrides of its data section: generated sets scaled to a few thousand items)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "patchtst": ("timeseries/patchtst_pretrain.yaml", {}),
    "moirai": ("timeseries/moirai_pretrain_corpus.yaml", {"corpus": {"synthetic_series": 500}}),
    "pointmae": ("pointcloud/pointmae_pretrain.yaml", {}),
    "ssast": ("audio/ssast_pretrain.yaml", {"manifest": str(SHARED / "audio" / "kws-synth" / "manifest.csv")}),
    "videomae": ("video/videomae_pretrain.yaml", {"synthetic": {"num_samples": 512}}),
    "4m": ("multimodal/4m_pretrain.yaml", {"num_samples": 2000}),
}
logger = logging.getLogger("data_throughput")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


class StepTimer(L.Callback):
    """Wall time of every training step (batch start → end) and of the gap before it (previous end → start)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.gaps: list[float] = []
        self._start = self._end = None

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()
        if self._end is not None:
            self.gaps.append(self._start - self._end)

    def on_train_batch_end(self, *args: Any) -> None:
        self._end = time.perf_counter()
        self.steps.append(self._end - self._start)


def loader_rate(dataset: Any, batch_size: int, workers: int, batches: int) -> dict[str, float]:
    """samples/s of the training loader over up to `batches` batches after the first."""
    loader = DataModule(dataset, batch_size=batch_size, num_workers=workers, seed=0).train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first chunk
    count, start = 0, time.perf_counter()
    for index, batch in enumerate(iterator):
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        count += len(inputs.series) if hasattr(inputs, "series") else _rows(inputs)
        if index + 1 >= batches:
            break
    seconds = time.perf_counter() - start
    del iterator
    return {"samples_per_s": count / seconds, "samples": count, "seconds": seconds}


def _rows(inputs: Any) -> int:
    if isinstance(inputs, dict):
        inputs = next(iter(inputs.values()))
    return int(inputs.shape[0])


def train_share(recipe: dict[str, Any], dataset: Any, batch_size: int, steps: int, root: Path) -> dict[str, float]:
    """Step time and the share of it spent waiting for data over a short pretraining run (2 loader workers)."""
    timer = StepTimer()
    trainer = {"max_steps": steps, "logger": "none", "progress_bar": False, "default_root_dir": str(root),
               "seed": 0}  # fmt: skip
    pretrain(recipe["model"], dataset, None, recipe.get("masking"), recipe.get("optim"), trainer, batch_size,
             callbacks=[timer], num_workers=2)  # fmt: skip
    step, gap = np.array(timer.steps[2:]), np.array(timer.gaps[1:])
    return {
        "ms_per_step": 1000 * float(np.median(step)),
        "ms_wait": 1000 * float(np.median(gap)),
        "wait_share": float(gap.sum() / (gap.sum() + step.sum())),
        "steps_timed": int(step.size),
    }


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def run_family(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any] | None:
    recipe_path, overrides = FAMILIES[name]
    recipe = yaml.safe_load((RECIPES / recipe_path).read_text())
    data = _merge(recipe["data"], overrides)
    if name == "ssast" and not Path(data["manifest"]).is_file():
        logger.warning("skipping ssast: %s not found", data["manifest"])
        return None
    model = ModelConfig.from_dict(recipe["model"])
    start = time.perf_counter()
    memory = build_data(data, model, "pretrain")
    built = time.perf_counter() - start
    start = time.perf_counter()
    directory = write_shards(memory, scratch / name, model, "pretrain", data, progress=False)
    written = time.perf_counter() - start
    streamed = read_shards(directory, model, "pretrain", data)
    batch = memory.batch_size
    row: dict[str, Any] = {
        "recipe": recipe_path,
        "train_samples": len(memory.train),
        "batch_size": batch,
        "build_s": built,
        "write_s": written,
        "write_samples_per_s": len(memory.train) / written,  # every split is written; the rate counts train only
        "shard_mb": _size(directory) / 2**20,
    }
    for side, dataset in (("memory", memory.train), ("shards", streamed.train)):
        for workers in (0, 2):
            row[f"{side}_loader_w{workers}"] = loader_rate(dataset, batch, workers, args.batches)
            logger.info("%s %s %d workers: %.0f samples/s", name, side, workers,
                        row[f"{side}_loader_w{workers}"]["samples_per_s"])  # fmt: skip
    for side, dataset in (("memory", memory.train), ("shards", streamed.train)):
        row[f"{side}_train"] = train_share(recipe, dataset, batch, args.steps, scratch / f"{name}_{side}_run")
        logger.info("%s %s training: %.0f ms/step, %.1f %% waiting", name, side, row[f"{side}_train"]["ms_per_step"],
                    100 * row[f"{side}_train"]["wait_share"])  # fmt: skip
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Data throughput: streaming from shards vs in memory",
        "",
        f"Machine: {report['machine']}; torch {report['torch']}, litdata {report['litdata']}; "
        f"{report['steps']} pretraining steps per side (the recipe's model), loader rates over {report['batches']} "
        "batches after the first.",
        "",
        "| family | train samples | batch | write samples/s | shards MB | loader samples/s memory (0 / 2 workers) "
        "| loader samples/s shards (0 / 2 workers) | ms/step memory | ms/step shards | waiting for data memory "
        "| waiting for data shards |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["families"].items():
        m0, m2 = row["memory_loader_w0"]["samples_per_s"], row["memory_loader_w2"]["samples_per_s"]
        s0, s2 = row["shards_loader_w0"]["samples_per_s"], row["shards_loader_w2"]["samples_per_s"]
        mt, st = row["memory_train"], row["shards_train"]
        lines.append(
            f"| {name} | {row['train_samples']} | {row['batch_size']} | {row['write_samples_per_s']:.0f} | "
            f"{row['shard_mb']:.1f} | {m0:.0f} / {m2:.0f} | {s0:.0f} / {s2:.0f} | {mt['ms_per_step']:.0f} | "
            f"{st['ms_per_step']:.0f} | {100 * mt['wait_share']:.1f} % | {100 * st['wait_share']:.1f} % |"
        )
    lines += ["", *report.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--steps", type=int, default=12, help="pretraining steps per side")
    parser.add_argument("--batches", type=int, default=40, help="loader batches timed per setting")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "data_throughput")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import litdata

    report: dict[str, Any] = {
        "machine": environment(torch.get_num_threads())["device"],
        "torch": torch.__version__,
        "litdata": litdata.__version__,
        "steps": args.steps,
        "batches": args.batches,
        "families": {},
    }
    with tempfile.TemporaryDirectory(prefix="mmsdk_shards_") as scratch:
        for name in args.families:
            row = run_family(name, args, Path(scratch))
            if row is not None:
                report["families"][name] = row
                write_report(report, args.output, markdown)
    logger.info("wrote %s.json and .md", args.output)


if __name__ == "__main__":
    main()
