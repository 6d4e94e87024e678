"""ONNX export of mmsdk models with the dynamo exporter, metadata, and eager-vs-ONNX Runtime verification.

Adapters keep normalization and patching inside the model, so the exported graph takes raw inputs (e.g. a
(B, L, C) series with NaN for missing values) and needs no preprocessing at serving time. The adapter's
:class:`~mmsdk.contracts.adapter.ExportSpec` supplies the input name, the dynamic axes, the output name and the tolerance;
its `example_input` supplies the tracing and verification inputs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from mmsdk import __version__
from mmsdk.contracts.adapter import Adapter, ExportSpec

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
_EXPORT_BATCH_SIZE = 2  # tracing at batch 1 invites the exporter to specialize the batch axis
_VERIFY_SEED = 0
_RESERVED_PREFIX = "mmsdk."
# Logger -> level during export: "torchvision is not installed" warnings, per-pass INFO logs of the optimizer.
_NOISY_LOGGERS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
}


class ExportVerificationError(ValueError):
    """ONNX Runtime's output differs from eager PyTorch beyond the tolerance (or in shape).

    Attributes:
        input_shape: the input shape whose outputs differ.
        max_abs_error: the largest absolute difference (inf for a shape or NaN-pattern mismatch).
        tolerance: the tolerance that was exceeded.
    """

    def __init__(self, message: str, input_shape: tuple[int, ...], max_abs_error: float, tolerance: float) -> None:
        super().__init__(message)
        self.input_shape, self.max_abs_error, self.tolerance = input_shape, max_abs_error, tolerance


@dataclass
class ExportResult:
    """What :func:`to_onnx` wrote and how closely the file matches eager PyTorch.

    Attributes:
        path: the `.onnx` file.
        input_name: name of the graph input.
        output_names: names of the graph outputs.
        opset: the default-domain ONNX opset of the graph.
        max_abs_error: verification batch size → max |eager − ONNX Runtime| (empty when not verified).
        tolerance: the tolerance verification held the file to.
        metadata: the `metadata_props` stored in the file.
        export_seconds: wall time of tracing and saving.
    """

    path: Path
    input_name: str
    output_names: tuple[str, ...]
    opset: int
    max_abs_error: dict[int, float] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    metadata: dict[str, str] = field(default_factory=dict)
    export_seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """Whether ONNX Runtime was checked against eager PyTorch."""
        return bool(self.max_abs_error)

    def summary(self) -> str:
        """A few human-readable lines: file, signature, opset and verification errors."""
        size_kb = self.path.stat().st_size / 1024 if self.path.exists() else float("nan")
        lines = [
            f"ONNX model: {self.path} ({size_kb:.1f} KiB, opset {self.opset}, exported in {self.export_seconds:.1f} s)",
            f"  input:   {self.input_name} {self.metadata.get('mmsdk.input_layout', '')}".rstrip(),
            f"  outputs: {', '.join(self.output_names)}",
            f"  model:   {self.metadata.get('mmsdk.kind', 'other')} / adapter {self.metadata.get('mmsdk.adapter')}",
        ]
        if self.verified:
            errors = ", ".join(f"batch {b}: {e:.2e}" for b, e in sorted(self.max_abs_error.items()))
            lines.append(f"  verified vs eager (tolerance {self.tolerance:.0e}): {errors}")
        else:
            lines.append("  not verified")
        return "\n".join(lines)


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: Tensor | None = None,
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
    verify: bool = True,
    tolerance: float | None = None,
    verify_batch_sizes: Sequence[int] = (1, 2, 3),
    metadata: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Exports a model taking one raw-input tensor to ONNX and checks the file against eager PyTorch.

    Works for any module with a `.backbone.adapter` (:class:`~mmsdk.models.TaskModel`,
    :class:`~mmsdk.models.EmbeddingModel`), which supplies the input name, dynamic axes, tolerance and example
    inputs; other modules need `example_input`. The model is traced in eval mode and float32 (a float32 copy is
    exported when it holds other dtypes); its train/eval modes are restored afterwards.

    Args:
        model: the module to export; its forward must take one tensor and return one tensor.
        path: destination file; missing parent directories are created.
        example_input: tracing input (default: the adapter's `example_input` at batch size 2).
        dynamic_batch: make axis 0 symbolic ("batch"); other dynamic axes of the ExportSpec are always kept.
        opset: ONNX opset version (the exporter's default when None).
        verify: compare ONNX Runtime with eager PyTorch for `verify_batch_sizes` and raise on a mismatch.
        tolerance: max absolute error allowed (default: the adapter's ExportSpec tolerance, else 1e-4).
        verify_batch_sizes: batch sizes of the verification inputs (only the tracing batch size when
            `dynamic_batch` is False).
        metadata: extra string-keyed entries for the file's `metadata_props` (non-strings are JSON-encoded);
            keys starting with "mmsdk." are reserved.

    Returns:
        The written file, its signature, the verification errors and the stored metadata.

    Raises:
        ValueError: without an adapter and without `example_input`, or for reserved metadata keys.
        TypeError: if the model returns something other than a single tensor.
        ExportVerificationError: if ONNX Runtime's output differs from eager beyond the tolerance.
    """
    adapter = _find_adapter(model)
    spec = adapter.export_spec() if adapter is not None else ExportSpec()
    tolerance = spec.tolerance if tolerance is None else tolerance
    if example_input is None:
        if adapter is None:
            raise ValueError(f"{type(model).__name__} has no `.backbone.adapter`; pass `example_input` to export it")
        example_input = adapter.example_input(_EXPORT_BATCH_SIZE, torch.Generator().manual_seed(_VERIFY_SEED))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model = _as_float32(model)
    example_input = _float32_input(example_input).to(_device_of(export_model))
    axes = _dynamic_axes(spec, dynamic_batch)
    stored = _metadata(model, adapter, spec, example_input, axes, tolerance, metadata)

    with _eval_mode(export_model):
        with torch.no_grad():  # unsupported outputs fail here, before the (slower) export
            _tensor_output(export_model(example_input))
        start = time.perf_counter()
        program = _export(export_model, example_input, spec, axes, opset)
        _finalize(program.model, spec, stored)
        program.save(path)
        seconds = time.perf_counter() - start
        logger.info("exported %s to %s in %.1f s", type(model).__name__, path, seconds)
        result = ExportResult(
            path=path,
            input_name=spec.input_name,
            output_names=(spec.output_names[0],),
            opset=int(program.model.opset_imports.get("", 0)),
            tolerance=tolerance,
            metadata=stored,
            export_seconds=seconds,
        )
        if verify:
            sizes = list(verify_batch_sizes) if 0 in axes else [int(example_input.shape[0])]
            inputs = _verification_inputs(adapter, example_input, sizes)
            errors = verify_onnx(export_model, path, inputs, tolerance)
            result.max_abs_error = {shape[0]: error for shape, error in errors.items()}
    return result


