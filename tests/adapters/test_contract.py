"""The adapter contract, timm-style: one parametrized suite over every registered adapter × objective × task.

Each adapter is built from its own `example_config()` with one shared tiny encoder; nothing below names an
adapter. A new adapter (registered by entry point or `register_adapter`) gets every check with no new test code:
a concrete class, training under every objective, padding that changes nothing, exact save/load round trips,
ONNX export matching eager for every task (and for the embedding model through the graph optimizer), and
`torch.compile(fullgraph=True)` of the pretraining forward + loss and of every task forward.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mmsdk.config import Config
from mmsdk.contracts.adapter import Adapter, ExportSpec, get_adapter_class
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import ADAPTERS, OBJECTIVES, TASKS
from mmsdk.export.onnx import to_onnx
from mmsdk.hub import from_pretrained, save_pretrained
from mmsdk.models import EmbeddingModel, build_model, build_task_model
from mmsdk.models.objectives import Objective

ENCODER: dict[str, Any] = {"dim": 16, "depth": 1, "heads": 2, "rope": "1d", "variate_bias": True}
BATCH = 2
NUM_OUTPUTS = 3
ADAPTER_NAMES = ADAPTERS.names()
OBJECTIVE_NAMES = OBJECTIVES.names()
ADAPTER_TASKS = [(name, task) for name in ADAPTER_NAMES for task in get_adapter_class(name).tasks]


def _config(name: str, objective: str = "mae") -> dict[str, Any]:
    cls = get_adapter_class(name)
    return {"adapter": name, "adapter_config": cls.example_config(), "encoder": ENCODER, "objective": objective}


def _raw(model: nn.Module, batch_size: int = BATCH, seed: int = 0) -> Any:
    return model.backbone.adapter.example_input(batch_size, torch.Generator().manual_seed(seed))


def _mask(model: Objective, raw: Any, seed: int = 1) -> Mask:
    batch = model.tokenize(raw)
    return random_mask(
        batch.batch_size, batch.num_tokens, 0.5, torch.Generator().manual_seed(seed), None, batch.padding_mask
    )


def _loss(model: Objective, raw: Any, mask: Mask) -> torch.Tensor:
    batch = model.tokenize(raw)
    terms = model.loss(batch, model(batch, mask), mask)
    return sum(terms.values())  # type: ignore[return-value]


def test_the_registry_holds_the_built_in_families() -> None:
    assert {"patchtst", "timerxl", "moirai", "pointmae", "ssast", "audiomae"} <= set(ADAPTER_NAMES)
    assert {"mae", "bert", "causal"} <= set(OBJECTIVE_NAMES)
    assert {"forecast", "classification", "regression", "multilabel"} <= set(TASKS.names())


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_adapter_class_is_concrete_and_consistent(name: str) -> None:
    cls = get_adapter_class(name)
    assert issubclass(cls, Adapter) and not inspect.isabstract(cls), sorted(getattr(cls, "__abstractmethods__", ()))
    assert cls.name == name and issubclass(cls.config_class, Config)
    assert cls.tasks and all(task in TASKS for task in cls.tasks), cls.tasks
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    assert set(cls.free_fields) <= fields, set(cls.free_fields) - fields
    adapter = cls(cls.config_class.from_dict(cls.example_config()), ENCODER["dim"])
    assert isinstance(adapter.target_dim, int) and adapter.target_dim >= 1
    assert isinstance(adapter.export_spec(), ExportSpec)
    positions = adapter.build_positions(8)
    assert positions is None or isinstance(positions, nn.Module)
    first = adapter.example_input(BATCH, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, adapter.example_input(BATCH, torch.Generator().manual_seed(3)), atol=0, rtol=0)
    assert first.shape[0] == BATCH


def test_an_adapter_missing_a_method_is_rejected() -> None:
    from mmsdk.contracts.registry import register_adapter

    class Incomplete(Adapter):  # no tokenize, target_dim, build_head or example_input
        name = "test_contract_incomplete"
        config_class = Config
        tasks = ("classification",)

    assert inspect.isabstract(Incomplete)
    with pytest.raises(TypeError, match="abstract"):
        register_adapter(Incomplete)


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_trains_under_every_objective(name: str, objective: str) -> None:
    model = build_model(_config(name, objective)).train()
    raw = _raw(model)
    batch = model.tokenize(raw)
    assert batch.dim == ENCODER["dim"] and batch.targets is not None
    assert batch.targets.shape[:2] == (batch.batch_size, batch.num_tokens)
    assert batch.targets.shape[-1] == model.adapter.target_dim
    out = model.step(raw, None, torch.Generator().manual_seed(1))
    assert out.terms and all(t.dim() == 0 and torch.isfinite(t) for t in out.terms.values()), out.terms
    assert out.prediction.pred.shape[:2] == (batch.batch_size, batch.num_tokens)
    out.loss.backward()
    grads = [p.grad for p in model.backbone.encoder.parameters() if p.grad is not None]  # unused: a variate bias
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    adapter_grads = [p.grad for p in model.adapter.parameters() if p.grad is not None]
    assert adapter_grads and any(float(g.abs().sum()) > 0 for g in adapter_grads)  # the tokenizer learns too
    model.eval()
    mask = out.mask
    with torch.no_grad():
        torch.testing.assert_close(model(batch, mask).pred, model(batch, mask).pred, atol=0, rtol=0)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_padding_tokens_change_nothing(name: str) -> None:
    """Tokens marked as padding reach neither the real tokens' features nor the loss, whatever they hold."""
    model = build_model(_config(name, "bert")).eval()
    batch = model.tokenize(_raw(model))
    real = torch.ones(batch.batch_size, batch.num_tokens, dtype=torch.bool)
    real[:, -2:] = False
    padded = batch.replace(padding_mask=real)
    noisy = padded.replace(tokens=torch.where(real.unsqueeze(-1), batch.tokens, 1e3 * torch.randn_like(batch.tokens)))
    if batch.targets is not None:
        noisy = noisy.replace(targets=torch.where(real.unsqueeze(-1), batch.targets, -1e3))
    mask = random_mask(batch.batch_size, batch.num_tokens, 0.4, torch.Generator().manual_seed(2), None, real)
    assert bool(mask.hidden[~real].all())  # strategies hide padding first
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(noisy)[real], model.backbone(padded)[real], atol=1e-5, rtol=1e-5)
        first, second = (model.loss(b, model(b, mask), mask) for b in (padded, noisy))
    for term in first:
        torch.testing.assert_close(second[term], first[term], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_pretraining_model_save_load_round_trip_is_exact(name: str, objective: str, tmp_path: Path) -> None:
    model = build_model(_config(name, objective)).eval()
    raw = _raw(model)
    mask = _mask(model, raw) if model.uses_mask else None
    loaded = from_pretrained(save_pretrained(model, tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(loaded.tokenize(raw), mask).pred, model(model.tokenize(raw), mask).pred, atol=0, rtol=0
        )


@pytest.mark.parametrize(("name", "task"), ADAPTER_TASKS)
def test_task_model_serves_trains_and_round_trips(name: str, task: str, tmp_path: Path) -> None:
    model = build_task_model(_config(name), {"task": task, "num_outputs": NUM_OUTPUTS})
    raw = _raw(model)
    outputs = model(raw)
    assert outputs.shape[0] == BATCH and torch.isfinite(outputs).all()
    if TASKS.get(task).output == "vector":
        assert outputs.shape == (BATCH, NUM_OUTPUTS)
    else:
        assert outputs.shape[:2] == (BATCH, NUM_OUTPUTS)
    targets = model.task.example_targets(outputs, torch.Generator().manual_seed(0))
    loss, metrics = model.task.evaluate(outputs, targets)
    assert loss.dim() == 0 and torch.isfinite(loss) and all(torch.isfinite(v) for v in metrics.values())
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.head.parameters())
    model.eval()
    loaded = from_pretrained(save_pretrained(model, tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(raw), model(raw), atol=0, rtol=0)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_unsupported_tasks_are_refused_by_name(name: str) -> None:
    for task in sorted(set(TASKS.names()) - set(get_adapter_class(name).tasks)):
        with pytest.raises(ValueError, match=task):
            build_task_model(_config(name), {"task": task})


def _count_traces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts torch.export.export calls (the ONNX exporter's capture)."""
    calls: list[int] = []
    export = torch.export.export

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", counted)
    return calls


# One export per adapter and kind of output: an adapter's head is the same module for classification, multilabel and
# regression (the task changes the loss, not the graph), so those exports traced one graph three times.
_FIRST_OF_KIND: dict[tuple[str, str], tuple[str, str]] = {}
for _name, _task in ADAPTER_TASKS:
    _FIRST_OF_KIND.setdefault((_name, TASKS.get(_task).output), (_name, _task))
EXPORT_TASKS = list(_FIRST_OF_KIND.values())


@pytest.mark.parametrize(("name", "task"), EXPORT_TASKS)
def test_task_model_exports_to_onnx(name: str, task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_task_model(_config(name), {"task": task, "num_outputs": NUM_OUTPUTS})
    traces = _count_traces(monkeypatch)
    result = to_onnx(model, tmp_path / "task.onnx", verify_batch_sizes=(1, 3))  # raises on any mismatch
    assert result.verified and set(result.max_abs_error) == {1, 3}
    # the ExportSpec's dynamic axes and min_sizes hold for the model: no failed trace, no second one
    assert len(traces) == 1


QUANTILE_TASKS = [(name, task) for name, task in ADAPTER_TASKS if TASKS.get(task).quantile_outputs]
LEVELS = (0.1, 0.5, 0.9)


@pytest.mark.parametrize(("name", "task"), QUANTILE_TASKS)
def test_quantile_heads_train_round_trip_export_and_compile(name: str, task: str, tmp_path: Path) -> None:
    """A head with `HeadConfig.quantiles` returns {primary output, quantiles (..., Q)}, trains on both, saves and
    loads exactly, exports them as named ONNX outputs (each verified) and compiles as one graph."""
    model = build_task_model(_config(name), {"task": task, "num_outputs": NUM_OUTPUTS, "quantiles": LEVELS})
    raw = _raw(model)
    outputs = model(raw)
    first, quantiles = outputs.values()
    assert quantiles.shape == (*first.shape, len(LEVELS)) and bool((quantiles.diff(dim=-1) >= 0).all())
    loss, _ = model.task.evaluate(outputs, model.task.example_targets(outputs, torch.Generator().manual_seed(0)))
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.head.parameters())
    model.eval()
    loaded = from_pretrained(save_pretrained(model, tmp_path / "saved"))
    with torch.no_grad():
        for key, value in loaded(raw).items():
            torch.testing.assert_close(value, model(raw)[key], atol=0, rtol=0)
    result = to_onnx(model, tmp_path / "quantiles.onnx", verify_batch_sizes=(1, 3))
    assert result.verified and result.output_names == tuple(outputs)
    with torch.no_grad():
        compiled = _compiled(model)(raw)
        for key, value in model(raw).items():
            torch.testing.assert_close(compiled[key], value, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_embedding_model_exports_to_onnx(name: str, tmp_path: Path) -> None:
    """Exported through the ONNX Runtime fusions (the task exports above are plain): the optimized file matches eager
    and has no more nodes than the exporter's graph."""
    model = EmbeddingModel(build_model(_config(name, "bert")).backbone)
    result = to_onnx(model, tmp_path / "embedding.onnx", verify_batch_sizes=(2,), optimize="onnxruntime")
    assert result.verified and result.metadata["mmsdk.kind"] == "embedding"
    assert result.nodes_before_optimization is not None and 0 < result.nodes <= result.nodes_before_optimization


def _compiled(fn: Any) -> Any:
    """`torch.compile(fullgraph=True)` through AOTAutograd (any graph break fails; no C++ compiler needed)."""
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_pretraining_forward_and_loss_compile_without_graph_breaks(name: str, objective: str) -> None:
    model = build_model(_config(name, objective)).eval()
    raw = _raw(model)
    mask = _mask(model, raw)

    def step(inputs: torch.Tensor, ids_keep: torch.Tensor, ids_restore: torch.Tensor, hidden: torch.Tensor):
        return _loss(model, inputs, Mask(ids_keep, ids_restore, hidden, hidden))

    args = (raw, mask.ids_keep, mask.ids_restore, mask.hidden)
    compiled = _compiled(step)(*args)
    torch.testing.assert_close(compiled, step(*args), atol=1e-5, rtol=1e-5)
    compiled.backward()  # the compiled graph has a backward


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task"), ADAPTER_TASKS)
def test_task_forward_compiles_without_graph_breaks(name: str, task: str) -> None:
    model = build_task_model(_config(name), {"task": task, "num_outputs": NUM_OUTPUTS}).eval()
    raw = _raw(model)
    with torch.no_grad():
        torch.testing.assert_close(_compiled(model)(raw), model(raw), atol=1e-5, rtol=1e-5)


CLASSIFIERS = [name for name, task in ADAPTER_TASKS if task == "classification"]


def _class_token_model(name: str) -> nn.Module:
    head = {"task": "classification", "num_outputs": NUM_OUTPUTS, "pooling": "first"}
    return build_task_model({**_config(name), "class_tokens": 1}, head)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_a_class_token_head_reads_the_class_token_trains_and_round_trips(name: str, tmp_path: Path) -> None:
    """(Its ONNX export is the same concatenation for every adapter: tests/models/test_class_tokens.py exports it.)"""
    model = _class_token_model(name)
    raw = _raw(model)
    model(raw).logsumexp(dim=-1).sum().backward()
    grad = model.backbone.cls_token.grad
    assert grad is not None and float(grad.abs().sum()) > 0  # the class token learns
    model.eval()
    with torch.no_grad():
        before = model(raw)
        token = model.backbone.cls_token
        token.add_(torch.randn(token.shape, generator=torch.Generator().manual_seed(0)))
        assert not torch.allclose(model(raw), before)  # and the head reads it
        loaded = from_pretrained(save_pretrained(model, tmp_path / "model"))
        torch.testing.assert_close(loaded(raw), model(raw), atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_a_class_token_head_compiles_without_graph_breaks(name: str) -> None:
    model = _class_token_model(name).eval()
    raw = _raw(model)
    with torch.no_grad():
        torch.testing.assert_close(_compiled(model)(raw), model(raw), atol=1e-5, rtol=1e-5)
