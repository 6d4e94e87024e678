"""The adapter contract: every registered adapter tokenizes, trains under every objective and serves its tasks."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from tiny_configs import ENCODER_OVERRIDES, TINY, TINY_ENCODER
from torch import nn

from mmsdk.contracts.adapter import Adapter, ExportSpec, get_adapter_class
from mmsdk.contracts.registry import available_adapters
from mmsdk.models.config import ModelConfig
from mmsdk.config import Config
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tasks import Task
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.models import build_model, build_task_model
from mmsdk.models.objectives import Objective
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.transformer import TransformerConfig

ADAPTERS = available_adapters()
OBJECTIVES = ("mae", "bert", "causal")
BATCH = 2
NUM_OUTPUTS = 3
REQUIRED = ("name", "config_class", "tasks", "target_dim", "tokenize", "build_positions", "build_head")
REQUIRED += ("example_input", "export_spec")


def _config(name: str, objective: str = "mae") -> ModelConfig:
    if name not in TINY:
        pytest.fail(f"adapter {name!r} has no entry in tests/adapters/tiny_configs.py TINY; add a tiny config")
    encoder = TransformerConfig.from_dict({**TINY_ENCODER, **ENCODER_OVERRIDES.get(name, {})})
    return ModelConfig(adapter=name, adapter_config=TINY[name], encoder=encoder, objective=objective)  # type: ignore[arg-type]


def _tokenize(model: Objective, seed: int = 0) -> tuple[torch.Tensor, TokenBatch]:
    raw = model.adapter.example_input(BATCH, torch.Generator().manual_seed(seed))
    return raw, model.adapter.tokenize(raw).validate()


def test_registry_is_not_empty() -> None:
    assert "patchtst" in ADAPTERS


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_class_surface(name: str) -> None:
    cls = get_adapter_class(name)
    assert issubclass(cls, Adapter)
    missing = [attr for attr in REQUIRED if not hasattr(cls, attr)]
    assert not missing, f"{cls.__name__} lacks {missing}"
    assert cls.name == name
    assert issubclass(cls.config_class, Config)
    assert cls.tasks and set(cls.tasks) <= set(get_args(Task)), cls.tasks
    adapter = cls(cls.config_class.from_dict(TINY[name]), TINY_ENCODER["dim"])
    assert isinstance(adapter.target_dim, int) and adapter.target_dim >= 1
    assert isinstance(adapter.export_spec(), ExportSpec)
    positions = adapter.build_positions(8)
    assert positions is None or isinstance(positions, nn.Module)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_trains_under_objective(name: str, objective: str) -> None:
    model = build_model(_config(name, objective))
    adapter = model.adapter
    raw, batch = _tokenize(model)
    b, n = batch.batch_size, batch.num_tokens
    assert b >= BATCH and batch.dim == TINY_ENCODER["dim"]
    assert batch.targets is not None
    assert batch.targets.shape == (b, n, adapter.target_dim)
    if batch.target_mask is not None:
        assert batch.target_mask.shape == batch.targets.shape
    assert (
        batch.positions is None
        or model.backbone.positions is None
        or (model.backbone.positions(batch.positions).shape == (b, n, batch.dim))
    )

    mask = random_mask(b, n, 0.5, generator=torch.Generator().manual_seed(1), padding_mask=batch.padding_mask)
    model.train()
    out = model(batch, mask)
    if type(adapter).build_pretrain_head is Adapter.build_pretrain_head:
        assert out.pred.shape == (b, n, adapter.target_dim)
    else:  # the adapter's own head predicts something else (e.g. distribution parameters) per token
        assert out.pred.shape[:2] == (b, n)
    if objective == "causal":
        loss = adapter.next_token_loss(out.pred, batch)
    else:
        loss = adapter.reconstruction_loss(out.pred, batch, out.hidden)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)  # type: ignore[union-attr]

    model.eval()
    with torch.no_grad():
        first = model(model.tokenize(raw), mask).pred
        second = model(model.tokenize(raw), mask).pred
    torch.testing.assert_close(first, second, atol=0, rtol=0)


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_serves_every_task(name: str) -> None:
    cls = get_adapter_class(name)
    for task in cls.tasks:
        model = build_task_model(_config(name), HeadConfig(task=task, num_outputs=NUM_OUTPUTS)).eval()  # type: ignore[arg-type]
        raw = model.adapter.example_input(BATCH, torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = model(raw)
        assert out.shape[0] == BATCH, (task, tuple(out.shape))
        assert torch.isfinite(out).all(), task
        if task in ("classification", "regression"):
            assert out.shape == (BATCH, NUM_OUTPUTS), (task, tuple(out.shape))
    unsupported = sorted(set(get_args(Task)) - set(cls.tasks))
    for task in unsupported:
        with pytest.raises(ValueError, match=task):
            build_task_model(_config(name), HeadConfig(task=task))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ADAPTERS)
def test_example_input_is_seeded(name: str) -> None:
    cls = get_adapter_class(name)
    adapter = cls(cls.config_class.from_dict(TINY[name]), TINY_ENCODER["dim"])
    first = adapter.example_input(BATCH, torch.Generator().manual_seed(3))
    second = adapter.example_input(BATCH, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert first.shape[0] == BATCH