def verify_onnx(
    model: nn.Module, path: str | os.PathLike[str], inputs_list: Sequence[Tensor], tolerance: float = DEFAULT_TOLERANCE
) -> dict[tuple[int, ...], float]:
    """Compares eager PyTorch (eval mode) with ONNX Runtime (CPU) on each input.

    Args:
        model: the eager model the file was exported from.
        path: the `.onnx` file (single input, first output compared).
        inputs_list: inputs of possibly different batch sizes.
        tolerance: max absolute error allowed.

    Returns:
        Input shape → max absolute error.

    Raises:
        ExportVerificationError: naming the input shape, the error and the tolerance, on the first input whose
            outputs differ beyond the tolerance, in shape, or in where they are NaN.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    device = _device_of(model)
    errors: dict[tuple[int, ...], float] = {}
    with _eval_mode(model), torch.no_grad():
        for inputs in inputs_list:
            shape = tuple(inputs.shape)
            expected = _tensor_output(model(inputs.to(device))).detach().float().cpu().numpy()
            actual = session.run(None, {input_name: inputs.detach().cpu().numpy()})[0]
            if actual.shape != expected.shape:
                raise ExportVerificationError(
                    f"{path}: for input shape {shape}, ONNX Runtime output has shape {actual.shape} but eager "
                    f"PyTorch gives {expected.shape}",
                    shape,
                    float("inf"),
                    tolerance,
                )
            error = _max_abs_error(expected, actual)
            logger.debug("verify %s input %s: max abs error %.3e", path, shape, error)
            if not error <= tolerance:
                raise ExportVerificationError(
                    f"{path}: for input shape {shape}, ONNX Runtime differs from eager PyTorch by max abs error "
                    f"{error:.3e} > tolerance {tolerance:.1e}",
                    shape,
                    error,
                    tolerance,
                )
            errors[shape] = error
    return errors


def _find_adapter(model: nn.Module) -> Adapter | None:
    """The model's `.backbone.adapter`, if it has one."""
    adapter = getattr(getattr(model, "backbone", None), "adapter", None)
    return adapter if isinstance(adapter, Adapter) else None


