"""Keyword spotting on unseen voices: SSAST and AudioMAE pretraining vs training from scratch vs a small CNN.

Data: `../shared/data/audio/kws-synth` (10 keywords × 60 clips, 1 s, `manifest.csv` with a `voice` column). The
split is group-disjoint by voice (the base voice before "+", so `en-gb+f1` and `en-gb` count as one): test voices
are never heard in training, validation voices neither (they select the epoch). Pretraining uses only the unlabelled
corpus written by `benchmarks/audio_corpus.py` (synthesized speech without the keywords, animal sounds and read
speech), never a keyword clip, so one pretraining serves every seed.

Reported, mean ± std over the seeds (each seed = another voice split and initialization), test accuracy for:
  cnn_scratch        a 4-block CNN on the same normalized fbank features (the honest small-data baseline)
  vit_scratch        the transformer from scratch
  ssast_finetune     SSAST-pretrained (bert objective, cluster masking), fully fine-tuned
  audiomae_finetune  AudioMAE-pretrained (mae objective, 80 % random masking), fully fine-tuned
  ssast_probe, audiomae_probe   linear probes of the frozen pretrained encoders
with all training labels and with 10 labels per keyword, plus the wall time of every stage.

    python benchmarks/audio_corpus.py --output ~/.cache/mmsdk/audio-corpus --clips 3000
    python benchmarks/ssast_kws.py                       # writes benchmarks/results/ssast_kws.{json,md}
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmsdk.adapters.audio.frontend import Fbank
from mmsdk.adapters.audio.spectrogram import real_lengths, spec_augment
from mmsdk.adapters.audio.stats import fbank_statistics
from mmsdk.contracts.data import build_data
from mmsdk.hub import save_pretrained
from mmsdk.hub.load import read_config
from mmsdk.models.config import ModelConfig
from mmsdk.training.api import finetune, pretrain

logger = logging.getLogger("ssast_kws")
ROOT = Path(__file__).resolve().parents[1]
KWS = ROOT.parent / "shared" / "data" / "audio" / "kws-synth" / "manifest.csv"
ENCODER = {"dim": 128, "depth": 4, "heads": 4}
SPEC = {"max_frames": 128}  # 1 s clips = 98 frames
FINETUNE_SPEC: dict[str, int] = {}  # e.g. {"stride_freq": 10, "stride_time": 10}: SSAST's overlap, 2.3x the tokens
AUGMENT = {"freq_mask": 0, "time_mask": 0, "mixup": 0.0}  # SpecAugment widths and mixup rate, for every method
PRETRAIN = {
    "ssast": ({"objective": "bert"}, {"strategy": "cluster", "ratio": 0.75}),
    "audiomae": ({"objective": "mae", "norm_targets": True}, {"strategy": "random", "ratio": 0.8}),
}
QUIET = {"progress_bar": False, "logger": "none"}


def model_config(
    adapter: str, stats: tuple[float, float], drop_path: float = 0.0, tune: bool = False
) -> dict[str, Any]:
    objective = PRETRAIN[adapter][0]
    spec = {**SPEC, "norm_mean": stats[0], "norm_std": stats[1]}
    if tune:
        spec |= {**FINETUNE_SPEC, "freq_mask": AUGMENT["freq_mask"], "time_mask": AUGMENT["time_mask"]}
    return {"adapter": adapter, "adapter_config": spec, "encoder": {**ENCODER, "drop_path": drop_path}, **objective}


def data_section(seed: int, labels_per_class: int | None, mixup: float = 0.0) -> dict[str, Any]:
    return {
        "manifest": str(KWS), "split_by": "voice", "group_before": "+", "val_fraction": 0.15, "test_fraction": 0.2,
        "labels_per_class": labels_per_class, "mixup": mixup, "batch_size": 32, "seed": seed,
    }  # fmt: skip


def run_pretraining(adapter: str, corpus: Path, stats: tuple[float, float], epochs: int, work: Path) -> dict[str, Any]:
    """Pretrains one objective on the corpus and saves the model; returns its cost and final loss terms."""
    model = model_config(adapter, stats)
    splits = build_data({"folder": str(corpus), "batch_size": 64}, ModelConfig.from_dict(model), "pretrain")
    start = time.perf_counter()
    trainer = {**QUIET, "max_epochs": epochs, "default_root_dir": str(work / f"pretrain_{adapter}")}
    result = pretrain(model, splits.train, None, PRETRAIN[adapter][1], {"lr": 1e-3, "warmup_ratio": 0.05}, trainer, 64)
    seconds = time.perf_counter() - start
    save_pretrained(result.model, work / f"pretrain_{adapter}" / "model")
    logger.info("%s pretraining: %.0f s, %s", adapter, seconds, result.metrics)
    return {"seconds": seconds, "clips": len(splits.train), "epochs": epochs, "metrics": result.metrics}


def run_transformer(
    adapter: str, pretrained: Path | None, mode: str, seed: int, labels: int | None, stats: tuple[float, float],
    epochs: int, work: Path,
) -> dict[str, Any]:  # fmt: skip
    """Fine-tunes (or probes) one transformer; returns test accuracy and wall time."""
    probe = mode == "linear_probe"
    model = model_config(adapter, stats, drop_path=0.0 if probe else 0.1, tune=not probe)
    data = data_section(seed, labels, mixup=0.0 if probe else AUGMENT["mixup"])
    splits = build_data(data, ModelConfig.from_dict(model), "finetune")
    head = {"task": "classification", "num_outputs": 10, "pooling": "mean", "dropout": 0.0 if probe else 0.1}
    optim = {"lr": 3e-3 if probe else 5e-4, "weight_decay": 0.0 if probe else 0.05, "warmup_ratio": 0.1}
    trainer = {**QUIET, "max_epochs": epochs, "seed": seed, "select_best": "val/acc", "select_mode": "max"}
    trainer["default_root_dir"] = str(work / "finetune")
    start = time.perf_counter()
    result = finetune(
        model, head, splits.train, splits.val, splits.test, pretrained=None if pretrained is None else str(pretrained),
        mode=mode, optim=optim, trainer=trainer, batch_size=32,
    )  # fmt: skip
    return {
        "test_acc": result.metrics["test/acc"],
        "seconds": time.perf_counter() - start,
        "train": splits.info["train"],
    }


class SmallCNN(nn.Module):
    """Four conv blocks (16-32-64-64 channels, BatchNorm, ReLU, 2×2 max-pool), global average pool, linear."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        blocks, width = [], 1
        for out in (16, 32, 64, 64):
            blocks += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, M) normalized fbank
        return self.classifier(self.features(x[:, None]))  # (B, classes)


