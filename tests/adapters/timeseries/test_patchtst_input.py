"""PatchTST input validation and missing values."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mmsdk.adapters.timeseries import PatchTSTAdapter, PatchTSTConfig
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.contracts.masking import mask_from_noise
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.models import build_model
from mmsdk.models.config import ModelConfig

L, C, P = 32, 3, 8
CONFIG: dict[str, Any] = {"context_length": L, "num_channels": C, "patch_len": P, "stride": P}


def _adapter(**changes: Any) -> PatchTSTAdapter:
    return PatchTSTAdapter(PatchTSTConfig(**{**CONFIG, **changes}), dim=16)


@pytest.mark.parametrize(
    ("inputs", "pattern"),
    [
        (torch.randn(L, C), r"\(batch, time, channels\)"),
        (torch.randn(2, L, C, 1), r"\(batch, time, channels\)"),
        (torch.randn(2, L - 1, C), "context_length=32"),
        (torch.randn(2, L + 5, C), "context_length=32"),
        (torch.randn(2, L, C + 1), "num_channels=3"),
        (torch.randn(2, L, 1), "num_channels=3"),
        (torch.randint(0, 5, (2, L, C)), "floating-point"),
        (torch.randn(0, L, C), "empty batch"),
    ],
)
def test_bad_inputs_name_the_problem(inputs: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        _adapter().tokenize(inputs)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_inf_is_rejected(value: float) -> None:
    x = torch.randn(2, L, C)
    x[1, 5, 2] = value
    with pytest.raises(ValueError, match="Inf"):
        _adapter().tokenize(x)


def test_context_shorter_than_one_patch_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="context_length"):
        PatchTSTConfig(context_length=4, patch_len=8)
    with pytest.raises(ValueError, match="context_length"):
        ModelConfig(adapter="patchtst", adapter_config={"context_length": 4, "patch_len": 8})


@pytest.mark.parametrize("field", ["num_channels", "patch_len", "stride"])
def test_non_positive_sizes_are_config_errors(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PatchTSTConfig(**{**CONFIG, field: 0})


def test_num_patches_matches_tokens() -> None:
    for padding in ("none", "end"):
        for stride in (4, 8):
            adapter = _adapter(padding_patch=padding, stride=stride)
            batch = adapter.tokenize(adapter.example_input(2)).validate()
            assert batch.num_tokens == adapter.config.num_patches
            assert batch.batch_size == 2 * C


@pytest.mark.parametrize("revin", [True, False])
def test_nan_values_are_missing(revin: bool) -> None:
    model = build_model(
        ModelConfig(
            adapter="patchtst",
            adapter_config={**CONFIG, "revin": revin, "padding_patch": "none"},
            encoder=TransformerConfig(dim=16, depth=1, heads=2),
            objective="bert",
        )
    )
    x = model.adapter.example_input(2)
    x[0, 3:6, 1] = float("nan")  # inside patch 0 of channel 1 of sample 0
    x[1, 17, 0] = float("nan")  # patch 2 of channel 0 of sample 1
    batch = model.tokenize(x)
    assert torch.isfinite(batch.tokens).all() and batch.target_mask is not None and batch.targets is not None
    assert torch.isfinite(batch.targets).all()
    # sequence index is sample * C + channel
    assert not bool(batch.target_mask[0 * C + 1, 0, 3:6].any())
    assert bool(batch.target_mask[0 * C + 1, 0, :3].all()) and bool(batch.target_mask[0 * C + 1, 0, 6:].all())
    assert not bool(batch.target_mask[1 * C + 0, 2, 1])
    assert int((~batch.target_mask).sum()) == 4
    mask = random_mask(batch.batch_size, batch.num_tokens, 0.5, generator=torch.Generator().manual_seed(0))
    every = torch.ones_like(mask.target)  # count every token, including the ones with missing values
    out = model(batch, mask)
    loss = model.adapter.reconstruction_loss(out.pred, batch, every)["mse"]
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_missing_values_do_not_change_the_statistics_of_observed_ones() -> None:
    adapter = _adapter()
    x = adapter.example_input(1)
    with_nan = x.clone()
    with_nan[0, 10, 0] = float("nan")
    dropped = torch.cat([x[0, :10, 0], x[0, 11:, 0]])
    batch = adapter.tokenize(with_nan)
    torch.testing.assert_close(batch.context["loc"][0, 0, 0], dropped.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.context["scale"][0, 0, 0], dropped.std(unbiased=False), atol=1e-3, rtol=1e-3)


def test_all_nan_channel_produces_finite_tokens() -> None:
    adapter = _adapter()
    x = adapter.example_input(2)
    x[0, :, 2] = float("nan")
    batch = adapter.tokenize(x).validate()
    assert torch.isfinite(batch.tokens).all() and torch.isfinite(batch.targets).all()
    assert not bool(batch.target_mask[2].any())  # sample 0, channel 2: nothing observed
    assert bool(batch.target_mask[3:].all())
    assert torch.isfinite(batch.context["loc"]).all() and torch.isfinite(batch.context["scale"]).all()


@pytest.mark.parametrize(("length", "stride", "offset"), [(30, 8, 6), (32, 8, 0), (31, 4, 3)])
def test_unpadded_patches_align_to_the_context_end(length: int, stride: int, offset: int) -> None:
    adapter = _adapter(context_length=length, stride=stride, padding_patch="none", revin=False)
    x = torch.arange(length, dtype=torch.float32).view(1, length, 1).expand(1, length, C).contiguous()
    batch = adapter.tokenize(x)
    assert batch.targets is not None and batch.num_tokens == adapter.config.num_patches
    assert float(batch.targets[0, 0, 0]) == offset  # the oldest `offset` steps are dropped
    torch.testing.assert_close(batch.targets[0, -1], x[0, -P:, 0])  # the last patch ends at the last step


def test_normalized_sincos_positions_are_fixed_and_small() -> None:
    adapter = _adapter(positions="sincos_normalized")
    positions = adapter.build_positions(16)
    assert positions is not None and not list(positions.parameters()) and not positions.state_dict()
    table = positions(torch.arange(adapter.config.num_patches).view(1, -1, 1))[0]  # (N, D)
    assert abs(float(table.mean())) < 1e-6 and float(table.std()) == pytest.approx(0.1, rel=1e-4)
    assert not torch.allclose(table[0], table[1])


def test_positional_dropout_acts_in_training_only() -> None:
    config = ModelConfig(
        adapter="patchtst",
        adapter_config={**CONFIG, "positional_dropout": 0.5},
        encoder=TransformerConfig(dim=16, depth=1, heads=2),
        objective="bert",
    )
    model = build_model(config)
    assert model.backbone.embed_dropout["patchtst"].p == 0.5
    batch = model.tokenize(model.adapter.example_input(2))
    model.eval()
    assert model.backbone.positions is not None and batch.positions is not None
    expected = batch.tokens + model.backbone.positions["patchtst"](batch.positions)
    torch.testing.assert_close(model.backbone.embed(batch), expected)
    model.train()
    assert bool((model.backbone.embed(batch) == 0).any())
    with pytest.raises(ValueError, match="positional_dropout"):
        PatchTSTConfig(**CONFIG, positional_dropout=1.0)


def test_zero_patch_masking_embeds_masked_patches_as_zeros() -> None:
    config = ModelConfig(
        adapter="patchtst",
        adapter_config={**CONFIG, "mask_value": "zero_patch", "padding_patch": "none"},
        encoder=TransformerConfig(dim=16, depth=1, heads=2),
        objective="bert",
    )
    model = build_model(config).eval()
    assert len(model.mask_tokens) == 0 and not any("mask_token" in key for key in model.state_dict())
    batch = model.tokenize(model.adapter.example_input(2))
    n = batch.num_tokens
    mask = random_mask(batch.batch_size, n, 0.5, generator=torch.Generator().manual_seed(0))
    assert batch.targets is not None
    zeroed = batch.targets.masked_fill(mask.hidden.unsqueeze(-1), 0.0)  # masked patches set to 0 in patch space
    nothing = mask_from_noise(torch.zeros(batch.batch_size, n), n)  # every token visible
    expected = model(batch.replace(tokens=model.adapter.value_embedding(zeroed)), nothing).pred
    torch.testing.assert_close(model(batch, mask).pred, expected)
    model(batch, mask).pred.sum().backward()
    assert model.adapter.value_embedding.bias.grad is not None