def _device_of(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless module)."""
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))


def _as_float32(model: nn.Module) -> nn.Module:
    """The model itself when all its floating tensors are float32, else a float32 copy (the original is kept)."""
    tensors = (*model.parameters(), *model.buffers())
    if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()):
        return model
    logger.info("exporting a float32 copy of %s (it holds non-float32 tensors)", type(model).__name__)
    return copy.deepcopy(model).float()


def _float32_input(inputs: Tensor) -> Tensor:
    """Floating inputs as float32; other dtypes (ids, masks) unchanged."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(inputs).__name__}")
    return inputs.float() if inputs.is_floating_point() else inputs


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Puts every submodule in eval mode and restores each one's own mode afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _tensor_output(output: Any) -> Tensor:
    """The output itself if it is one tensor, else a TypeError naming what the model returned."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"ONNX export needs a model returning a single torch.Tensor, but it returned {type(output).__name__}; "
            "wrap it so that forward returns one tensor"
        )
    return output


def _dynamic_axes(spec: ExportSpec, dynamic_batch: bool) -> dict[int, str]:
    """The ExportSpec's dynamic axes, without the batch axis when `dynamic_batch` is False."""
    axes = dict(spec.dynamic_axes)
    if dynamic_batch:
        axes.setdefault(0, "batch")
    else:
        axes.pop(0, None)
    for name in axes.values():
        if not name.isidentifier():
            raise ValueError(f"dynamic axis name {name!r} must be a Python identifier")
    return axes


def _export(model: nn.Module, example_input: Tensor, spec: ExportSpec, axes: dict[int, str], opset: int | None):
    """Traces with the dynamo exporter (quietly) and returns the ONNXProgram."""
    dims: dict[str, torch.export.Dim] = {}
    shapes = {axis: dims.setdefault(name, torch.export.Dim(name, min=1)) for axis, name in axes.items()}
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with _quiet_exporter():
        return torch.onnx.export(
            model,
            (example_input,),
            dynamo=True,
            dynamic_shapes=(shapes,) if shapes else None,
            input_names=[spec.input_name],
            output_names=[spec.output_names[0]],
            verbose=False,
            **kwargs,
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silences the exporter's harmless noise (missing torchvision ops, optimizer pass logs, pytree deprecation
    warnings); loggers the user configured explicitly are left alone."""
    quieted = [logging.getLogger(name) for name in _NOISY_LOGGERS if logging.getLogger(name).level == logging.NOTSET]
    for lg in quieted:
        lg.setLevel(_NOISY_LOGGERS[lg.name])
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            yield
    finally:
        for lg in quieted:
            lg.setLevel(logging.NOTSET)


def _finalize(model: Any, spec: ExportSpec, metadata: Mapping[str, str]) -> None:
    """Names the graph's input and output after the ExportSpec and stores the metadata (an onnx_ir Model)."""
    graph = model.graph
    if len(graph.inputs) != 1:
        raise ValueError(f"expected a graph with one input, got {[v.name for v in graph.inputs]}")
    if graph.inputs[0].name != spec.input_name:
        logger.debug("renaming graph input %r to %r", graph.inputs[0].name, spec.input_name)
        graph.inputs[0].name = spec.input_name
    if graph.outputs[0].name != spec.output_names[0]:
        logger.debug("renaming graph output %r to %r", graph.outputs[0].name, spec.output_names[0])
        graph.outputs[0].name = spec.output_names[0]
    model.metadata_props.update(metadata)


