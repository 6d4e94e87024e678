"""Layer-wise learning-rate decay: deeper blocks train faster, embeddings slowest, heads at the base rate."""

from __future__ import annotations

import pytest

from mmsdk.models import build_task_model
from mmsdk.training.optim import OptimConfig, build_optimizer, layer_of

MODEL = {
    "adapter": "videomae",
    "adapter_config": {"num_frames": 4, "frame_size": [16, 16], "patch": 8},
    "encoder": {"dim": 16, "depth": 3, "heads": 2},
}


def _rates(layer_decay: float) -> dict[str, float]:
    model = build_task_model(MODEL, {"task": "classification", "num_outputs": 3})
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, layer_decay=layer_decay))
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_each_block_trains_at_a_decayed_rate() -> None:
    rates = _rates(0.5)
    assert rates["head.linear.weight"] == pytest.approx(1e-3)
    assert rates["backbone.encoder.norm.weight"] == pytest.approx(1e-3)
    for block in range(3):
        expected = 1e-3 * 0.5 ** (3 - block)
        assert rates[f"backbone.encoder.blocks.{block}.attn.q.weight"] == pytest.approx(expected)
        assert rates[f"backbone.encoder.blocks.{block}.norm1.bias"] == pytest.approx(expected)
    assert rates["backbone.adapters.videomae.embed.weight"] == pytest.approx(1e-3 * 0.5**4)
    assert len(rates) == len(dict(build_task_model(MODEL, {"num_outputs": 3}).named_parameters()))


def test_no_decay_keeps_one_rate_and_two_groups() -> None:
    assert set(_rates(1.0).values()) == {1e-3}
    model = build_task_model(MODEL, {"task": "classification", "num_outputs": 3})
    assert len(build_optimizer(model, OptimConfig(lr=1e-3)).param_groups) == 2


def test_layer_of_and_validation() -> None:
    assert layer_of("backbone.encoder.blocks.11.mlp.fc1.weight", 12) == 12
    assert layer_of("backbone.positions.videomae.table", 12) == 0
    assert layer_of("decoder.blocks.0.attn.q.weight", 12) == 13  # an MAE decoder is above the encoder
    with pytest.raises(ValueError, match="layer_decay"):
        OptimConfig(layer_decay=0.0)
