"""ONNX export of mmsdk models with the dynamo exporter, metadata, and eager-vs-ONNX Runtime verification.

Adapters keep normalization and patching inside the model, so the exported graph takes raw inputs (e.g. a
(B, L, C) series with NaN for missing values) and needs no preprocessing at serving time. Each adapter's
:class:`~mmsdk.contracts.adapter.ExportSpec` supplies the input name, the dynamic axes, the output name and the
tolerance; its `example_input` supplies the tracing and verification inputs. A model of several modalities takes
one graph input per modality, named after it.

The metadata records how each input may hold non-finite values (`mmsdk.nonfinite`, the adapter's
`nonfinite_policy`), the largest |value| it may hold (`mmsdk.max_abs`) and the smallest sizes of its axes
(`mmsdk.min_sizes`), which :class:`~mmsdk.export.runtime.OnnxModel` enforces. Verification against eager PyTorch
lives in :mod:`mmsdk.export.verify` (its public names are importable from here too).
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
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk import __version__
from mmsdk.contracts.adapter import Adapter, ExportSpec
from mmsdk.export.graph import check_dynamic_axes, exporter_errors, node_count, optimize_graph
from mmsdk.export.verify import (
    _VERIFY_SEED,
    DEFAULT_TOLERANCE,
    ExportVerificationError,
    _device_of,
    _eval_mode,
    _float32_input,
    _output_list,
    _tensor_outputs,
    _verification_inputs,
    check_finite_state,
    verify_onnx,
)
from mmsdk.hub.integrity import atomic_write

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportResult",
    "ExportVerificationError",
    "check_finite_state",
    "to_onnx",
    "verify_onnx",
]

logger = logging.getLogger(__name__)

_EXPORT_BATCH_SIZE = 2  # tracing at batch 1 invites the exporter to specialize the batch axis
_RESERVED_PREFIX = "mmsdk."
# Logger -> level during export: "torchvision is not installed" warnings, per-pass INFO logs of the optimizer.
_NOISY_LOGGERS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
}


@dataclass
class ExportResult:
    """What :func:`to_onnx` wrote and how closely the file matches eager PyTorch.

    Attributes:
        path: the `.onnx` file.
        input_name: name of the (first) graph input.
        output_names: names of the graph outputs.
        opset: the default-domain ONNX opset of the graph.
        max_abs_error: verification batch size → max |eager − ONNX Runtime| over the inputs of that batch size
            (empty when not verified).
        tolerance: the tolerance verification held the file to.
        metadata: the `metadata_props` stored in the file.
        export_seconds: wall time of tracing and saving.
        input_names: every graph input, in order (one per modality for a multimodal model).
        shape_errors: first input's shape → max abs error, for every verification input (e.g. clip lengths).
        nodes: the number of nodes of the saved graph (subgraphs included).
        nodes_before_optimization: the number of nodes before the `optimize` rewrite (None when none
            ran).
    """

    path: Path
    input_name: str
    output_names: tuple[str, ...]
    opset: int
    max_abs_error: dict[int, float] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    metadata: dict[str, str] = field(default_factory=dict)
    export_seconds: float = 0.0
    input_names: tuple[str, ...] = ()
    shape_errors: dict[tuple[int, ...], float] = field(default_factory=dict)
    nodes: int = 0
    nodes_before_optimization: int | None = None

    @property
    def verified(self) -> bool:
        """Whether ONNX Runtime was checked against eager PyTorch."""
        return bool(self.max_abs_error)

    def summary(self) -> str:
        """A few human-readable lines: file, signature, opset and verification errors."""
        size_kb = self.path.stat().st_size / 1024 if self.path.exists() else float("nan")
        before = self.nodes_before_optimization
        optimized = "" if before is None else f" ({before} before optimization)"
        lines = [
            f"ONNX model: {self.path} ({size_kb:.1f} KiB, opset {self.opset}, exported in {self.export_seconds:.1f} s)",
            f"  inputs:  {self.metadata.get('mmsdk.input_layouts', self.input_name)}",
            f"  outputs: {', '.join(self.output_names)}",
            f"  graph:   {self.nodes} nodes{optimized}",
            f"  model:   {self.metadata.get('mmsdk.kind', 'other')} / adapter {self.metadata.get('mmsdk.adapter')}",
        ]
        if self.verified:
            errors = ", ".join(f"batch {b}: {e:.2e}" for b, e in sorted(self.max_abs_error.items()))
            shapes = f" over {len(self.shape_errors)} input shapes" if len(self.shape_errors) > 1 else ""
            lines.append(f"  verified vs eager (tolerance {self.tolerance:.0e}){shapes}: {errors}")
        else:
            lines.append("  not verified")
        return "\n".join(lines)


Inputs = Tensor | Mapping[str, Tensor]
"""One raw-input tensor, or a mapping modality name → raw input for a model of several modalities."""


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: Inputs | None = None,
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
    verify: bool = True,
    tolerance: float | None = None,
    verify_batch_sizes: Sequence[int] = (1, 2, 3),
    metadata: Mapping[str, Any] | None = None,
    optimize: Literal["none", "onnxscript", "onnxruntime"] = "none",
) -> ExportResult:
    """Exports a model of raw inputs to ONNX and checks the file against eager PyTorch.

    Works for any module with a `.backbone` of adapters (:class:`~mmsdk.models.TaskModel`,
    :class:`~mmsdk.models.EmbeddingModel`), whose adapters supply the input names, dynamic axes, tolerance and
    example inputs; other modules need `example_input`. A model of one modality has one graph input named by its
    adapter's ExportSpec; a model of several has one input per modality, named after the modality, sharing the
    batch axis. The model is traced in eval mode and float32 (a float32 copy is exported when it holds other
    dtypes); its train/eval modes are restored afterwards.

    Args:
        model: the module to export; its forward must take the raw inputs and return one tensor or a dict of named
            tensors (each becomes a graph output of that name, in order).
        path: destination file; missing parent directories are created.
        example_input: tracing input (default: the adapters' `example_input` at batch size 2).
        dynamic_batch: make axis 0 symbolic ("batch"); other dynamic axes of the ExportSpec are always kept.
        opset: ONNX opset version (the exporter's default when None).
        verify: compare ONNX Runtime with eager PyTorch for `verify_batch_sizes` and raise on a mismatch.
        tolerance: max absolute error allowed (default: the largest adapter ExportSpec tolerance, else 1e-4).
        verify_batch_sizes: batch sizes of the verification inputs (only the tracing batch size when
            `dynamic_batch` is False).
        metadata: extra string-keyed entries for the file's `metadata_props` (non-strings are JSON-encoded);
            keys starting with "mmsdk." are reserved.
        optimize: a graph rewrite after export, before the file is saved and verified (so verification covers it):
            "onnxscript" runs onnxscript's generic optimizer (constant folding, dead code; torch's exporter already
            runs it once, so it rarely removes more); "onnxruntime" runs onnxscript's ONNX Runtime fusions
            (attention into `MultiHeadAttention`, `SkipLayerNormalization`, `BiasGelu`: `com.microsoft` ops, so the
            file then runs on ONNX Runtime only). Node counts before and after are logged and kept in the result.

    Returns:
        The written file, its signature, the verification errors and the stored metadata.

    Raises:
        ValueError: without adapters and without `example_input`, for reserved metadata keys, or for a model
            whose parameters or buffers hold NaN or Inf (naming the first such tensor).
        TypeError: if the model returns something other than a tensor or a dict of named tensors.
        ExportVerificationError: if ONNX Runtime's output differs from eager beyond the tolerance, or finite
            verification inputs give non-finite outputs.
    """
    if optimize not in ("none", "onnxscript", "onnxruntime"):
        raise ValueError(f"optimize must be 'none', 'onnxscript' or 'onnxruntime', got {optimize!r}")
    check_finite_state(model)
    adapters = _find_adapters(model)
    specs = {name: a.export_spec() for name, a in adapters.items()} or {"inputs": ExportSpec()}
    if example_input is None:
        if not adapters:
            raise ValueError(f"{type(model).__name__} has no `.backbone` adapters; pass `example_input` to export it")
        make = getattr(model, "example_input", None) or (lambda size, g: _example(adapters, size, g))
        example_input = make(_EXPORT_BATCH_SIZE, torch.Generator().manual_seed(_VERIFY_SEED))
    names, owners = _graph_inputs(adapters, specs, example_input)
    default_output = getattr(model, "export_output", None) or next(iter(specs.values())).output_names[0]
    if tolerance is None:
        tolerance = max(spec.tolerance for spec in specs.values())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model = _as_float32(model)
    device = _device_of(export_model)
    example = _as_named(example_input, names)  # input name → tensor, in graph order
    example = {name: _float32_input(value).to(device) for name, value in example.items()}
    axes = {
        name: _dynamic_axes(owners[name].export_spec() if owners else specs["inputs"], dynamic_batch) for name in names
    }
    wrapped = _Positional(export_model, names, multi=len(names) > 1)
    wrapped.training = False  # the wrapper itself; `_eval_mode` sets (and later restores) the model's modules

    with _eval_mode(export_model):
        with torch.no_grad():  # unsupported outputs fail here, before the (slower) export
            outputs = _tensor_outputs(wrapped(*example.values()))
        output_names = list(outputs) if isinstance(outputs, dict) else [default_output]
        stored = _metadata(model, adapters, owners, example, axes, output_names, tolerance, metadata)
        start = time.perf_counter()
        flat = _Flat(wrapped)
        flat.training = False
        mins = {name: (owners[name].export_spec() if owners else specs["inputs"]).min_sizes for name in names}
        program = _export(flat, example, axes, output_names, opset, mins)
        _finalize(program.model, names, output_names, stored)
        check_dynamic_axes(program.model, axes, type(model).__name__)
        before = None if optimize == "none" else optimize_graph(program, optimize, _quiet_exporter)
        _save(program, path)
        seconds = time.perf_counter() - start
        logger.info("exported %s to %s in %.1f s", type(model).__name__, path, seconds)
        result = ExportResult(
            path=path,
            input_name=names[0],
            output_names=tuple(output_names),
            opset=int(program.model.opset_imports.get("", 0)),
            tolerance=tolerance,
            metadata=stored,
            export_seconds=seconds,
            input_names=tuple(names),
            nodes=node_count(program.model),
            nodes_before_optimization=before,
        )
        if verify:
            batch = int(next(iter(example.values())).shape[0])
            sizes = list(verify_batch_sizes) if 0 in axes[names[0]] else [batch]
            make = getattr(model, "example_input", None)
            inputs = [x for x in _verification_inputs(adapters, example, sizes, make) if int(x[0].shape[0]) in sizes]
            errors = verify_onnx(wrapped, path, inputs, tolerance)
            result.shape_errors = errors
            for shape, error in errors.items():
                result.max_abs_error[shape[0]] = max(error, result.max_abs_error.get(shape[0], 0.0))
    return result


class _Positional(nn.Module):
    """The model with one positional argument per graph input (a multimodal model, or an adapter with several
    named inputs such as a covariate forecaster, takes a mapping)."""

    def __init__(self, model: nn.Module, names: Sequence[str], multi: bool) -> None:
        super().__init__()
        self.model, self.names, self.multi = model, list(names), multi

    def forward(self, *inputs: Tensor) -> Any:
        if self.multi:
            return self.model(dict(zip(self.names, inputs)))
        return self.model(inputs[0])


class _Flat(nn.Module):
    """The wrapped model with a dict of named outputs returned as a tuple in the dict's order (the graph outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Any:
        return tuple(_output_list(self.model(*inputs)))


def _find_adapters(model: nn.Module) -> dict[str, Adapter]:
    """The adapters of the model's graph inputs: its `input_adapters` when it defines them (a model reading some
    of its backbone's modalities), else its `.backbone.adapters` (modality name → adapter); empty without either."""
    chosen = getattr(model, "input_adapters", None)
    if chosen is not None:
        return dict(chosen)
    adapters = getattr(getattr(model, "backbone", None), "adapters", None)
    if adapters is None:
        return {}
    return {name: a for name, a in adapters.items() if isinstance(a, Adapter)}


def _graph_inputs(
    adapters: Mapping[str, Adapter], specs: Mapping[str, ExportSpec], example: Inputs
) -> tuple[list[str], dict[str, Adapter]]:
    """The graph input names and the adapter each belongs to.

    One adapter: its ExportSpec's input name, or the keys of its own input mapping (e.g. a covariate forecaster's
    "series", "past_covariates", "known_covariates"). Several: one input per modality, named after it.

    Raises:
        ValueError: for a modality of a multimodal model whose input is itself a mapping.
    """
    if len(specs) > 1:
        for name in adapters:
            if isinstance(example, Mapping) and isinstance(example.get(name), Mapping):
                raise ValueError(
                    f"modality {name!r} takes a mapping of inputs; a multimodal export needs one tensor each"
                )
        return list(specs), dict(adapters)
    names = [next(iter(specs.values())).input_name]
    if isinstance(example, Mapping) and len(example) > 1:
        names = list(example)
    owners = {name: next(iter(adapters.values())) for name in names} if adapters else {}
    return names, owners


def _example(adapters: Mapping[str, Adapter], batch_size: int, generator: torch.Generator) -> Inputs:
    """The adapters' example inputs: one tensor for one modality, a mapping for several."""
    examples = {name: a.example_input(batch_size, generator) for name, a in adapters.items()}
    return examples if len(examples) > 1 else next(iter(examples.values()))


def _as_named(inputs: Inputs, names: Sequence[str]) -> dict[str, Tensor]:
    """Raw inputs as graph-input name → tensor (a mapping must name exactly the modalities)."""
    if isinstance(inputs, Mapping):
        if len(names) == 1 and len(inputs) == 1:
            return {names[0]: next(iter(inputs.values()))}
        if set(inputs) != set(names):
            raise ValueError(f"example_input must name the modalities {list(names)}, got {sorted(inputs)}")
        return {name: inputs[name] for name in names}
    if len(names) != 1:
        raise ValueError(f"this model takes the modalities {list(names)}; pass example_input as a mapping")
    return {names[0]: inputs}


def _as_float32(model: nn.Module) -> nn.Module:
    """The model itself when all its floating tensors are float32, else a float32 copy (the original is kept)."""
    tensors = (*model.parameters(), *model.buffers())
    if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()):
        return model
    logger.info("exporting a float32 copy of %s (it holds non-float32 tensors)", type(model).__name__)
    return copy.deepcopy(model).float()


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


