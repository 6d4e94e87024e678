"""Lower-precision copies of exported ONNX models (int8, float16) and a report of what the conversion cost.

The conversions use ONNX Runtime's own tools and need only onnx, onnxruntime and numpy (no torch):

- :func:`quantize`: int8 weights. "dynamic" (`quantize_dynamic`) quantizes the weights of MatMul/Gemm and their
  activations on the fly; "static" (`quantize_static`, QDQ format, symmetric int8 activations) also fixes the
  activation ranges from calibration batches of the model's raw inputs. Weights are per channel by default, and
  7-bit by default (`reduce_range`): x86 CPUs without VNNI (AVX2 or AVX-512 only, e.g. AMD Zen 3) multiply uint8 by
  int8 with an instruction that saturates its int16 pair sums, which full 8-bit weights overflow (errors of 0.4 on
  outputs of scale ~2 measured on a Zen 3; 0.03 with 7-bit weights).
- :func:`to_fp16`: float16 weights and compute (`onnxruntime.transformers.float16`), with float32 graph inputs and
  outputs and the numerically sensitive ops (:data:`FP16_BLOCKED_OPS`) kept in float32.

Both copy the source file's `metadata_props` (the `mmsdk.*` entries :class:`~mmsdk.export.runtime.OnnxModel`
validates inputs by) onto the converted file and add `mmsdk.precision`. :func:`precision_report` compares a
converted file with its float32 reference: sizes, latency at batch 1 and 32, and the change in the task's metric on
held-out data; with `max_metric_change` set, a larger change raises :class:`PrecisionLossError` (both live in
:mod:`mmsdk.export.precision` and are re-exported here).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from mmsdk.export.ort_tools import CalibrationReader, float32_nodes, float32_scopes, pre_process, quiet_root_logging
from mmsdk.export.precision import PRECISION_KEY, PrecisionLossError, PrecisionReport, precision_report

__all__ = [
    "FP16_BLOCKED_OPS",
    "PrecisionLossError",
    "PrecisionReport",
    "precision_report",
    "quantize",
    "saturates_full_range",
    "to_fp16",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Inputs = np.ndarray | Mapping[str, np.ndarray]
"""One array (a single-input model) or input name → array."""

FP16_BLOCKED_OPS: tuple[str, ...] = (
    *DEFAULT_OP_BLOCK_LIST,
    "Softmax",
    "LayerNormalization",
    "Exp",
    "Log",
    "ReduceMean",
    "Sqrt",
    "Pow",
)
"""Ops :func:`to_fp16` keeps in float32 by default: ONNX Runtime's default block list plus softmax, layer norm and
the exp/log/mean/square/root of normalizations, whose float16 versions lose accuracy or overflow. (Blocking
ReduceSum or Div as well made the tiny PatchTST overflow on series of scale 1000: their float32 results are cast
back to float16 for the next op.)"""
EXTERNAL_DATA_BYTES = 1 << 30
"""Weights (bytes) past which converted files keep them in an external `<name>.data` file (protobuf's limit is 2 GB;
the graph and the conversion tools' copies need headroom)."""
QUANTIZED_OPS: tuple[str, ...] = ("MatMul", "Gemm")
"""Ops :func:`quantize` quantizes by default: the weight-heavy ones, where int8 saves size and time."""
DEFAULT_CALIBRATION_BATCHES = 16


def quantize(
    onnx_path: PathLike,
    output_path: PathLike,
    mode: Literal["dynamic", "static"] = "dynamic",
    calibration: Iterable[Inputs] | np.ndarray | None = None,
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
    op_types: Iterable[str] = QUANTIZED_OPS,
    calibration_batches: int = DEFAULT_CALIBRATION_BATCHES,
) -> Path:
    """Writes an int8 copy of an exported model, keeping its metadata.

    The file is first cleaned (the exporter's stale shape annotations dropped) and pre-processed with
    `quant_pre_process` (shape inference and graph optimization), then quantized.

    Args:
        onnx_path: the float32 `.onnx` file.
        output_path: the destination; missing parent directories are created.
        mode: "dynamic" (weights only; activation ranges computed at run time) or "static" (QDQ; activation ranges
            calibrated on `calibration`).
        calibration: for "static": raw model inputs, as an iterable of batches (arrays for a single-input model,
            or input name → array; torch tensors work too) or one array split into batches of 8 rows. At most
            `calibration_batches` batches are used.
        per_channel: quantize weights per output channel (more accurate) rather than per tensor.
        reduce_range: 7-bit weights, which run correctly on every CPU; False gives full 8-bit weights, slightly more
            accurate on CPUs with VNNI (or ARM) but wrong on x86 CPUs without it (a warning says so when this
            machine is one).
        op_types: the op types to quantize.
        calibration_batches: how many calibration batches to use.

    Returns:
        `output_path`.

    Raises:
        FileNotFoundError: if `onnx_path` does not exist.
        ValueError: for a file that is not a readable ONNX model, an unknown mode, "static" without calibration
            data (or with none usable), or calibration batches naming the wrong inputs.
    """
    source, output = Path(onnx_path), Path(output_path)
    model = _load(source)
    if mode not in ("dynamic", "static"):
        raise ValueError(f"mode must be 'dynamic' or 'static', got {mode!r}")
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    reader = CalibrationReader(calibration, names, calibration_batches) if mode == "static" else None
    with tempfile.TemporaryDirectory(prefix="mmsdk-quant-") as tmp, quiet_root_logging():
        cleaned, prepared, quantized = (Path(tmp) / name for name in ("clean.onnx", "pre.onnx", "quant.onnx"))
        model.graph.ClearField("value_info")  # the exporter's annotations can contradict onnx shape inference
        external = needs_external_data(model)
        if external:
            onnx.save(model, cleaned, save_as_external_data=True, all_tensors_to_one_file=True, location="clean.data")
        else:
            onnx.save(model, cleaned)
        pre_process(cleaned, prepared, external)
        scopes = float32_scopes(model)
        kept = float32_nodes(model, scopes) | float32_nodes(onnx.load(prepared, load_external_data=False), scopes)
        if not reduce_range and saturates_full_range():
            logger.warning(
                "quantize(reduce_range=False): this CPU has no VNNI, so ONNX Runtime's int8 products saturate here "
                "with 8-bit weights; the model will be inaccurate on such CPUs"
            )
        common: dict[str, Any] = {"per_channel": per_channel, "op_types_to_quantize": list(op_types)}
        common["reduce_range"] = reduce_range
        common["nodes_to_exclude"] = sorted(kept)
        common["use_external_data_format"] = external
        if reader is None:
            quantize_dynamic(prepared, quantized, weight_type=QuantType.QInt8, **common)
        else:
            quantize_static(
                prepared,
                quantized,
                reader,
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
                **common,
            )
            logger.debug("calibrated %s on %d batches", source.name, reader.used)
        result = onnx.load(quantized)
    _copy_metadata(model, result, f"int8-{mode}")
    _save(result, output)
    logger.info("quantized %s (%s int8) to %s", source, mode, output)
    return output


def saturates_full_range(cpuinfo: PathLike = "/proc/cpuinfo") -> bool:
    """Whether this machine is an x86 CPU with AVX2 but no VNNI, where ONNX Runtime's uint8 × int8 kernels saturate
    with full 8-bit weights (read from the `flags` line of `cpuinfo`; False where it cannot tell)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
    except (OSError, StopIteration, IndexError):
        return False
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags)


def to_fp16(onnx_path: PathLike, output_path: PathLike, *, op_block_list: Iterable[str] = FP16_BLOCKED_OPS) -> Path:
    """Writes a float16 copy of an exported model with float32 inputs and outputs, keeping its metadata.

    Args:
        onnx_path: the float32 `.onnx` file.
        output_path: the destination; missing parent directories are created.
        op_block_list: op types kept in float32 (default :data:`FP16_BLOCKED_OPS`).

    Returns:
        `output_path`.

    Raises:
        FileNotFoundError: if `onnx_path` does not exist.
        ValueError: for a file that is not a readable ONNX model.
    """
    source, output = Path(onnx_path), Path(output_path)
    model = _load(source)
    loaded = onnx.load(source)
    large = needs_external_data(loaded)
    if large:  # onnx's in-memory shape inference serializes the model: infer by path, then convert without it
        with tempfile.TemporaryDirectory(prefix="mmsdk-fp16-") as tmp:
            inferred = Path(tmp) / "inferred.onnx"
            onnx.shape_inference.infer_shapes_path(str(source), str(inferred))
            loaded = onnx.load(inferred)
    kept = sorted(float32_nodes(loaded, float32_scopes(loaded)))
    converted = convert_float_to_float16(
        loaded, keep_io_types=True, op_block_list=list(op_block_list), node_block_list=kept, disable_shape_infer=large
    )
    _drop_duplicate_nodes(converted)
    _copy_metadata(model, converted, "fp16")
    _save(converted, output)
    logger.info("converted %s to float16 at %s", source, output)
    return output


def _load(path: Path) -> onnx.ModelProto:
    """The model at `path`, checked by `onnx.checker`; a clear error for a missing, truncated or corrupt file."""
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    try:
        model = onnx.load(path)
        # the in-memory checker serializes the model, which protobuf refuses past 2 GB: check large ones by path
        onnx.checker.check_model(str(path) if needs_external_data(model) else model)
    except Exception as error:  # protobuf DecodeError, onnx ValidationError, ...
        raise ValueError(f"{path} is not a readable ONNX model (truncated or corrupt?): {error}") from error
    if not model.graph.node:
        raise ValueError(f"{path} is not a readable ONNX model (truncated or corrupt?): its graph has no nodes")
    return model


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Whether the model's initializers pass :data:`EXTERNAL_DATA_BYTES` (loaded external data included)."""
    total = 0
    for tensor in model.graph.initializer:
        total += len(tensor.raw_data) or tensor.ByteSize()
        if total > EXTERNAL_DATA_BYTES:
            return True
    return False


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto, precision: str) -> None:
    """Sets every `metadata_props` entry of `source` on `target` (the tools may add or drop entries) and
    `mmsdk.precision`."""
    entries = {p.key: p.value for p in target.metadata_props}
    entries.update({p.key: p.value for p in source.metadata_props})
    entries[PRECISION_KEY] = precision
    onnx.helper.set_model_props(target, entries)


