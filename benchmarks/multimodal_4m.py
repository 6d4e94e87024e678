"""4M-style multimodal pretraining on the bouncing-ball scene: per-direction cross-modal errors against the training
mean and against a model of the target modality alone.

One 4m model is pretrained over the scene's three views (video, sound, height + accelerometer series; the demo's
model, `mmsdk.demos.multimodal.model_config`, at width 96 with 1-frame tubes: 168 tokens per scene, budgets of 96
inputs from one modality per scene (input_alpha 0) and 64 targets); for each modality, a model of that modality alone is
pretrained with the same encoder, decoder and steps. Then, on unseen scenes, for every direction A→B and one seeded
mask per scene that gives 25 % of B's tokens and hides the other 75 %, the MSE (in B's token units) on the hidden
75 % of:

  training mean      every token predicted as the training set's mean token at its place
  B alone            the model of B alone, from the given 25 % of B
  4m: A              the 4m model from all of A (nothing of B)
  4m: A + 25 % B     the 4m model from all of A and the given 25 % of B

so "4m: A" below the mean says that A predicts B, and "4m: A + 25 % B" below "B alone" says that A adds to what B's
own visible tokens give. The error of predicting all of B from A (and from both other modalities) is reported too,
beside the oracle floor: the best possible prediction from what A carries of the scene's hidden state
(`mmsdk.adapters.multimodal.oracle`), which tells a model that has learnt all it can from one that has not. Wall
times of every stage are recorded; one seed (the scene is synthetic, the test set 512 scenes).

    python benchmarks/multimodal_4m.py                 # writes benchmarks/results/multimodal_4m.{json,md}
    python benchmarks/multimodal_4m.py --reuse         # evaluates the models an earlier run saved
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mmsdk.adapters.multimodal import BouncingScene, cross_modal_errors, mean_tokens, oracle_errors, target_tokens
from mmsdk.adapters.multimodal.recipe_data import SceneData
from mmsdk.demos.multimodal import DemoConfig, model_config
from mmsdk.hub import from_pretrained, save_pretrained
from mmsdk.training.api import pretrain

logger = logging.getLogger("multimodal_4m_benchmark")
ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress_bar": False, "logger": "none"}
MODALITIES = ("series", "audio", "video")
DIRECTIONS = [(a, b) for b in MODALITIES for a in MODALITIES if a != b]
WHOLE = [((a,), b) for a, b in DIRECTIONS] + [(tuple(m for m in MODALITIES if m != b), b) for b in MODALITIES]
"""Directions scored on the whole target: each single source, then both other modalities together."""
KNOWN = 0.25
"""Share of the target's tokens given in the partial-target comparisons."""


def alone_config(full: dict[str, Any], name: str, tokens: int) -> dict[str, Any]:
    """The model of one modality: the same adapter, encoder and decoder, budgets of 25 % in and 75 % out."""
    inputs = max(1, round(KNOWN * tokens))
    return {
        **full,
        "modalities": {name: full["modalities"][name]},
        "objective_config": {"input_tokens": inputs, "target_tokens": tokens - inputs},
    }


def known_maps(n: int, tokens: int, seed: int) -> torch.Tensor:
    """(n, tokens) bool: a seeded random 25 % of each scene's target tokens."""
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, tokens, generator=g).argsort(dim=1)
    return order < max(1, round(KNOWN * tokens))


def hidden_mse(pred: torch.Tensor, truth: torch.Tensor, hidden: torch.Tensor) -> tuple[float, int]:
    """Sum of squared errors over the hidden tokens' values, and the count of values."""
    weight = hidden.unsqueeze(-1).expand_as(truth).float()
    return float((((pred - truth) ** 2) * weight).sum()), int(weight.sum())


