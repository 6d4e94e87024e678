"""Dropout whose CPU path draws its mask from random bytes: the same layer as `nn.Dropout`, cheaper on CPU.

On CPU, `torch.nn.functional.dropout` spends most of its time in `bernoulli_`, which draws one random number per
element: in a PatchTST pretraining step with dropout 0.2 that is about a sixth of the step. The fused path here
draws 16 random bits per element in bulk (`random_` on int64 words, viewed as int16) and keeps an element when its
bits clear a threshold, so the drop probability is `p` rounded to a multiple of 2⁻¹⁶ (within 8e-6 of `p`); the
kept elements are scaled by 1 / (1 − that probability), as `nn.Dropout` does. The mask comes from torch's default
CPU generator, so `torch.manual_seed` makes it reproducible.

Elsewhere the reference path, `torch.nn.functional.dropout`, runs: on GPUs (its fused kernel is already fast),
inside `torch.compile` and tracing (the compiler brings its own random numbers), and for in-place dropout.
`tests/layers/test_dropout.py` holds the two paths to the same behaviour: drop rate, scaling, gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.layers.tracing import is_tracing

__all__ = ["Dropout", "dropout", "reference_dropout"]

_LEVELS = 1 << 16  # the mask's resolution: 16 random bits per element


class _ByteMaskDropout(torch.autograd.Function):
    """x · keep / (kept share) with keep drawn from 16 random bits per element; the gradient uses the same mask."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, kept_levels: int) -> Tensor:
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        bits = words.view(torch.int16)[:n].view(x.shape)  # (...,) uniform in [-2^15, 2^15)
        keep = bits >= (_LEVELS // 2 - kept_levels)  # P(keep) = kept_levels / 2^16
        scale = _LEVELS / kept_levels
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None


def reference_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """The plain path: `torch.nn.functional.dropout`."""
    return F.dropout(x, p, training)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout of `x` with drop probability `p` (the fused CPU path where it applies, else the reference path)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or is_tracing():
        return reference_dropout(x, p, training)
    kept_levels = _LEVELS - round(p * _LEVELS)
    if kept_levels <= 0 or x.numel() == 0:  # p within 2^-17 of 1 drops everything (as F.dropout does at p = 1)
        return reference_dropout(x, p, training)
    return _ByteMaskDropout.apply(x, kept_levels)


class Dropout(nn.Dropout):
    """`nn.Dropout` (same `p`, same state, `isinstance` still holds) with the fused CPU path of :func:`dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