def _features(dataset: Any, stats: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized fbank features (N, F, M) of a labelled dataset: the transformer's front end and statistics."""
    front = Fbank()
    xs, ys = [], []
    with torch.no_grad():
        for wave, label in dataset:
            wave = wave[None]  # (1, T)
            features, _ = front(wave, real_lengths(wave))
            xs.append((features[0] - stats[0]) / (2 * stats[1]))
            ys.append(int(label))
    return torch.stack(xs), torch.tensor(ys)


def run_cnn(seed: int, labels: int | None, stats: tuple[float, float], epochs: int) -> dict[str, Any]:
    """The CNN baseline with the same augmentation and the same epoch selection on validation voices."""
    model = model_config("ssast", stats)
    splits = build_data(data_section(seed, labels), ModelConfig.from_dict(model), "finetune")
    train, val, test = (_features(d, stats) for d in (splits.train, splits.val, splits.test))
    torch.manual_seed(seed)
    net = SmallCNN(10)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    start, best = time.perf_counter(), (-1.0, 0.0)
    frames = torch.full((len(train[0]),), train[0].shape[1])
    for _ in range(epochs):
        net.train()
        for ids in torch.randperm(len(train[0])).split(32):
            x = spec_augment(train[0][ids], frames[ids], AUGMENT["freq_mask"], AUGMENT["time_mask"])
            loss = F.cross_entropy(net(x), train[1][ids])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_acc = float((net(val[0]).argmax(-1) == val[1]).float().mean())
            if val_acc > best[0]:
                best = (val_acc, float((net(test[0]).argmax(-1) == test[1]).float().mean()))
    return {"test_acc": best[1], "seconds": time.perf_counter() - start, "train": len(train[0])}


def run_method(
    method: str, seed: int, labels: int | None, stats: tuple[float, float], epochs: int, work: Path
) -> dict[str, Any]:
    """One fine-tuning run of a method (see the module docstring)."""
    if method == "cnn_scratch":
        return run_cnn(seed, labels, stats, epochs)
    if method == "vit_scratch":
        return run_transformer("ssast", None, "full", seed, labels, stats, epochs, work)
    adapter, kind = method.split("_")
    mode = "full" if kind == "finetune" else "linear_probe"
    return run_transformer(adapter, work / f"pretrain_{adapter}" / "model", mode, seed, labels, stats, epochs, work)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """(method, labels) → mean ± std of test accuracy and the mean wall time."""
    table: dict[str, dict[str, Any]] = {}
    for key in sorted({(r["method"], r["labels"]) for r in runs}):
        accs = [r["test_acc"] for r in runs if (r["method"], r["labels"]) == key]
        secs = [r["seconds"] for r in runs if (r["method"], r["labels"]) == key]
        table[f"{key[0]}|{key[1]}"] = {
            "mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "runs": accs, "seconds": statistics.mean(secs),
        }  # fmt: skip
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Keyword spotting on unseen voices (kws-synth, split by voice)", "",
        f"Device: {report['device']}. Seeds: {report['seeds']}. Encoder {ENCODER}. Pretraining corpus: "
        f"{report['pretraining']['ssast']['clips']} unlabelled clips (no keyword clip).", "",
        f"Fine-tuning: {FINETUNE_SPEC}, augmentation {AUGMENT}, epoch chosen on the validation voices.", "",
        "| method | all labels | 10 labels / keyword | fine-tune time (all / 10) |", "|---|---|---|---|",
    ]  # fmt: skip
    table = report["summary"]
    for method in (
        "cnn_scratch",
        "vit_scratch",
        "ssast_finetune",
        "audiomae_finetune",
        "ssast_probe",
        "audiomae_probe",
    ):
        cells = [table.get(f"{method}|{labels}") for labels in ("all", "10")]
        acc = [f"{c['mean']:.3f} ± {c['std']:.3f}" if c else "–" for c in cells]
        cost = " / ".join(f"{c['seconds']:.0f} s" if c else "–" for c in cells)
        lines.append(f"| {method} | {acc[0]} | {acc[1]} | {cost} |")
    lines += ["", "Pretraining cost:"]
    for name, info in report["pretraining"].items():
        lines.append(f"- {name}: {info['seconds']:.0f} s for {info['epochs']} epochs over {info['clips']} clips")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path.home() / ".cache" / "mmsdk" / "audio-corpus")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmsdk-ssast-kws"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=50)
    parser.add_argument("--few-epochs", type=int, default=100, help="epochs with 10 labels per keyword")
    parser.add_argument("--reuse-pretrained", action="store_true", help="reuse the models in --work")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ssast_kws")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("lightning", "lightning.pytorch", "mmsdk.adapters.audio.recipe_data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not KWS.is_file() or not (args.corpus / "manifest.csv").is_file():
        raise SystemExit(f"needs {KWS} and a corpus at {args.corpus} (run benchmarks/audio_corpus.py first)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    saved = args.work / "pretrain_ssast" / "model"
    if args.reuse_pretrained and saved.is_dir():  # the statistics the pretrained models normalize with
        spec = read_config(saved)["model"]["modalities"]["ssast"]["adapter_config"]
        stats = (spec["norm_mean"], spec["norm_std"])
    else:
        clips = build_data(
            {"folder": str(args.corpus)}, ModelConfig.from_dict(model_config("ssast", (0.0, 1.0))), "pretrain"
        )
        stats = fbank_statistics(clips.train, max_clips=1000)
    report: dict[str, Any] = {"device": f"CPU, {torch.get_num_threads()} threads", "seeds": args.seeds,
                              "norm_stats": stats, "pretraining": {}, "runs": []}  # fmt: skip
    for adapter in PRETRAIN:
        if args.reuse_pretrained and (args.work / f"pretrain_{adapter}" / "model").is_dir():
            report["pretraining"][adapter] = json.loads((args.work / f"pretrain_{adapter}" / "cost.json").read_text())
            continue
        report["pretraining"][adapter] = run_pretraining(adapter, args.corpus, stats, args.pretrain_epochs, args.work)
        (args.work / f"pretrain_{adapter}" / "cost.json").write_text(json.dumps(report["pretraining"][adapter]))
    methods = ["cnn_scratch", "vit_scratch", *(f"{a}_{kind}" for a in PRETRAIN for kind in ("finetune", "probe"))]
    for seed in args.seeds:
        for labels in (None, 10):
            epochs = args.finetune_epochs if labels is None else args.few_epochs
            for method in methods:
                result = run_method(method, seed, labels, stats, epochs, args.work)
                run = {"method": method, "labels": "all" if labels is None else str(labels), "seed": seed, **result}
                logger.info("%s", run)
                report["runs"].append(run)
                report["summary"] = summarize(report["runs"])
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
                args.output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