def _export(
    model: nn.Module,
    example: Mapping[str, Tensor],
    axes: Mapping[str, dict[int, str]],
    outputs: Sequence[str],
    opset: int | None,
    min_sizes: Mapping[str, Mapping[int, int]] | None = None,
):
    """Traces with the dynamo exporter (quietly) and returns the ONNXProgram; equal axis names share one Dim.

    Each Dim starts at the ExportSpec's `min_sizes` of its axis (e.g. the samples of one audio token): with min=1
    the trace of such an axis fails on the model's own guard and torch traces the whole model a second time.
    """
    lowest: dict[str, int] = {}
    for key in example:
        for axis, name in axes[key].items():
            lowest[name] = max(lowest.get(name, 1), int((min_sizes or {}).get(key, {}).get(axis, 1)))
    dims = {name: torch.export.Dim(name, min=low) for name, low in lowest.items()}
    shapes = tuple({axis: dims[name] for axis, name in axes[key].items()} or None for key in example)
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    inner = model.model if isinstance(model, _Flat) else model
    with _quiet_exporter(), exporter_errors(type(inner.model if isinstance(inner, _Positional) else inner).__name__):
        return torch.onnx.export(
            model,
            tuple(example.values()),
            dynamo=True,
            dynamic_shapes=(shapes,) if any(s is not None for s in shapes) else None,  # forward(*inputs)
            input_names=list(example),
            output_names=list(outputs),
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
            # several inputs share the "batch" axis on purpose
            warnings.filterwarnings("ignore", message=".*shares the same shape constraints with another axis.*")
            yield
    finally:
        for lg in quieted:
            lg.setLevel(logging.NOTSET)


_EXTERNAL_DATA_BYTES = 1_800_000_000  # above ~2 GB the weights go to a `.data` file beside the model


def _save(program: Any, path: Path) -> None:
    """Writes the ONNX file atomically (see :func:`mmsdk.hub.integrity.atomic_write`), so a crash leaves the previous
    model or the new one. Models large enough to need external data are written in place: the `.data` file's name
    is recorded inside the model."""
    weights = sum(int(v.const_value.nbytes) for v in program.model.graph.initializers.values() if v.const_value)
    if weights > _EXTERNAL_DATA_BYTES:
        program.save(path)
        return
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))


