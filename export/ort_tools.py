"""ONNX Runtime quantization plumbing shared by :mod:`mmsdk.export.quantization`: the calibration reader, the
pre-processing step and a guard against the tools' root-logger output. numpy, onnx and onnxruntime only (no torch).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader
from onnxruntime.quantization.shape_inference import quant_pre_process

logger = logging.getLogger("mmsdk.export.quantization")

Inputs = np.ndarray | Mapping[str, np.ndarray]
CALIBRATION_CHUNK = 8  # rows per calibration batch when calibration data is one array


@contextlib.contextmanager
def quiet_root_logging() -> Iterator[None]:
    """Holds the root logger at WARNING while ONNX Runtime's quantization tools run: they report every tensor they
    skip with `logging.info` on the root logger, hundreds of lines a user did not ask for."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


class CalibrationReader(CalibrationDataReader):
    """Feeds at most `limit` calibration batches, as input name → float32 array, to `quantize_static`."""

    def __init__(self, data: Iterable[Inputs] | np.ndarray | None, names: list[str], limit: int) -> None:
        if data is None:
            raise ValueError(
                "static quantization needs calibration data: pass `calibration`, batches of the model's raw inputs "
                f"{names} (e.g. a (N, ...) array or an iterable of arrays/dicts); or use mode='dynamic'"
            )
        if limit < 1:
            raise ValueError(f"calibration_batches must be >= 1, got {limit}")
        if isinstance(data, np.ndarray):
            data = [data[i : i + CALIBRATION_CHUNK] for i in range(0, len(data), CALIBRATION_CHUNK)]
        self.batches: list[dict[str, np.ndarray]] = []
        for batch in data:
            if len(self.batches) == limit:
                break
            self.batches.append(self._named(batch, names))
        if not self.batches:
            raise ValueError("static quantization got empty calibration data: pass at least one batch")
        self.used = len(self.batches)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    @staticmethod
    def _named(batch: Inputs, names: list[str]) -> dict[str, np.ndarray]:
        if not isinstance(batch, Mapping):
            if len(names) != 1:
                raise ValueError(f"the model takes inputs {names}: pass calibration batches as dicts")
            batch = {names[0]: batch}
        if set(batch) != set(names):
            raise ValueError(f"calibration batches must name the model's inputs {names}, got {sorted(batch)}")
        return {name: np.asarray(value, dtype=np.float32) for name, value in batch.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.batches)


def pre_process(source: Path, target: Path, external_data: bool = False) -> None:
    """`quant_pre_process` (shape inference and graph optimization); without the symbolic shape inference when that
    fails (it cannot follow some graphs, e.g. Point-MAE's grouping: an Expand of an unknown shape), as ONNX's own
    shape inference and the optimizer still apply."""
    options: dict[str, object] = {}
    if external_data:  # weights past protobuf's 2 GB: written beside the target as <target>.data
        options = {"save_as_external_data": True, "all_tensors_to_one_file": True}
        options["external_data_location"] = f"{target.name}.data"
    try:
        quant_pre_process(str(source), str(target), **options)
    except Exception as error:  # TypeError/KeyError/... from inside the symbolic shape inference
        logger.debug("symbolic shape inference failed (%s: %s); pre-processing without it", type(error).__name__, error)
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True, **options)


def float32_scopes(model: onnx.ModelProto) -> list[str]:
    """The module scopes the exporter marked as float32-only (`mmsdk.float32_scopes`, e.g. an audio front end)."""
    for entry in model.metadata_props:
        if entry.key == "mmsdk.float32_scopes":
            return [str(scope) for scope in json.loads(entry.value)]
    return []


def float32_nodes(model: onnx.ModelProto, scopes: Iterable[str]) -> set[str]:
    """Names of the nodes inside `scopes`: those the exporter recorded under one of them (`namespace`), and those
    reading a weight of one (initializer names keep the module path, even after graph optimization renames nodes)."""
    scopes = list(scopes)
    if not scopes:
        return set()
    weights = {t.name for t in model.graph.initializer if any(f"{scope}." in t.name for scope in scopes)}
    kept = set()
    for node in model.graph.node:
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if weights.intersection(node.input) or any(f"{scope}: " in namespace for scope in scopes):
            kept.add(node.name)
    if kept:
        logger.debug("kept in float32: %d nodes of %s", len(kept), scopes)
    return kept