@torch.no_grad()
def partial_errors(models: dict[str, Any], full: Any, test: BouncingScene, means: dict[str, torch.Tensor]) -> list:
    """The four comparisons on the hidden 75 % of each direction's target."""
    rows = []
    batches = list(DataLoader(test, batch_size=64, shuffle=False))
    for source, target in DIRECTIONS:
        sums = {"training mean": [0.0, 0], f"{target} alone": [0.0, 0], "4m: source": [0.0, 0]}
        sums["4m: source + 25% target"] = [0.0, 0]
        start = 0
        for inputs, _ in batches:
            truth, real = target_tokens(full, inputs, target)
            known = known_maps(len(truth), truth.shape[1], seed=1000 + start)
            hidden = ~known & real
            start += len(truth)
            preds = {
                "training mean": means[target].expand_as(truth),
                f"{target} alone": models[target].predict(
                    {target: inputs[target]}, [target], decode=False, known={target: known}
                )[target],
                "4m: source": full.predict({source: inputs[source]}, [target], decode=False)[target],
                "4m: source + 25% target": full.predict(
                    {source: inputs[source], target: inputs[target]}, [target], decode=False, known={target: known}
                )[target],
            }
            for name, pred in preds.items():
                error, count = hidden_mse(pred, truth, hidden)
                sums[name][0] += error
                sums[name][1] += count
        row = {"direction": f"{source}→{target}", **{k: v[0] / max(v[1], 1) for k, v in sums.items()}}
        rows.append(row)
        logger.info("%s", row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="pretraining steps of every model")
    parser.add_argument("--train", type=int, default=8000, help="training scenes")
    parser.add_argument("--test", type=int, default=512, help="test scenes")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "multimodal_4m")
    parser.add_argument("--models", type=Path, default=Path("/tmp/mmsdk_4m_benchmark/models"), help="saved models")
    parser.add_argument("--reuse", action="store_true", help="load the models saved by an earlier run")
    parser.add_argument("--draws", type=int, default=8, help="Monte Carlo re-draws per scene of the oracle floor")
    parser.add_argument(
        "--input-alpha", type=float, nargs="+", default=[0.0], help="the 4m model's input α (several: a mixture)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(0)
    cfg = DemoConfig(
        dim=96, tubelet=1, input_tokens=96, target_tokens=64, pretrain_steps=args.steps, num_samples=args.train,
        progress_bar=False,
    )  # fmt: skip
    full_config = model_config(cfg)
    alpha = args.input_alpha[0] if len(args.input_alpha) == 1 else list(args.input_alpha)
    full_config["objective_config"]["input_alpha"] = alpha
    train = BouncingScene(args.train, seed=0, pairs=True)
    test = BouncingScene(args.test, seed=1, pairs=True)
    trainer = {"max_steps": args.steps, "default_root_dir": "/tmp/mmsdk_4m_benchmark", **QUIET}
    optim = {"lr": 1e-3, "weight_decay": 0.05, "warmup_ratio": 0.05}  # 2e-3 at width 64 (the demo)
    earlier = args.output.with_suffix(".json")  # with --reuse, the loaded models keep the wall times that trained them
    timings = json.loads(earlier.read_text()).get("timings_s", {}) if args.reuse and earlier.is_file() else {}

    def trained(name: str, config: dict[str, Any], data: Any) -> Any:
        """A model pretrained on `data` (or, with --reuse, the one an earlier run saved), timed."""
        path = args.models / name
        if args.reuse and (path / "config.json").is_file():
            return from_pretrained(path).eval()
        t0 = time.perf_counter()
        model = pretrain(config, data, optim=optim, trainer=trainer, batch_size=cfg.batch_size).model.eval()
        timings[f"pretrain_{name}_s"] = time.perf_counter() - t0
        save_pretrained(model, path)
        return model

    full = trained("4m" if alpha == 0 else "4m_alpha" + "-".join(map(str, args.input_alpha)), full_config, train)
    tokens = {name: part.num_tokens for name, part in full.tokenize(next(iter(DataLoader(test)))[0]).parts.items()}
    alone = {}
    for name in MODALITIES:  # each on that modality's view only
        alone[name] = trained(f"{name}_alone", alone_config(full_config, name, tokens[name]), SceneData(train, [name]))

    t0 = time.perf_counter()
    means = {m: mean_tokens(full, BouncingScene(1024, seed=0, pairs=True), m) for m in MODALITIES}
    whole = [e.to_dict() for e in cross_modal_errors(full, test, WHOLE, means)]
    for row, floor in zip(whole, oracle_errors(full, test, WHOLE, means, draws=args.draws)):
        row.update(floor=floor.mse, floor_ratio=floor.ratio)
    partial = partial_errors(alone, full, test, means)
    timings["evaluate_s"] = time.perf_counter() - t0
    report = {
        "benchmark": "multimodal_4m",
        "device": f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "config": {
            "steps": args.steps,
            "train": args.train,
            "test": args.test,
            "draws": args.draws,
            "model": full_config,
        },
        "tokens": tokens,
        "whole_target": whole,
        "hidden_75": partial,
        "timings_s": timings,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    args.output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    c = report["config"]
    lines = [
        "# 4m multimodal pretraining on the bouncing-ball scene",
        "",
        f"Device: {report['device']}, torch {report['torch']}. {c['steps']} pretraining steps per model, "
        f"4m input α {c['model']['objective_config']['input_alpha']} (0: one modality in per scene; a list: a "
        "mixture), "
        f"{c['train']} training scenes, {c['test']} test scenes; tokens per scene: "
        + ", ".join(f"{k} {v}" for k, v in report["tokens"].items())
        + ". MSE in each target's token units (timerxl patches, audiomae log-mel patches normalized by the dataset "
        "statistics, videomae tube pixels).",
        "",
        "## The whole target from the other modalities",
        "",
        "The oracle floor is the error of the best possible prediction from what the sources carry: the mean of "
        f"the target's tokens over {c['draws']} re-draws of each scene that keep the hidden-state fields the sources "
        "show and draw the rest afresh (`mmsdk.adapters.multimodal.oracle`; the series carries no ball size or "
        "place, the sound no place). No model of those sources can go below it.",
        "",
        "| direction | 4m | oracle floor | training mean | 4m / mean | floor / mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["whole_target"]:
        lines.append(
            f"| {row['direction']} | {row['mse']:.4f} | {row['floor']:.4f} | {row['mean_mse']:.4f} | "
            f"{row['ratio']:.2f} | {row['floor_ratio']:.2f} |"
        )
    lines += [
        "",
        "## The hidden 75 % of the target (25 % of its tokens given, seeded per scene)",
        "",
        "| direction | training mean | target alone (25 %) | 4m: source | 4m: source + 25 % target |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in report["hidden_75"]:
        target = row["direction"].split("→")[1]
        values = [row["training mean"], row[f"{target} alone"], row["4m: source"], row["4m: source + 25% target"]]
        lines.append(f"| {row['direction']} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    timings = ", ".join(f"{k} {v:.0f}" for k, v in report["timings_s"].items())
    lines += ["", f"Wall times (s): {timings}.", ""]
    notes = report.get("notes", [])  # written by hand beside a run: what the numbers alone do not say
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