def _finalize(model: Any, names: Sequence[str], outputs: Sequence[str], metadata: Mapping[str, str]) -> None:
    """Names the graph's inputs and outputs and stores the metadata (an onnx_ir Model)."""
    for kind, values, wanted in (("input", model.graph.inputs, names), ("output", model.graph.outputs, outputs)):
        if len(values) != len(wanted):
            raise ValueError(f"expected a graph with {kind}s {list(wanted)}, got {[v.name for v in values]}")
        for value, name in zip(values, wanted):
            if value.name != name:
                logger.debug("renaming graph %s %r to %r", kind, value.name, name)
                value.name = name
    model.metadata_props.update(metadata)


def _metadata(
    model: nn.Module,
    adapters: Mapping[str, Adapter],
    by_input: Mapping[str, Adapter],
    example: Mapping[str, Tensor],
    axes: Mapping[str, dict[int, str]],
    outputs: Sequence[str],
    tolerance: float,
    extra: Mapping[str, Any] | None,
) -> dict[str, str]:
    """The `metadata_props` entries: versions, model config and head as JSON, kind, inputs, their layouts and the
    values they may hold (`mmsdk.nonfinite`, `mmsdk.max_abs`, `mmsdk.min_sizes`, per input of an adapter)."""
    from mmsdk.models import EmbeddingModel, TaskModel

    config = getattr(getattr(model, "backbone", None), "config", None)
    head = getattr(model, "head_config", None)
    kind = "task" if isinstance(model, TaskModel) else "embedding" if isinstance(model, EmbeddingModel) else "other"
    kind = getattr(model, "export_kind", kind)

    def layout(name: str, value: Tensor) -> str:
        dims = [axes[name].get(i, size) for i, size in enumerate(value.shape)]
        return f"{str(value.dtype).removeprefix('torch.')}[{', '.join(map(str, dims))}]"

    layouts = {name: layout(name, value) for name, value in example.items()}
    first = next(iter(example))
    entries = {
        "mmsdk.version": __version__,
        "mmsdk.torch_version": torch.__version__,
        "mmsdk.kind": kind,
        "mmsdk.adapter": ",".join(a.name for a in adapters.values()),
        "mmsdk.config": json.dumps(config.to_dict() if config is not None else None, sort_keys=True),
        "mmsdk.head": json.dumps(head.to_dict() if head is not None else None, sort_keys=True),
        "mmsdk.input_name": first,
        "mmsdk.input_layout": layouts[first],
        "mmsdk.input_names": json.dumps(list(example)),
        "mmsdk.input_layouts": json.dumps(layouts),
        "mmsdk.output_names": json.dumps(list(outputs)),
        "mmsdk.tolerance": repr(float(tolerance)),
    }
    if by_input:  # graph input → its adapter, in graph order
        entries["mmsdk.nonfinite"] = json.dumps({name: a.nonfinite_policy for name, a in by_input.items()})
        entries["mmsdk.max_abs"] = json.dumps({name: float(a.max_abs_input) for name, a in by_input.items()})
        min_sizes = {name: a.export_spec().min_sizes for name, a in by_input.items() if a.export_spec().min_sizes}
        if min_sizes:  # JSON keys are strings: axis → size
            entries["mmsdk.min_sizes"] = json.dumps(
                {name: {str(axis): int(size) for axis, size in sizes.items()} for name, sizes in min_sizes.items()}
            )
    scopes = _float32_scopes(model, adapters)
    if scopes:
        entries["mmsdk.float32_scopes"] = json.dumps(scopes)
    labels = getattr(head, "labels", None)
    if labels is not None:
        entries["mmsdk.labels"] = json.dumps(list(labels))
    for adapter in adapters.values():
        for key, value in adapter.export_spec().metadata.items():
            entries[_RESERVED_PREFIX + key] = str(value)
    for key, value in getattr(model, "export_metadata", dict)().items():  # the model's own facts
        entries[_RESERVED_PREFIX + key] = str(value)
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or key.startswith(_RESERVED_PREFIX):
            raise ValueError(f"metadata key {key!r} must be a string not starting with {_RESERVED_PREFIX!r}")
        entries[key] = value if isinstance(value, str) else json.dumps(value)
    return entries


def _float32_scopes(model: nn.Module, adapters: Mapping[str, Adapter]) -> list[str]:
    """Qualified names, in `model`, of the adapters' `float32_modules` (e.g. "backbone.adapters.ssast.fbank")."""
    wanted = set()
    for adapter in adapters.values():
        for name in adapter.float32_modules:
            module = getattr(adapter, name, None)
            if not isinstance(module, nn.Module):
                raise ValueError(f"{type(adapter).__name__}.float32_modules names {name!r}, which is not a submodule")
            wanted.add(id(module))
    return [path for path, module in model.named_modules() if id(module) in wanted]
