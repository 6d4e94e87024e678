"""What a lower-precision copy of an exported model cost: :func:`precision_report` compares a converted file (from
:func:`~mmsdk.export.quantization.quantize` or :func:`~mmsdk.export.quantization.to_fp16`) with its float32
reference on held-out data — sizes, latency at batch 1 and 32, every graph output's difference and the change in the
task's metric (a quantile forecaster's weighted quantile loss too); with `max_metric_change` set, a larger change of
any scored output raises :class:`PrecisionLossError`. Needs only onnx, onnxruntime and numpy (no torch).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from mmsdk.export.runtime import OnnxModel

__all__ = ["PRECISION_KEY", "PrecisionLossError", "PrecisionReport", "precision_report", "weighted_quantile_loss"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Inputs = np.ndarray | Mapping[str, np.ndarray]
"""One array (a single-input model) or input name → array."""
Metric = Literal["auto", "mse", "mae", "accuracy", "max_abs"]
PRECISION_KEY = "mmsdk.precision"
"""The metadata entry a converted file's precision is written under ("int8-dynamic", "int8-static", "fp16")."""
_LATENCY_BATCHES = (1, 32)


class PrecisionLossError(ValueError):
    """A converted model's metric changed by more than the allowed bound.

    Attributes:
        report: the full :class:`PrecisionReport` (also written as JSON next to the converted model).
    """

    def __init__(self, message: str, report: PrecisionReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PrecisionReport:
    """What a conversion changed, from :func:`precision_report`; `asdict`/`to_json` serialize it.

    Attributes:
        reference: the float32 file.
        converted: the converted file.
        precision: the converted file's `mmsdk.precision` entry ("int8-dynamic", "int8-static", "fp16"), or "".
        reference_bytes: size of the reference file.
        converted_bytes: size of the converted file.
        latency_ms: "reference"/"converted" → batch size (as a string) → median latency in ms.
        metric: the metric compared: "mse" and "mae" (relative change), "accuracy" (absolute change in points) or
            "max_abs" (the max absolute output difference itself).
        reference_value: the metric of the reference (0 for "max_abs").
        converted_value: the metric of the converted model.
        change: how much worse the converted model is: relative increase of MSE/MAE, accuracy points lost, or the
            max absolute output difference.
        max_abs_diff: max |reference − converted| over all outputs.
        mean_abs_diff: mean |reference − converted| over all outputs' values.
        samples: held-out samples compared.
        max_metric_change: the bound `change` was held to (None: not checked), and every scored output's change.
        json_path: where the report was written.
        outputs: graph output name → its `max_abs_diff` and `mean_abs_diff`; a forecaster's "quantiles" output, given
            targets, also its weighted quantile loss: `metric` "wql", `reference_value`, `converted_value` and
            `change` (relative increase), held to the same bound. The first output's metric is `metric`/`change`.
    """

    reference: str
    converted: str
    precision: str
    reference_bytes: int
    converted_bytes: int
    latency_ms: dict[str, dict[str, float]]
    metric: str
    reference_value: float
    converted_value: float
    change: float
    max_abs_diff: float
    mean_abs_diff: float
    samples: int
    max_metric_change: float | None = None
    json_path: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """Converted size / reference size."""
        return self.converted_bytes / self.reference_bytes

    def latency_ratio(self, batch_size: int) -> float:
        """Converted latency / reference latency at `batch_size`."""
        key = str(batch_size)
        return self.latency_ms["converted"][key] / self.latency_ms["reference"][key]

    def to_json(self) -> str:
        """The report as one JSON object."""
        return json.dumps(asdict(self), sort_keys=True)

    def summary(self) -> str:
        """One line: precision, size ratio, latency ratios and the metric change (of every scored output)."""
        latency = ", ".join(f"batch {b} x{self.latency_ratio(int(b)):.2f}" for b in self.latency_ms["reference"])
        scored = "".join(
            f", {name} {o['metric']} {o['reference_value']:.4g} -> {o['converted_value']:.4g} (change "
            f"{o['change']:.4g})"
            for name, o in self.outputs.items()
            if "change" in o
        )
        return (
            f"{Path(self.converted).name} ({self.precision or 'converted'}): size x{self.size_ratio:.2f} "
            f"({self.converted_bytes} / {self.reference_bytes} B), latency {latency}, {self.metric} "
            f"{self.reference_value:.4g} -> {self.converted_value:.4g} (change {self.change:.4g}){scored}, max "
            f"|diff| {self.max_abs_diff:.3g}, mean |diff| {self.mean_abs_diff:.3g} over {self.samples} samples"
        )


def precision_report(
    reference_path: PathLike,
    converted_path: PathLike,
    inputs: Inputs,
    targets: np.ndarray | None = None,
    *,
    metric: Metric = "auto",
    max_metric_change: float | None = None,
    raise_on_violation: bool = True,
    repeats: int = 20,
    warmup: int = 3,
    write_json: bool = True,
) -> PrecisionReport:
    """Compares a converted model with its float32 reference on held-out data.

    Args:
        reference_path: the float32 file.
        converted_path: the converted file (from :func:`quantize` or :func:`to_fp16`).
        inputs: held-out raw inputs (one array, or input name → array), batch first.
        targets: what the model should output for them: forecasts/regression values of the output's shape, or
            class indices (N,) for a classifier. Without them the metric is the output difference ("max_abs").
        metric: "auto" picks from the file's head: "accuracy" for classification, "mse" otherwise ("max_abs"
            without targets); "mae" must be asked for.
        max_metric_change: the largest `change` accepted (relative MSE/MAE increase, accuracy points lost, or max
            absolute output difference); None accepts any.
        raise_on_violation: raise :class:`PrecisionLossError` when the bound is exceeded (else only log a warning).
        repeats: timed runs per model and batch size (median reported).
        warmup: untimed runs per model and batch size first.
        write_json: write the report to `<converted>.precision.json`.

    Returns:
        The report.

    Raises:
        FileNotFoundError: if either file does not exist.
        ValueError: for an unknown metric, a metric that needs targets without them, or mismatched targets.
        PrecisionLossError: when `change` exceeds `max_metric_change` and `raise_on_violation` is set.
    """
    reference, converted = OnnxModel(reference_path), OnnxModel(converted_path)
    named = inputs if isinstance(inputs, Mapping) else {reference.input_name: inputs}
    named = {name: np.asarray(value) for name, value in named.items()}
    expected_all, actual_all = reference.run(named), converted.run(named)
    expected, actual = expected_all[reference.output_names[0]], actual_all[reference.output_names[0]]
    metric = _choose_metric(metric, reference, targets)
    ref_value, conv_value, change = _metric_change(metric, expected, actual, targets)
    outputs = _output_changes(reference, expected_all, actual_all, targets if metric in ("mse", "mae") else None)
    diffs = [np.abs(expected_all[n].astype(np.float64) - actual_all[n].astype(np.float64)) for n in outputs]
    report = PrecisionReport(
        reference=str(reference.path),
        converted=str(converted.path),
        precision=str(converted.metadata.get(PRECISION_KEY, "")),
        reference_bytes=_file_bytes(reference.path),
        converted_bytes=_file_bytes(converted.path),
        latency_ms=_latencies(reference, converted, named, repeats, warmup),
        metric=metric,
        reference_value=ref_value,
        converted_value=conv_value,
        change=change,
        max_abs_diff=max(float(d.max()) for d in diffs),
        mean_abs_diff=float(sum(d.sum() for d in diffs) / sum(d.size for d in diffs)),
        samples=int(expected.shape[0]),
        max_metric_change=max_metric_change,
        outputs=outputs,
    )
    if write_json:
        path = converted.path.with_name(converted.path.name + ".precision.json")
        report.json_path = str(path)
        path.write_text(report.to_json() + "\n")
    logger.info("precision report: %s", report.summary())
    scored = [(change, metric, ref_value, conv_value, "")]
    scored += [(o["change"], o["metric"], o["reference_value"], o["converted_value"], f" of output {name!r}")
               for name, o in outputs.items() if "change" in o]  # fmt: skip
    worst, worst_metric, worst_ref, worst_conv, where = max(scored, key=lambda entry: entry[0])
    if max_metric_change is not None and worst > max_metric_change:
        message = (
            f"{converted.path.name}: {worst_metric} change{where} {worst:.4g} exceeds max_metric_change "
            f"{max_metric_change:.4g} ({worst_metric} {worst_ref:.4g} -> {worst_conv:.4g}); keep the float32 model or "
            "relax the bound"
        )
        if raise_on_violation:
            raise PrecisionLossError(message, report)
        logger.warning(message)
    return report


def _file_bytes(path: Path) -> int:
    """The model's size, its external-data files included."""
    model = onnx.load(path, load_external_data=False)
    external = {
        entry.value for tensor in model.graph.initializer for entry in tensor.external_data if entry.key == "location"
    }
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)