def _metadata(
    model: nn.Module,
    adapter: Adapter | None,
    spec: ExportSpec,
    example_input: Tensor,
    axes: dict[int, str],
    tolerance: float,
    extra: Mapping[str, Any] | None,
) -> dict[str, str]:
    """The `metadata_props` entries: versions, model config and head as JSON, kind, input layout, tolerance."""
    from mmsdk.models import EmbeddingModel, TaskModel

    config = getattr(getattr(model, "backbone", None), "config", None)
    head = getattr(model, "head_config", None)
    kind = "task" if isinstance(model, TaskModel) else "embedding" if isinstance(model, EmbeddingModel) else "other"
    layout = [axes.get(i, size) for i, size in enumerate(example_input.shape)]
    dtype = str(example_input.dtype).removeprefix("torch.")
    entries = {
        "mmsdk.version": __version__,
        "mmsdk.torch_version": torch.__version__,
        "mmsdk.kind": kind,
        "mmsdk.adapter": adapter.name if adapter is not None else "",
        "mmsdk.config": json.dumps(config.to_dict() if config is not None else None, sort_keys=True),
        "mmsdk.head": json.dumps(head.to_dict() if head is not None else None, sort_keys=True),
        "mmsdk.input_name": spec.input_name,
        "mmsdk.input_layout": f"{dtype}[{', '.join(map(str, layout))}]",
        "mmsdk.output_names": json.dumps([spec.output_names[0]]),
        "mmsdk.tolerance": repr(float(tolerance)),
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or key.startswith(_RESERVED_PREFIX):
            raise ValueError(f"metadata key {key!r} must be a string not starting with {_RESERVED_PREFIX!r}")
        entries[key] = value if isinstance(value, str) else json.dumps(value)
    return entries


def _verification_inputs(adapter: Adapter | None, example_input: Tensor, batch_sizes: Sequence[int]) -> list[Tensor]:
    """Seeded inputs of each batch size: the adapter's examples, else rows of `example_input` cycled (with a
    little noise on floating inputs so that rows differ)."""
    generator = torch.Generator().manual_seed(_VERIFY_SEED + 1)
    inputs = []
    for size in batch_sizes:
        if size < 1:
            raise ValueError(f"verify_batch_sizes must be positive, got {size}")
        if adapter is not None:
            inputs.append(_float32_input(adapter.example_input(size, generator)))
            continue
        rows = example_input.cpu()[torch.arange(size) % example_input.shape[0]]
        if rows.is_floating_point():
            rows = rows + 0.01 * torch.randn(rows.shape, generator=generator) * rows.std().nan_to_num(1.0)
        inputs.append(rows)
    return inputs


def _max_abs_error(expected: np.ndarray, actual: np.ndarray) -> float:
    """Max |expected − actual| over finite values; inf when NaN or Inf appear in different places."""
    expected, actual = expected.astype(np.float64), actual.astype(np.float64)
    if not np.array_equal(np.isnan(expected), np.isnan(actual)):
        return float("inf")
    infinite = np.isinf(expected)
    if not np.array_equal(infinite, np.isinf(actual)) or not np.array_equal(expected[infinite], actual[infinite]):
        return float("inf")
    finite = np.isfinite(expected)
    return float(np.abs(expected[finite] - actual[finite]).max()) if finite.any() else 0.0
