"""`to_onnx(optimize=...)`: onnxscript's optimizer and its ONNX Runtime fusions on a tiny task model, verified against
eager PyTorch.

Export verifies the optimized file against eager within the adapter's tolerance (it raises otherwise), and the node
count before the optimizer is that of the plain export (the same trace), so one export checks both. Every adapter
family's embedding model is exported through the optimizer by the adapter contract suite
(`tests/adapters/test_contract.py::test_embedding_model_exports_to_onnx`); here one time-series model checks the
log, the metadata and the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import support
import torch

from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.export.onnx import to_onnx
from mmsdk.models import build_task_model

CONTRACT = support.contract_suite()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny graphs: threads cost more than they give on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("how", ["onnxscript", "onnxruntime"])
def test_optimized_export_verifies_and_has_no_more_nodes(
    how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = "patchtst"
    torch.manual_seed(0)
    task = get_adapter_class(name).tasks[0]
    model = build_task_model(CONTRACT._config(name), {"task": task, "num_outputs": CONTRACT.NUM_OUTPUTS}).eval()
    with caplog.at_level(logging.INFO, logger="mmsdk.export.onnx"):
        result = to_onnx(model, tmp_path / "optimized.onnx", verify_batch_sizes=(1,), optimize=how)
    assert result.verified and max(result.max_abs_error.values()) <= result.tolerance
    assert result.nodes_before_optimization is not None and 0 < result.nodes <= result.nodes_before_optimization
    assert f"{result.nodes_before_optimization} → {result.nodes} nodes" in caplog.text
    saved = onnx.load(str(result.path))
    assert len(saved.graph.node) == result.nodes  # no subgraphs in these models
    assert {p.key: p.value for p in saved.metadata_props} == result.metadata  # metadata kept through the rewrite
    assert f"{result.nodes} nodes ({result.nodes_before_optimization} before optimization)" in result.summary()
    if how == "onnxruntime":  # attention and the residual layer norms fused into ONNX Runtime's own ops
        assert result.nodes < result.nodes_before_optimization
        assert {"MultiHeadAttention", "SkipLayerNormalization"} <= {n.op_type for n in saved.graph.node}


def test_unknown_optimization_is_refused(tmp_path: Path) -> None:
    model = build_task_model(CONTRACT._config("patchtst"), {"task": "forecast", "num_outputs": CONTRACT.NUM_OUTPUTS})
    with pytest.raises(ValueError, match="optimize must be 'none', 'onnxscript' or 'onnxruntime'"):
        to_onnx(model.eval(), tmp_path / "x.onnx", optimize="fast")  # type: ignore[arg-type]