def _choose_metric(metric: Metric, model: OnnxModel, targets: np.ndarray | None) -> str:
    if metric not in ("auto", "mse", "mae", "accuracy", "max_abs"):
        raise ValueError(f"metric must be one of auto, mse, mae, accuracy, max_abs; got {metric!r}")
    if metric == "auto":
        if targets is None:
            return "max_abs"
        head = model.metadata.get("head")
        return "accuracy" if isinstance(head, dict) and head.get("task") == "classification" else "mse"
    if metric != "max_abs" and targets is None:
        raise ValueError(f"metric {metric!r} needs targets")
    return metric


def _metric_change(
    metric: str, expected: np.ndarray, actual: np.ndarray, targets: np.ndarray | None
) -> tuple[float, float, float]:
    """(reference value, converted value, change) of the metric; the change is positive when the converted model is
    worse."""
    if metric == "max_abs":
        return 0.0, float(np.abs(expected - actual).max()), float(np.abs(expected - actual).max())
    targets = np.asarray(targets)
    if metric == "accuracy":
        if targets.shape != expected.shape[:1]:
            raise ValueError(f"accuracy needs class indices of shape ({expected.shape[0]},), got {targets.shape}")
        ref, conv = (float((out.argmax(axis=-1) == targets).mean()) * 100 for out in (expected, actual))
        return ref, conv, ref - conv
    if targets.shape != expected.shape:
        raise ValueError(f"{metric} needs targets of the output's shape {expected.shape}, got {targets.shape}")
    error = np.square if metric == "mse" else np.abs
    ref, conv = (float(np.nanmean(error(out.astype(np.float64) - targets))) for out in (expected, actual))
    return ref, conv, (conv - ref) / ref if ref > 0 else conv - ref


