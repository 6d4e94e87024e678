"""Moirai's covariate dropout: whole covariates hidden per training sample, never the targets, never at inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mmsdk.adapters.timeseries.covariates import KNOWN, PAST, SERIES
from mmsdk.contracts.heads import HeadConfig
from mmsdk.hub import load_backbone, save_pretrained
from mmsdk.models import TaskModel
from mmsdk.models.config import ModelConfig

L, P, H = 32, 8, 12  # context, patch, horizon
ENCODER = {"dim": 32, "depth": 2, "heads": 2, "rope": "1d", "variate_bias": True}


def config(dropout: float, past: int = 1, known: int = 2) -> dict[str, Any]:
    spec = {"context_length": L, "num_channels": 1, "past_covariates": past, "known_covariates": known,
            "patch_sizes": [P], "patch_size": P, "max_variates": 8, "covariate_dropout": dropout}  # fmt: skip
    return {"adapter": "moirai", "adapter_config": spec, "encoder": ENCODER, "objective": "bert"}


def task_model(dropout: float) -> TaskModel:
    torch.manual_seed(0)
    return TaskModel(ModelConfig.from_dict(config(dropout)), HeadConfig(task="forecast", num_outputs=H))


def inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        SERIES: torch.randn(batch, L, 1, generator=g),
        PAST: torch.randn(batch, L, 1, generator=g),
        KNOWN: torch.randn(batch, L + H, 2, generator=g),
    }


def test_dropout_hides_whole_covariates_at_the_configured_rate_and_never_the_targets() -> None:
    adapter = task_model(0.4).backbone.adapter.train()
    torch.manual_seed(1)
    batch = adapter.tokenize(inputs(500))
    v, n = 4, L // P  # 1 target + 1 past + 2 known variates, N patches each
    is_mask = (batch.tokens == adapter.mask_token).all(dim=-1).reshape(500, v, n)  # (B, V, N)
    scored = batch.target_mask.any(dim=-1).reshape(500, v, n)  # (B, V, N)
    whole = is_mask.all(dim=-1)  # (B, V): every token of the variate hidden
    assert torch.equal(is_mask, whole.unsqueeze(-1).expand_as(is_mask)), "a covariate is hidden whole or not at all"
    assert torch.equal(scored, ~is_mask), "hidden tokens leave the loss, the others stay in it"
    assert not whole[:, 0].any(), "the target is never dropped"
    rate = whole[:, 1:].float().mean().item()  # 1500 draws: std 0.013
    assert abs(rate - 0.4) < 0.06, rate
    assert whole[:, 1:].any(dim=0).all() and (~whole[:, 1:]).any(dim=0).all()  # drawn per sample, per covariate


def test_forecast_slots_of_a_dropped_covariate_are_hidden_with_its_context() -> None:
    """The training forward of the forecast head re-tokenizes the extended window: a known covariate's horizon
    values are dropped together with its context (one draw per covariate over the whole window)."""
    model = task_model(0.5).train()
    torch.manual_seed(2)
    adapter, head = model.backbone.adapter, model.head
    window = head.extended_inputs(adapter.tokenize(inputs(64)))
    batch = adapter.tokenize(window)
    n = batch.tokens.shape[1] // 4  # context patches + forecast slots per variate
    is_mask = (batch.tokens == adapter.mask_token).all(dim=-1).reshape(64, 4, n)
    known = is_mask[:, 2:]  # (B, 2, N): known covariates have values in every slot unless dropped
    assert torch.equal(known, known[..., :1].expand_as(known))
    assert known.any() and not known.all()


def test_inference_never_drops_and_the_field_changes_no_weights(tmp_path: Path) -> None:
    plain, dropped = task_model(0.0).eval(), task_model(0.9).eval()
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    dropped.load_state_dict(plain.state_dict())
    x = inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x), rtol=0, atol=0)
    save_pretrained(plain, tmp_path / "pre")
    report = load_backbone(task_model(0.3), tmp_path / "pre")  # a free field: fine-tune a backbone with dropout
    assert not report.missing


def test_train_mode_outputs_differ_and_gradients_flow() -> None:
    model = task_model(0.5).train()
    x = inputs(16)
    torch.manual_seed(3)
    y = model(x)
    y.square().mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "input_projections" in n)
    torch.manual_seed(4)
    with torch.no_grad():
        assert not torch.allclose(model(x), y.detach())


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_bad_rates_name_the_field(rate: float) -> None:
    with pytest.raises(ValueError, match=r"covariate_dropout.*must be in \[0, 1\)"):
        ModelConfig.from_dict(config(rate))