def _drop_duplicate_nodes(model: onnx.ModelProto) -> None:
    """Removes repeated identical nodes: `convert_float_to_float16` inserts one Cast per blocked consumer of a
    float16 tensor, all with the same name and output, which ONNX Runtime rejects."""
    seen: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()
    kept = []
    for node in model.graph.node:
        key = (node.op_type, tuple(node.input), tuple(node.output))
        if key not in seen:
            seen.add(key)
            kept.append(node)
    if len(kept) < len(model.graph.node):
        logger.debug("dropped %d duplicate cast nodes", len(model.graph.node) - len(kept))
        del model.graph.node[:]
        model.graph.node.extend(kept)


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Writes the model through temporary files beside `path`, so a crash leaves no half-written model. A model whose
    weights pass :data:`EXTERNAL_DATA_BYTES` (protobuf cannot hold 2 GB) keeps them in `<name>.data` next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        if needs_external_data(model):
            data = f"{path.name}.data"
            onnx.save(model, staged, save_as_external_data=True, all_tensors_to_one_file=True, location=data)
            os.replace(Path(tmp) / data, path.parent / data)  # the weights first: the model names them
            logger.info("%s keeps its weights in %s (external data)", path.name, data)
        else:
            onnx.save(model, staged)
        os.replace(staged, path)
