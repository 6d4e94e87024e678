"""Deployment benchmark: each family's trained model in eager torch, ONNX Runtime fp32 and int8 (dynamic, static QDQ).

For every family a task model is trained (from scratch, a few hundred steps, on the data its demo uses) so its
weights and activations are realistic, exported with `to_onnx` (verified), and converted with
`mmsdk.export.quantization.quantize` ("dynamic" and "static" with calibration batches drawn from the training
split). Then, in one process:

- latency at batch 1 and batch 32 of every side, median of `--repeats` timed calls, the sides alternated in blocks
  (5 eager calls, 5 fp32, 5 int8, ..., again) so that machine drift hits them alike, each block after 3 untimed
  calls (a side's worker threads keep spinning for a while after it returns and would slow the next side);
- throughput (samples/s at the median), file size;
- the task metric on the held-out split for every side (MSE for forecasts, accuracy for classifiers) and the change
  against ONNX Runtime fp32: relative for MSE, absolute points for accuracy.

Targets (the export issue, CPU): ONNX Runtime fp32 >= 2x eager at every batch size; int8 >= 1.5x ONNX Runtime fp32
at batch 1 and 32 with the metric within 1 % (relative MSE, absolute accuracy points). The tables mark each.

    python benchmarks/export.py                          # every family; ~10 min on 2 cores
    python benchmarks/export.py --families timeseries --steps 100

Writes `benchmarks/results/export.json` and `export.md`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from report_files import write_report

from mmsdk.export.onnx import to_onnx
from mmsdk.export.quantization import quantize, saturates_full_range
from mmsdk.export.runtime import OnnxModel
from mmsdk.training.api import TrainerConfig, finetune
from mmsdk.training.optim import OptimConfig

logger = logging.getLogger("benchmarks.export")
ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 32)
CALIBRATION_BATCHES = 16
BLOCK = 5  # timed calls per side in a row
WARMUP_CALLS = 3  # untimed calls before each block
TARGET_ORT = 2.0  # ONNX Runtime fp32 speed-up over eager
TARGET_INT8 = 1.5  # int8 speed-up over ONNX Runtime fp32
TARGET_METRIC = 0.01  # relative MSE change, or accuracy points / 100


@dataclass
class Case:
    """One family's trained model and its data, as numpy arrays of raw inputs (batch first)."""

    name: str
    description: str
    model: torch.nn.Module
    calibration: np.ndarray  # (N, ...) training inputs for static int8
    test_inputs: np.ndarray  # (M, ...) held-out inputs
    test_targets: np.ndarray  # (M, H, C) forecasts or (M,) class indices
    metric: str  # "mse" | "accuracy"
    train_seconds: float


def _train(model_cfg: dict[str, Any], head: dict[str, Any], train: Any, steps: int, lr: float, work: Path) -> Any:
    trainer = TrainerConfig(max_steps=steps, progress_bar=False, logger="none", default_root_dir=str(work), seed=0)
    result = finetune(model_cfg, head, train, optim=OptimConfig(lr=lr, weight_decay=0.05, warmup_ratio=0.1),
                      trainer=trainer, batch_size=32)  # fmt: skip
    return result.model.eval()


