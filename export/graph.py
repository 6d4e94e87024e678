"""What happens to an exported graph before it is saved: the exporter's errors translated into what to change, a
check that every requested dynamic axis stayed dynamic, an optional rewrite (onnxscript's optimizer or its ONNX
Runtime fusions) and node counts. The graphs are onnx_ir models (`ONNXProgram.model`)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

logger = logging.getLogger("mmsdk.export.onnx")

_MISSING_OP = re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'")


@contextlib.contextmanager
def exporter_errors(model_name: str) -> Iterator[None]:
    """Re-raises the exporter's failures as ValueError saying what to change: an op without an ONNX translation is
    named (its full report stays attached as the cause)."""
    try:
        yield
    except torch.onnx.OnnxExporterError as error:
        text = str(error)
        missing = sorted(set(_MISSING_OP.findall(text)))
        if missing:
            raise ValueError(
                f"cannot export {model_name} to ONNX: {', '.join(missing)} has no ONNX translation; replace it with "
                "ops that have one (or compute it outside the exported model)"
            ) from error
        summary = text.split("## Exception summary", 1)[-1].strip().splitlines()
        raise ValueError(
            f"cannot export {model_name} to ONNX: {summary[0] if summary else type(error).__name__}"
        ) from error


def check_dynamic_axes(model: Any, axes: Mapping[str, Mapping[int, str]], model_name: str) -> None:
    """Raises ValueError when the exporter fixed an axis the export asked to keep dynamic: the model's forward tied
    its size to a constant (a tensor built with a fixed size, a Python branch on the size), so the file would only
    accept that size."""
    for value in model.graph.inputs:
        for axis, name in axes.get(value.name, {}).items():
            dim = value.shape[axis] if value.shape is not None else None
            if isinstance(dim, int):
                raise ValueError(
                    f"cannot export {model_name} with a dynamic {name!r} axis: the exporter fixed axis {axis} of input "
                    f"{value.name!r} to {dim}, because the model's forward ties that size to a constant (e.g. a tensor "
                    "created with a fixed size, or a branch on the size); make it follow the input's size"
                    + (", or export with dynamic_batch=False" if name == "batch" else "")
                )


def node_count(model: Any) -> int:
    """The nodes of an onnx_ir Model's graph, those of subgraphs (If, Loop, Scan bodies) included."""
    return sum(1 for _ in model.graph.all_nodes())


def optimize_graph(program: Any, how: str, quiet: Callable[[], Any]) -> int:
    """Rewrites the program's model in place with onnxscript's optimizer or its ONNX Runtime fusions (metadata_props
    kept) and returns the node count before; the counts are logged."""
    import onnxscript.optimizer
    from onnxscript.rewriter import ort_fusions

    before = node_count(program.model)
    metadata = dict(program.model.metadata_props)
    start = time.perf_counter()
    with quiet():
        if how == "onnxscript":
            program.model = onnxscript.optimizer.optimize(program.model)
        else:
            program.model, fused = ort_fusions.optimize_for_ort(program.model)
            logger.debug("onnxruntime fusions: %s", {name: n for name, n in fused.items() if n})
    program.model.metadata_props.update(metadata)  # a rewritten model keeps what _finalize stored
    after = node_count(program.model)
    logger.info(
        "%s optimization: %d → %d nodes (%+d) in %.2f s",
        how,
        before,
        after,
        after - before,
        time.perf_counter() - start,
    )
    return before