def _output_changes(
    reference: OnnxModel,
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    targets: np.ndarray | None,
) -> dict[str, dict[str, Any]]:
    """Per graph output: the max and mean |reference − converted|; with forecast targets, a "quantiles" output's
    weighted quantile loss on both models and its relative change."""
    outputs: dict[str, dict[str, Any]] = {}
    for name in reference.output_names:
        diff = np.abs(expected[name].astype(np.float64) - actual[name].astype(np.float64))
        outputs[name] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    levels = reference.quantile_levels
    if targets is not None and levels and "quantiles" in expected:
        targets = np.asarray(targets, dtype=np.float64)
        ref, conv = (weighted_quantile_loss(out["quantiles"], levels, targets) for out in (expected, actual))
        change = (conv - ref) / ref if ref > 0 else conv - ref
        outputs["quantiles"].update(metric="wql", reference_value=ref, converted_value=conv, change=change)
    return outputs


def weighted_quantile_loss(quantiles: np.ndarray, levels: Iterable[float], targets: np.ndarray) -> float:
    """Mean over levels of 2 · Σ pinball_τ / Σ |target| of quantiles (*targets.shape, Q); NaN targets are skipped.

    Raises:
        ValueError: when the quantiles are not the targets' shape plus one axis of the levels.
    """
    tau = np.asarray(list(levels), dtype=np.float64)
    if quantiles.shape != (*targets.shape, tau.size):
        raise ValueError(
            f"quantiles must be (*targets.shape, Q) = {(*targets.shape, tau.size)}, got {tuple(quantiles.shape)}"
        )
    observed = ~np.isnan(targets)
    y = np.where(observed, targets, 0.0)[..., None]  # (..., 1)
    diff = y - quantiles.astype(np.float64)  # (..., Q)
    loss = np.where(observed[..., None], np.maximum(tau * diff, (tau - 1) * diff), 0.0)
    scale = max(float(np.abs(y).sum()), 1e-12)
    return float((2 * loss.reshape(-1, tau.size).sum(0) / scale).mean())


def _latencies(
    reference: OnnxModel, converted: OnnxModel, inputs: Mapping[str, np.ndarray], repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Median latency (ms) of both models at each of :data:`_LATENCY_BATCHES`, the models' runs alternating so that
    load changes on the machine affect both alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    result: dict[str, dict[str, float]] = {"reference": {}, "converted": {}}
    rows = int(next(iter(inputs.values())).shape[0])
    for batch in _LATENCY_BATCHES:
        index = np.arange(batch) % rows  # repeats the held-out rows when there are fewer than `batch`
        feed = {name: _as_feed(value[index]) for name, value in inputs.items()}
        times = {"reference": np.empty(repeats), "converted": np.empty(repeats)}
        models = {"reference": reference, "converted": converted}
        for i in range(warmup + repeats):
            for key, model in models.items():
                start = time.perf_counter()
                model.session.run(model.output_names, feed)
                if i >= warmup:
                    times[key][i - warmup] = time.perf_counter() - start
        for key in models:
            result[key][str(batch)] = float(np.median(times[key])) * 1e3
    return result


def _as_feed(value: np.ndarray) -> np.ndarray:
    """A contiguous array for the session: floating inputs as float32 (the graphs' input type), others unchanged."""
    return np.ascontiguousarray(value, dtype=np.float32 if value.dtype.kind == "f" else value.dtype)