def _windows(dataset: Any, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    step = 1 if limit is None else max(1, len(dataset) // limit)
    pairs = [dataset[i] for i in range(0, len(dataset), step)][:limit]
    return np.stack([p[0].numpy() for p in pairs]), np.stack([p[1].numpy() for p in pairs])


def timeseries_case(steps: int, work: Path, size: str) -> Case:
    """PatchTST forecasting ETTh1 96 steps ahead: the demo's model (width 64, 2 blocks) or the recipe's (128, 3)."""
    from mmsdk.adapters.timeseries.data import ForecastDataConfig, forecast_datasets

    data = forecast_datasets(ForecastDataConfig(horizon=96, batch_size=32), 336)
    channels = len(data.columns)
    if size == "demo":
        adapter = {"context_length": 336, "num_channels": channels, "patch_len": 16, "stride": 16}
        adapter["padding_patch"] = "none"
        encoder = {"dim": 64, "depth": 2, "heads": 4}
    else:
        adapter = {"context_length": 336, "num_channels": channels, "patch_len": 16, "stride": 8, "revin": True}
        encoder = {"dim": 128, "depth": 3, "heads": 16}
    model_cfg = {"adapter": "patchtst", "adapter_config": adapter, "encoder": encoder, "objective": "bert"}
    start = time.perf_counter()
    model = _train(model_cfg, {"task": "forecast", "num_outputs": 96}, data.train, steps, 5e-4, work / f"ts_{size}")
    seconds = time.perf_counter() - start
    calibration, _ = _windows(data.train, 256)
    inputs, targets = _windows(data.test, 512)
    described = f"PatchTST {size}: width {encoder['dim']}, {encoder['depth']} blocks, context 336 x {channels}"
    return Case(f"timeseries_{size}", described, model, calibration, inputs, targets, "mse", seconds)


def pointcloud_case(steps: int, work: Path) -> Case:
    """Point-MAE classifying the bundled synthetic shapes (the demo's model: 256 points, 32 groups, width 96)."""
    from mmsdk.adapters.pointcloud.data import Augment
    from mmsdk.adapters.pointcloud.resampled import ResampledClouds
    from mmsdk.demos.pointcloud import DemoConfig, _load_shapes, _model_config

    cfg = DemoConfig()
    data = _load_shapes(cfg)
    train = ResampledClouds(data["train_dense"], data["train_labels"], cfg.num_points, Augment())
    head = {"task": "classification", "num_outputs": len(data["class_names"])}
    start = time.perf_counter()
    model = _train(_model_config(cfg), head, train, steps, 1e-3, work / "pointcloud")
    seconds = time.perf_counter() - start
    calibration = data["train_dense"][:, : cfg.num_points].numpy()
    inputs, targets = data["test_plain"].numpy(), data["test_labels"].numpy()
    described = f"Point-MAE: {cfg.num_points} points, {cfg.num_groups} groups, width {cfg.dim}, {cfg.depth} blocks"
    return Case("pointcloud", described, model, calibration, inputs, targets, "accuracy", seconds)


def audio_case(steps: int, work: Path) -> Case:
    """SSAST classifying the demo's synthetic sound events from raw 16 kHz waveform (front end inside the graph)."""
    from mmsdk.adapters.audio.frontend import FbankConfig
    from mmsdk.adapters.audio.stats import fbank_statistics
    from mmsdk.demos.audio import SAMPLE_RATE, DemoConfig, _load_clips, _model_config

    cfg = DemoConfig()
    data = _load_clips(cfg, work / "audio_clips")
    norm = fbank_statistics(data["train_waves"], FbankConfig(sample_rate=SAMPLE_RATE, num_mel_bins=cfg.mel_bins))
    head = {"task": "classification", "num_outputs": len(data["class_names"])}
    train = (data["train_waves"], data["train_labels"])
    start = time.perf_counter()
    model = _train(_model_config(cfg, norm), head, train, steps, 1e-3, work / "audio")
    seconds = time.perf_counter() - start
    inputs, targets = data["test_waves"].numpy(), data["test_labels"].numpy()
    described = f"SSAST: 1 s waveform, {cfg.mel_bins} mel bins, {cfg.patch}x{cfg.patch} patches, width {cfg.dim}"
    return Case("audio", described, model, data["train_waves"].numpy(), inputs, targets, "accuracy", seconds)


def video_case(steps: int, work: Path) -> Case:
    """VideoMAE classifying the demo's moving shapes from raw RGB + depth frames (16 x 32 x 32, 4 channels)."""
    from mmsdk.demos.video import DemoConfig, _channel_statistics, _load_clips, _model_config

    cfg = DemoConfig()
    data = _load_clips(cfg)
    model_cfg = _model_config(cfg, _channel_statistics(data["train_clips"]))
    head = {"task": "classification", "num_outputs": len(data["class_names"])}
    start = time.perf_counter()
    model = _train(model_cfg, head, (data["train_clips"], data["train_labels"]), steps, 1e-3, work / "video")
    seconds = time.perf_counter() - start
    inputs, targets = data["test_clips"].numpy(), data["test_labels"].numpy()
    described = f"VideoMAE: {cfg.num_frames} x {cfg.frame_size} x {cfg.frame_size} x 4, width {cfg.dim}"
    return Case("video", described, model, data["train_clips"].numpy(), inputs, targets, "accuracy", seconds)


FAMILIES: dict[str, Callable[[int, Path], Case]] = {
    "timeseries_demo": lambda steps, work: timeseries_case(steps, work, "demo"),
    "timeseries_recipe": lambda steps, work: timeseries_case(steps, work, "recipe"),
    "pointcloud": pointcloud_case,
    "audio": audio_case,
    "video": video_case,
}


def _metric(metric: str, predict: Callable[[np.ndarray], np.ndarray], case: Case) -> float:
    outputs = np.concatenate([predict(case.test_inputs[i : i + 32]) for i in range(0, len(case.test_inputs), 32)])
    if metric == "mse":
        return float(np.mean((outputs.astype(np.float64) - case.test_targets) ** 2))
    return float(np.mean(outputs.argmax(-1) == case.test_targets))


def _change(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference`: relative MSE increase, or accuracy lost (as a fraction)."""
    return (value - reference) / reference if metric == "mse" else reference - value


def _alternating_latency(sides: dict[str, Callable[[], Any]], rounds: int, block: int) -> dict[str, float]:
    """Median ms of each side, measured in rounds of blocks (A×block B×block C×block, A×block ...): the first calls
    of a block are untimed, so that one side's idle worker threads (still spinning after its last call) never steal
    the cores from the next side's timed calls."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            for _ in range(WARMUP_CALLS):
                run()
            for _ in range(block):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def op_profile(path: Path, x: np.ndarray, threads: int, work: Path, runs: int = 10) -> dict[str, Any]:
    """Where ONNX Runtime spends its time on `x`: the share of each op type, and of the matmuls with a constant
    weight (the only work int8 speeds up here, so 1 / (1 - share) bounds any int8 speed-up)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    weight_matmuls = {n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(work / f"profile_{path.stem}")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    weight_time = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        by_op[event["args"]["op_name"]] = by_op.get(event["args"]["op_name"], 0.0) + event["dur"]
        node = event["name"].removesuffix("_kernel_time").split("/")[0]
        weight_time += event["dur"] if node in weight_matmuls else 0.0
    total = sum(by_op.values()) or 1.0
    top = sorted(by_op.items(), key=lambda item: -item[1])[:5]
    share = weight_time / total
    return {
        "top_ops": {op: dur / total for op, dur in top},
        "weight_matmul_share": share,
        "int8_speedup_bound": 1.0 / max(1e-9, 1.0 - share),
    }


def measure(case: Case, work: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Exports and converts one case, then times and scores every side."""
    fp32 = work / f"{case.name}.onnx"
    exported = to_onnx(case.model, fp32)
    files = {
        "ort_fp32": fp32,
        "ort_fused": to_onnx(case.model, work / f"{case.name}.fused.onnx", optimize="onnxruntime").path,
        "int8_dynamic": quantize(fp32, work / f"{case.name}.int8-dynamic.onnx", "dynamic"),
        "int8_static": quantize(
            fp32, work / f"{case.name}.int8-static.onnx", "static", case.calibration,
            calibration_batches=CALIBRATION_BATCHES,
        ),
    }  # fmt: skip
    sessions = {name: OnnxModel(path, threads=threads) for name, path in files.items()}

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return case.model(torch.from_numpy(x)).numpy()

    predict: dict[str, Callable[[np.ndarray], np.ndarray]] = {"eager": eager, **sessions}
    metrics = {name: _metric(case.metric, run, case) for name, run in predict.items()}
    latency: dict[str, dict[str, float]] = {}
    for batch in BATCHES:
        x = case.test_inputs[np.arange(batch) % len(case.test_inputs)]
        sides = {name: (lambda run=run, x=x: run(x)) for name, run in predict.items()}
        latency[str(batch)] = _alternating_latency(sides, rounds=max(1, repeats // BLOCK), block=BLOCK)
    result = {
        "name": case.name,
        "description": case.description,
        "metric": case.metric,
        "train_seconds": case.train_seconds,
        "export_max_abs_error": exported.max_abs_error,
        "bytes": {name: path.stat().st_size for name, path in files.items()},
        "metrics": metrics,
        "metric_change": {name: _change(case.metric, metrics["ort_fp32"], value) for name, value in metrics.items()},
        "latency_ms": latency,
        "throughput": {b: {n: int(b) / (ms / 1e3) for n, ms in sides.items()} for b, sides in latency.items()},
    }
    result["fp32_profile_b32"] = op_profile(
        fp32, case.test_inputs[np.arange(32) % len(case.test_inputs)], threads, work
    )
    result["checks"] = _checks(result)
    logger.info("%s: %s", case.name, json.dumps({"latency_ms": latency, "metrics": metrics}, default=float))
    return result


def _checks(result: dict[str, Any]) -> dict[str, bool]:
    """Each target of the issue, pass or fail."""
    checks: dict[str, bool] = {}
    for batch, ms in result["latency_ms"].items():
        checks[f"ort_fp32_{TARGET_ORT:g}x_eager_b{batch}"] = ms["eager"] / ms["ort_fp32"] >= TARGET_ORT
        for side in ("int8_dynamic", "int8_static"):
            checks[f"{side}_{TARGET_INT8:g}x_fp32_b{batch}"] = ms["ort_fp32"] / ms[side] >= TARGET_INT8
    for side in ("int8_dynamic", "int8_static"):
        checks[f"{side}_metric_within_1pct"] = result["metric_change"][side] <= TARGET_METRIC
    return checks


def _device() -> str:
    """The CPU's model, its vector ISA as torch sees it, whether ONNX Runtime's int8 kernels saturate there without
    7-bit weights (no VNNI), and the core count."""
    model = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    vnni = ", no VNNI" if saturates_full_range() else ""
    return f"CPU ({model}, {torch.backends.cpu.get_cpu_capability()}{vnni}), {os.cpu_count()} cores"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Export: eager torch vs ONNX Runtime fp32 vs int8, per family (CPU)", "",
        f"Device: {report['device']}; torch {report['versions']['torch']}, onnxruntime "
        f"{report['versions']['onnxruntime']}; {report['threads']} threads on both sides; median of "
        f"{report['repeats']} calls, sides alternated in blocks of {BLOCK} (each after {WARMUP_CALLS} untimed "
        "calls).", "",
        "Latency in ms (speed-up: fp32 over eager, int8 over fp32). Metric change vs fp32: relative for MSE, "
        "points for accuracy; int8 = 7-bit weights (the default `reduce_range`), per channel; int8 static = QDQ, "
        "calibrated on training batches.", "",
        "ORT fused = `to_onnx(..., optimize=\"onnxruntime\")` (attention and layer-norm fusions), x vs ORT fp32.", "",
        "| family | batch | eager | ORT fp32 | ORT fused | int8 dynamic | int8 static |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in report["results"]:
        for batch, ms in r["latency_ms"].items():
            fp32 = ms["ort_fp32"]
            lines.append(
                f"| {r['name']} | {batch} | {ms['eager']:.2f} | {fp32:.2f} (x{ms['eager'] / fp32:.2f}) | "
                f"{ms['ort_fused']:.2f} (x{fp32 / ms['ort_fused']:.2f}) | "
                f"{ms['int8_dynamic']:.2f} (x{fp32 / ms['int8_dynamic']:.2f}) | "
                f"{ms['int8_static']:.2f} (x{fp32 / ms['int8_static']:.2f}) |"
            )
    lines += ["", "| family | metric | eager | ORT fp32 | int8 dynamic | int8 static | size fp32 / dyn / static |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["results"]:
        m, c, size = r["metrics"], r["metric_change"], r["bytes"]
        plain = ("eager", "ort_fp32", "ort_fused")
        cell = {name: f"{m[name]:.4f}" + ("" if name in plain else f" ({c[name] * 100:+.2f} %)") for name in m}
        kb = " / ".join(f"{size[n] / 1024:.0f} KB" for n in ("ort_fp32", "int8_dynamic", "int8_static"))
        lines.append(f"| {r['name']} | {r['metric']} | {cell['eager']} | {cell['ort_fp32']} | "
                     f"{cell['int8_dynamic']} | {cell['int8_static']} | {kb} |")  # fmt: skip
    lines += ["", "Where ONNX Runtime fp32 spends its time at batch 32 (op profile): the matmuls with weights are what",
              "int8 speeds up, so even free int8 matmuls could not beat 1 / (1 - their share).", "",
              "| family | weight matmuls | int8 bound | top ops |", "|---|---|---|---|"]  # fmt: skip
    for r in report["results"]:
        prof = r["fp32_profile_b32"]
        ops = ", ".join(f"{op} {share * 100:.0f} %" for op, share in prof["top_ops"].items())
        lines.append(
            f"| {r['name']} | {prof['weight_matmul_share'] * 100:.0f} % | x{prof['int8_speedup_bound']:.2f} | {ops} |"
        )
    lines += ["", "Models:"] + [f"- {r['name']}: {r['description']} (trained {r['train_seconds']:.0f} s)"
                                for r in report["results"]]  # fmt: skip
    lines += ["", f"Targets (yes = met): ORT fp32 >= {TARGET_ORT:g}x eager; int8 >= {TARGET_INT8:g}x ORT fp32; metric "
              f"change <= {TARGET_METRIC * 100:g} %.", ""]  # fmt: skip
    if report["results"]:
        names = list(report["results"][0]["checks"])
        lines += ["| family | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in report["results"]:
            lines.append(f"| {r['name']} | " + " | ".join("yes" if r["checks"][n] else "**no**" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--steps", type=int, default=300, help="training steps per family")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "export")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("lightning", "lightning.pytorch", "mmsdk", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "device": _device(),
        "threads": args.threads, "repeats": args.repeats, "steps": args.steps,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__}, "results": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mmsdk-export-bench-") as tmp:
        for family in args.families:
            case = FAMILIES[family](args.steps, Path(tmp))
            report["results"].append(measure(case, Path(tmp), args.threads, args.repeats))
            write_report(report, args.output, markdown)
    print(markdown(report))


if __name__ == "__main__":
    main()
