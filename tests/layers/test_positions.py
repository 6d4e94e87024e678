"""Positional encodings: sin-cos values, learned tables and resizing, continuous MLP, rotary relativity."""

from __future__ import annotations

import pytest
import torch

from mmsdk.layers.positions import (
    ContinuousPositions,
    InterpolatedPositions,
    LearnedPositions,
    SinCosPositions,
    axis_widths,
    build_positions,
    sincos_1d,
    sincos_nd,
    sincos_table,
)
from mmsdk.layers.rotary import Rotary


def test_sincos_1d_shape_and_position_zero() -> None:
    emb = sincos_1d(torch.arange(6).view(2, 3), dim=8)
    assert emb.shape == (2, 3, 8)
    torch.testing.assert_close(emb[0, 0, :4], torch.zeros(4))  # sin(0)
    torch.testing.assert_close(emb[0, 0, 4:], torch.ones(4))  # cos(0)


def test_sincos_1d_values() -> None:
    dim = 8
    emb = sincos_1d(torch.tensor([3.0]), dim)[0]
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2))
    torch.testing.assert_close(emb, torch.cat([torch.sin(3.0 * omega), torch.cos(3.0 * omega)]))
    # the first channel pair has frequency 1: sin(p)^2 + cos(p)^2 == 1 for every pair
    pairs = emb[: dim // 2] ** 2 + emb[dim // 2 :] ** 2
    torch.testing.assert_close(pairs, torch.ones(dim // 2))


def test_sincos_nd_splits_axes() -> None:
    coords = torch.tensor([[[1, 5], [2, 7]]])  # (1, 2, 2)
    emb = sincos_nd(coords, dim=16)
    assert emb.shape == (1, 2, 16)
    torch.testing.assert_close(emb[..., :8], sincos_1d(coords[..., 0], 8))
    torch.testing.assert_close(emb[..., 8:], sincos_1d(coords[..., 1], 8))
    module = SinCosPositions(16, ndim=2)
    torch.testing.assert_close(module(coords), emb)


def test_sincos_table_interleaved() -> None:
    table = sincos_table(5, 6)
    assert table.shape == (5, 6)
    torch.testing.assert_close(table[0, 0::2], torch.zeros(3))
    torch.testing.assert_close(table[0, 1::2], torch.ones(3))
    torch.testing.assert_close(table[2, 0], torch.sin(torch.tensor(2.0)))


def test_learned_lookup_1d_and_2d() -> None:
    pos = LearnedPositions(4, (6,))
    idx = torch.tensor([[[0], [5], [2]]])  # (1, 3, 1)
    out = pos(idx)
    assert out.shape == (1, 3, 4)
    torch.testing.assert_close(out[0], pos.table[[0, 5, 2]])

    grid = LearnedPositions(4, (3, 5))
    coords = torch.tensor([[[0, 0], [2, 4], [1, 3]]])
    out = grid(coords)
    torch.testing.assert_close(out[0], torch.stack([grid.table[0, 0], grid.table[2, 4], grid.table[1, 3]]))


def test_learned_wrong_axes_raises() -> None:
    with pytest.raises(ValueError, match="grid"):
        LearnedPositions(4, (3, 5))(torch.zeros(1, 2, 1, dtype=torch.long))


@pytest.mark.parametrize("grid", [(), (0,), (2, 2, 2, 2)])
def test_learned_bad_grid_raises(grid: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="grid"):
        LearnedPositions(4, grid)


@pytest.mark.parametrize("grid", [(7,), (3, 4), (2, 3, 4)])
def test_resize_to_same_grid_is_identity(grid: tuple[int, ...]) -> None:
    pos = LearnedPositions(4, grid)
    before = pos.table.detach().clone()
    pos.resize(grid)
    torch.testing.assert_close(pos.table.detach(), before)
    assert isinstance(pos.table, torch.nn.Parameter)


def test_resize_1d_to_larger_grid() -> None:
    pos = LearnedPositions(4, (5,))
    with torch.no_grad():
        pos.table.copy_(torch.linspace(0, 1, 5).unsqueeze(-1).expand(5, 4))  # a smooth ramp
    before = pos.table.detach().clone()
    pos.resize((9,))
    assert pos.table.shape == (9, 4) and pos.grid == (9,)
    torch.testing.assert_close(pos.table[0], before[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(pos.table[-1], before[-1], atol=1e-5, rtol=0)
    assert bool((pos.table[1:, 0] >= pos.table[:-1, 0]).all())  # still a monotone ramp
    out = pos(torch.tensor([[[8]]]))
    assert out.shape == (1, 1, 4)


def test_resize_2d_to_larger_grid_keeps_corners_close() -> None:
    pos = LearnedPositions(3, (4, 4))
    with torch.no_grad():
        r = torch.linspace(0, 1, 4)
        pos.table.copy_((r.view(4, 1) + r.view(1, 4)).unsqueeze(-1).expand(4, 4, 3))
    before = pos.table.detach().clone()
    pos.resize((8, 6))
    assert pos.table.shape == (8, 6, 3)
    for i, j, bi, bj in [(0, 0, 0, 0), (-1, -1, -1, -1), (0, -1, 0, -1), (-1, 0, -1, 0)]:
        torch.testing.assert_close(pos.table[i, j], before[bi, bj], atol=0.1, rtol=0)


def test_resize_wrong_axes_raises() -> None:
    with pytest.raises(ValueError, match="axes"):
        LearnedPositions(4, (5,)).resize((3, 3))


def test_continuous_positions_shape_and_sensitivity() -> None:
    pos = ContinuousPositions(8, ndim=3, hidden=16)
    coords = torch.randn(2, 5, 3)
    out = pos(coords)
    assert out.shape == (2, 5, 8)
    assert not torch.allclose(pos(coords + 1.0), out)


def test_build_positions_by_name() -> None:
    assert build_positions("none", 8) is None
    assert isinstance(build_positions("sincos", 8, ndim=2), SinCosPositions)
    assert isinstance(build_positions("learned", 8, grid=(4,)), LearnedPositions)
    assert isinstance(build_positions("mlp", 8, ndim=3), ContinuousPositions)
    with pytest.raises(ValueError, match="unknown position kind"):
        build_positions("fourier", 8)  # type: ignore[arg-type]


def test_sincos_bad_dims_raise() -> None:
    with pytest.raises(ValueError, match="even"):
        sincos_1d(torch.arange(3), 7)
    with pytest.raises(ValueError, match="even dim >= 6"):
        sincos_nd(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="even dim"):
        SinCosPositions(7, ndim=2)


def test_sincos_nd_gives_the_remainder_to_the_first_axis() -> None:
    assert axis_widths(128, 3) == (44, 42, 42)
    assert axis_widths(96, 3) == (32, 32, 32)
    coords = torch.tensor([[1.0, 2.0, 3.0]])
    emb = sincos_nd(coords, 128)  # (1, 128)
    torch.testing.assert_close(emb[:, :44], sincos_1d(coords[:, 0], 44))
    torch.testing.assert_close(emb[:, 44:86], sincos_1d(coords[:, 1], 42))
    torch.testing.assert_close(emb[:, 86:], sincos_1d(coords[:, 2], 42))


def _rotated_scores(rope: Rotary, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    cos, sin = rope.angles(positions)
    return Rotary.rotate(q, cos, sin) @ Rotary.rotate(k, cos, sin).transpose(-2, -1)


@pytest.mark.parametrize("axes", [1, 2])
def test_rotary_scores_depend_only_on_offsets(axes: int) -> None:
    rope = Rotary(8, axes=axes)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    positions = torch.randint(0, 20, (2, 5, axes))
    scores = _rotated_scores(rope, q, k, positions)
    shifted = _rotated_scores(rope, q, k, positions + torch.randint(1, 50, (axes,)))
    torch.testing.assert_close(shifted, scores, atol=1e-4, rtol=1e-4)
    # not trivially invariant: changing one token's position changes its scores
    moved = positions.clone()
    moved[:, 0] += 3
    assert not torch.allclose(_rotated_scores(rope, q, k, moved), scores, atol=1e-3)


def test_rotary_preserves_norm_and_is_identity_at_zero() -> None:
    rope = Rotary(8)
    x = torch.randn(1, 2, 4, 8)
    cos, sin = rope.angles(torch.randint(0, 100, (1, 4)))
    torch.testing.assert_close(Rotary.rotate(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    cos0, sin0 = rope.angles(torch.zeros(1, 4, dtype=torch.long))
    torch.testing.assert_close(Rotary.rotate(x, cos0, sin0), x)


def test_rotary_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="head_dim"):
        Rotary(6, axes=2)
    with pytest.raises(ValueError, match="axes"):
        Rotary(8, axes=2).angles(torch.zeros(1, 4, 3))


def test_interpolated_positions_match_the_table_at_grid_points_and_blend_between() -> None:
    torch.manual_seed(0)
    exact, blended = LearnedPositions(8, (3, 5), init="normal"), InterpolatedPositions(8, (3, 5), init="normal")
    blended.table.data.copy_(exact.table.data)
    grid = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij"), -1).reshape(1, -1, 2)
    torch.testing.assert_close(blended(grid.float()), exact(grid))
    table = exact.table.detach()
    halfway = blended(torch.tensor([[[0.5, 1.0], [2.0, 3.25], [1.5, 0.5]]]))[0]
    torch.testing.assert_close(halfway[0], (table[0, 1] + table[1, 1]) / 2)
    torch.testing.assert_close(halfway[1], 0.75 * table[2, 3] + 0.25 * table[2, 4])
    corners = (table[1, 0] + table[1, 1] + table[2, 0] + table[2, 1]) / 4
    torch.testing.assert_close(halfway[2], corners)
    torch.testing.assert_close(blended(torch.tensor([[[-1.0, 9.0]]]))[0, 0], table[0, 4])  # clamped to the edge


def test_interpolated_positions_gradients_reach_the_neighbouring_entries() -> None:
    pos = InterpolatedPositions(4, (2, 2), init="normal")
    pos(torch.tensor([[[0.25, 0.0]]])).sum().backward()
    touched = pos.table.grad.abs().sum(-1)
    assert touched[0, 0] > 0 and touched[1, 0] > 0
    assert touched[0, 1] == 0 and touched[1, 1] == 0
