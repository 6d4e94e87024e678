"""Batches of clips from decoder-style or batched arrays (`to_clips`, re-exported by `io`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_clips(x: np.ndarray | Tensor) -> Tensor:
    """A batch of clips (B, T, C, H, W) float32 from decoder-style or batched arrays.

    Layouts: 4-D is one clip (T, H, W, C), channel-last as decoders and numpy users have it, giving (1, T, C, H, W);
    5-D is taken as (B, T, C, H, W) as is. uint8 is scaled by 1/255; float16/32/64 (and bfloat16) is taken as
    already in [0, 1] and cast to float32.

    Raises:
        ValueError: another rank, or a bool, integer (other than uint8) or complex dtype.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise ValueError(f"to_clips: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if t.ndim == 4:
        t = t.permute(0, 3, 1, 2).unsqueeze(0)  # (T, H, W, C) -> (1, T, C, H, W)
    elif t.ndim != 5:
        raise ValueError(
            f"to_clips: expected one clip (T, H, W, C) or a batch (B, T, C, H, W), got shape {tuple(t.shape)}"
        )
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    if t.is_floating_point():
        return t.to(torch.float32)
    raise ValueError(f"to_clips: expected uint8 or float pixels, got {t.dtype}")
