"""Rotary position embedding (RoPE) over one or several coordinate axes."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Rotary(nn.Module):
    """Rotary position embedding (RoPE) over one or several axes.

    With k axes the head width is split in k equal parts, each rotated by its own coordinate (axial RoPE).

    Args:
        head_dim: per-head width, divisible by 2k.
        axes: number of coordinate axes k.
        base: frequency base.
    """

    def __init__(self, head_dim: int, axes: int = 1, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % (2 * axes):
            raise ValueError(f"Rotary: head_dim={head_dim} must be divisible by 2*axes={2 * axes}")
        part = head_dim // axes
        inv_freq = 1.0 / base ** (torch.arange(0, part, 2, dtype=torch.float32) / part)  # (part/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.axes = axes

    def angles(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Returns cos and sin, each (B, 1, N, head_dim/2), for positions (B, N) or (B, N, k)."""
        if positions.dim() == 2:
            positions = positions.unsqueeze(-1)
        if positions.shape[-1] != self.axes:
            raise ValueError(f"Rotary over {self.axes} axes got positions of shape {tuple(positions.shape)}")
        angles = torch.cat(
            [positions[..., i, None].float() * self.inv_freq for i in range(self.axes)], dim=-1
        )  # (B, N, hd/2)
        return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotates interleaved-halves of x (B, H, N, hd) by the given angles."""
        x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, N, hd/2) each
        rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        return rotated.to(x.dtype)
