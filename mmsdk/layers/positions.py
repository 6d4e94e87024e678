"""Positional encodings: sin-cos on grid coordinates, interpolable learned tables, an MLP on continuous
coordinates, and fixed tables.

Absolute encodings map token coordinates (B, N, k) (a token batch's `positions`) to (B, N, D); the model adds them
to the tokens. Rotary embeddings (`rotary.py`) rotate queries and keys inside attention instead.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PositionKind = Literal["sincos", "learned", "mlp", "none"]


def sincos_1d(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Sin-cos embedding of scalar positions (the Transformer/MAE formula).

    Args:
        positions: (...) float or int positions.
        dim: even embedding width.

    Returns:
        (..., dim): the first half sines, the second half cosines.
    """
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / base**omega  # (D/2,)
    angles = positions.to(torch.float32).unsqueeze(-1) * omega  # (..., D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def axis_widths(dim: int, ndim: int) -> tuple[int, ...]:
    """Channels per axis of a k-D sin-cos embedding: dim/k each when 2k divides dim; otherwise every axis after
    the first gets 2·⌊dim/2k⌋ and the first (time, for video) the rest, so any even width works."""
    if dim % 2 or dim < 2 * ndim:
        raise ValueError(f"a {ndim}-axis sin-cos embedding needs an even dim >= {2 * ndim}, got {dim}")
    rest = (dim // (2 * ndim)) * 2
    return (dim - (ndim - 1) * rest, *([rest] * (ndim - 1)))


def sincos_nd(coords: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Sin-cos embedding of k-D coordinates, each axis embedded separately (MAE's 2-D, VideoMAE's 3-D).

    Args:
        coords: (..., k) coordinates.
        dim: even embedding width, split over the axes by :func:`axis_widths`.

    Returns:
        (..., dim).
    """
    widths = axis_widths(dim, coords.shape[-1])
    return torch.cat([sincos_1d(coords[..., i], w, base) for i, w in enumerate(widths)], dim=-1)


class SinCosPositions(nn.Module):
    """Fixed sin-cos embedding of integer or continuous coordinates (B, N, k) -> (B, N, D)."""

    def __init__(self, dim: int, ndim: int = 1) -> None:
        super().__init__()
        axis_widths(dim, ndim)  # validates
        self.dim, self.ndim = dim, ndim

    def forward(self, positions: Tensor) -> Tensor:
        return sincos_nd(positions, self.dim)


class LearnedPositions(nn.Module):
    """A learned table over a 1-D/2-D/3-D grid, looked up by integer coordinates and resizable.

    Args:
        dim: embedding width.
        grid: grid size per axis, e.g. (42,) for 42 patches or (8, 64) for a (freq, time) patch grid.
        init: "sincos" starts from the sin-cos table (distinct positions from step 0, so masked tokens can be
            located at once; trains several times faster than a small random table in our measurements) or
            "normal" (truncated normal, `init_std`, as in ViT/PatchTST).
        init_std: standard deviation of the "normal" initialization.
    """

    def __init__(
        self, dim: int, grid: tuple[int, ...], init: Literal["sincos", "normal"] = "sincos", init_std: float = 0.02
    ) -> None:
        super().__init__()
        if not 1 <= len(grid) <= 3 or min(grid) < 1:
            raise ValueError(f"LearnedPositions.grid must have 1-3 positive sizes, got {grid}")
        self.grid = tuple(grid)
        self.table = nn.Parameter(torch.empty(*grid, dim))  # (*grid, D)
        if init == "normal" or dim % 2 or dim < 2 * len(grid):
            nn.init.trunc_normal_(self.table, std=init_std)
        else:
            coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij"), dim=-1)
            with torch.no_grad():
                self.table.copy_(sincos_nd(coords, dim))

    def forward(self, positions: Tensor) -> Tensor:
        coords = positions.long()  # (B, N, k)
        if coords.shape[-1] != len(self.grid):
            raise ValueError(f"LearnedPositions over grid {self.grid} got {coords.shape[-1]}-D positions")
        flat = torch.zeros_like(coords[..., 0])
        for axis, size in enumerate(self.grid):
            flat = flat * size + coords[..., axis].clamp(0, size - 1)
        return self.table.reshape(-1, self.table.shape[-1])[flat]  # (B, N, D)

    @torch.no_grad()
    def resize(self, grid: tuple[int, ...]) -> None:
        """Interpolates the table to a new grid (linear/bicubic/trilinear), e.g. for longer inputs."""
        if len(grid) != len(self.grid):
            raise ValueError(f"LearnedPositions.resize: grid {grid} must have {len(self.grid)} axes")
        mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[len(grid)]
        table = self.table.movedim(-1, 0).unsqueeze(0)  # (1, D, *grid)
        table = F.interpolate(table, size=tuple(grid), mode=mode, align_corners=False)
        self.table = nn.Parameter(table.squeeze(0).movedim(0, -1).contiguous())
        self.grid = tuple(grid)


class InterpolatedPositions(LearnedPositions):
    """A learned grid table looked up at fractional coordinates by n-linear interpolation.

    Integer coordinates read the table exactly as :class:`LearnedPositions` does; coordinates between grid points
    (e.g. patches taken with an overlapping stride, in units of the non-overlapping patch grid) blend the
    neighbouring entries. Coordinates outside the grid are clamped to its edge.
    """

    def forward(self, positions: Tensor) -> Tensor:
        coords = positions.to(self.table.dtype)  # (B, N, k)
        if coords.shape[-1] != len(self.grid):
            raise ValueError(f"InterpolatedPositions over grid {self.grid} got {coords.shape[-1]}-D positions")
        table = self.table.reshape(-1, self.table.shape[-1])  # (prod(grid), D)
        lows, highs, weights = [], [], []
        for axis, size in enumerate(self.grid):
            c = coords[..., axis].clamp(0, size - 1)  # (B, N)
            low = c.floor()
            lows.append(low.long())
            highs.append((low + 1).clamp(max=size - 1).long())
            weights.append(c - low)
        out = torch.zeros(*coords.shape[:-1], table.shape[-1], dtype=table.dtype, device=table.device)
        for corner in range(2 ** len(self.grid)):  # every corner of the enclosing grid cell
            flat = torch.zeros_like(lows[0])
            weight = torch.ones_like(weights[0])
            for axis, size in enumerate(self.grid):
                upper = (corner >> axis) & 1
                flat = flat * size + (highs[axis] if upper else lows[axis])
                weight = weight * (weights[axis] if upper else 1 - weights[axis])
            out = out + weight.unsqueeze(-1) * table[flat]  # (B, N, D)
        return out


class ContinuousPositions(nn.Module):
    """An MLP on continuous coordinates (Point-MAE's center embedding): (B, N, k) -> (B, N, D)."""

    def __init__(self, dim: int, ndim: int = 3, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(ndim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, positions: Tensor) -> Tensor:
        return self.mlp(positions.to(self.mlp[0].weight.dtype))


class FixedPositions(nn.Module):
    """A fixed (not trained, not saved) 1-D table looked up by integer positions (B, N, 1) -> (B, N, D).

    Args:
        table: (length, D) embedding of each position.
    """

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.clone(), persistent=False)  # (length, D)

    def forward(self, positions: Tensor) -> Tensor:
        index = positions[..., 0].long().clamp(0, self.table.shape[0] - 1)  # (B, N)
        return self.table[index]  # (B, N, D)


def build_positions(kind: PositionKind, dim: int, ndim: int = 1, grid: tuple[int, ...] = ()) -> nn.Module | None:
    """Builds an absolute position module by name; returns None for "none"."""
    if kind == "none":
        return None
    if kind == "sincos":
        return SinCosPositions(dim, ndim)
    if kind == "learned":
        return LearnedPositions(dim, grid)
    if kind == "mlp":
        return ContinuousPositions(dim, ndim)
    raise ValueError(f"unknown position kind {kind!r}; choose sincos, learned, mlp or none")


def sincos_table(length: int, dim: int) -> Tensor:
    """A (length, dim) sin-cos table with sines and cosines interleaved (the original Transformer layout)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


def normalized_sincos_table(length: int, dim: int) -> Tensor:
    """The interleaved sin-cos table shifted to zero mean and scaled to std 0.1 over the whole table.

    This is Hugging Face PatchTST's "sincos" positional encoding: small next to unit-variance patch embeddings.
    """
    table = sincos_table(length, dim)
    table = table - table.mean()
    return table / (table.std() * 10)
