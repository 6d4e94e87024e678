"""The inverse direction: an adapter's `decode` maps targets back to raw units and the raw layout."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mmsdk.contracts.adapter import build_adapter


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("patchtst", {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8}),
        ("patchtst", {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 4}),  # overlapping, end pad
        ("patchtst", {"context_length": 30, "num_channels": 2, "patch_len": 8, "stride": 8, "padding_patch": "none"}),
        ("patchtst", {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8, "revin": False}),
        ("timerxl", {"context_length": 32, "num_channels": 3, "patch_len": 8}),
        ("moirai", {"context_length": 32, "num_channels": 3, "patch_sizes": [8], "patch_size": 8}),
    ],
)
def test_series_targets_decode_to_the_input_series(name: str, config: dict[str, Any]) -> None:
    adapter = build_adapter(name, config, 16)
    x = 3 * adapter.example_input(2, torch.Generator().manual_seed(0)) + 5
    batch = adapter.tokenize(x)
    series = adapter.decode(batch.targets, batch)  # (B, L, C) in data units
    assert series.shape == x.shape
    covered = torch.isfinite(series)
    if config.get("padding_patch") == "none":  # (30 - 8) % 8 = 6 leading steps belong to no patch
        assert not covered[:, :6].any() and covered[:, 6:].all()
    torch.testing.assert_close(series[covered], x[covered], atol=1e-4, rtol=1e-5)


def test_point_groups_decode_to_input_points() -> None:
    adapter = build_adapter("pointmae", {"num_points": 64, "num_groups": 8, "group_size": 8}, 16)
    points = adapter.example_input(2, torch.Generator().manual_seed(0))
    batch = adapter.tokenize(points)
    decoded = adapter.decode(batch.targets, batch)  # (B, S·k, 3)
    assert decoded.shape == (2, 64, 3)
    nearest = (decoded[:, :, None] - points[:, None]).norm(dim=-1).min(dim=-1).values  # (B, S·k)
    assert float(nearest.max()) < 1e-5  # every decoded point is a point of the cloud
