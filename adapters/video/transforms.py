"""Spatial transforms of video clips: resizing and cropping frames (T, C, H, W) to the model's input size.

Conventions: a clip is a float tensor (T, C, H, W) (any leading dims work: (B, T, C, H, W) too) with values in
[0, 1]. Frames that are NaN are padding ("no data", e.g. after the end of a video): they stay NaN through every
transform here, and never leak into real frames (only finite frames are interpolated).

Resizing is bilinear with antialiasing (`torch.nn.functional.interpolate(..., antialias=True)`), whose weights are
non-negative, so values stay in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["center_crop", "random_crop", "resize", "resize_crop", "short_side_resize"]

Size = int | tuple[int, int]


def _size(size: Size, name: str) -> tuple[int, int]:
    """(H, W) of an int (square) or a pair, checked positive."""
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"{name}: size must be a positive int or a pair (H, W) of them, got {size!r}")
    return int(size[0]), int(size[1])


def _check_frames(frames: Tensor, name: str) -> None:
    if not isinstance(frames, Tensor) or frames.ndim < 3:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"{name}: expected frames (T, C, H, W) (or any leading dims before (C, H, W)), got {shape}")
    if not frames.is_floating_point():
        raise ValueError(f"{name}: expected float frames in [0, 1], got {frames.dtype}")


def resize(frames: Tensor, size: Size) -> Tensor:
    """Resizes frames to exactly `size` (bilinear, antialiased), ignoring the aspect ratio.

    Frames that contain NaN come out all NaN (padding); the others are interpolated among themselves only.

    Args:
        frames: (..., C, H, W) float.
        size: output (H, W), or an int for a square.

    Returns:
        (..., C, size_h, size_w) tensor of the frames' dtype.
    """
    _check_frames(frames, "resize")
    out_h, out_w = _size(size, "resize")
    *lead, C, H, W = frames.shape
    if (out_h, out_w) == (H, W):
        return frames.clone()
    flat = frames.reshape(-1, C, H, W)  # (N, C, H, W)
    finite = torch.isfinite(flat).flatten(1).all(dim=1)  # (N,) frames without any NaN/Inf
    out = torch.full((flat.shape[0], C, out_h, out_w), float("nan"), dtype=frames.dtype, device=frames.device)
    if finite.any():
        real = flat[finite]
        # antialiased bilinear needs float32/64 on CPU; compute there and cast back
        work = real if real.dtype in (torch.float32, torch.float64) else real.float()
        scaled = F.interpolate(work, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
        out[finite] = scaled.to(frames.dtype)
    return out.reshape(*lead, C, out_h, out_w)


def short_side_resize(frames: Tensor, side: int) -> Tensor:
    """Resizes frames so their shorter side is `side`, keeping the aspect ratio (the longer side is rounded).

    Args:
        frames: (..., C, H, W) float.
        side: length of the shorter side after resizing.

    Returns:
        (..., C, H', W') with min(H', W') == side.
    """
    _check_frames(frames, "short_side_resize")
    if not isinstance(side, int) or side <= 0:
        raise ValueError(f"short_side_resize: side must be a positive int, got {side!r}")
    H, W = frames.shape[-2:]
    if H <= W:
        return resize(frames, (side, max(side, round(W * side / H))))
    return resize(frames, (max(side, round(H * side / W)), side))


def _crop_at(frames: Tensor, top: int, left: int, size: tuple[int, int]) -> Tensor:
    return frames[..., top : top + size[0], left : left + size[1]].clone()


def _check_fits(frames: Tensor, size: tuple[int, int], name: str) -> tuple[int, int]:
    """(excess rows, excess columns) of frames over a crop size, which must fit."""
    H, W = frames.shape[-2:]
    if size[0] > H or size[1] > W:
        raise ValueError(f"{name}: crop {size} is larger than the frames ({H}, {W}); resize first (resize_crop)")
    return H - size[0], W - size[1]


def center_crop(frames: Tensor, size: Size) -> Tensor:
    """The centre window of `size` of every frame (the upper-left one of the two middles when the excess is odd).

    Args:
        frames: (..., C, H, W), at least `size` in both dims.
        size: crop (H, W), or an int for a square.

    Returns:
        (..., C, size_h, size_w), a new tensor (not a view).
    """
    _check_frames(frames, "center_crop")
    hw = _size(size, "center_crop")
    dy, dx = _check_fits(frames, hw, "center_crop")
    return _crop_at(frames, dy // 2, dx // 2, hw)


def random_crop(frames: Tensor, size: Size, generator: torch.Generator | None = None) -> Tensor:
    """A window of `size` at a uniformly random position, the same for every frame of the clip.

    Args:
        frames: (..., C, H, W), at least `size` in both dims.
        size: crop (H, W), or an int for a square.
        generator: randomness of the position; None = torch's global RNG.

    Returns:
        (..., C, size_h, size_w), a new tensor (not a view).
    """
    _check_frames(frames, "random_crop")
    hw = _size(size, "random_crop")
    dy, dx = _check_fits(frames, hw, "random_crop")
    top = int(torch.randint(0, dy + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, dx + 1, (1,), generator=generator).item())
    return _crop_at(frames, top, left, hw)


def resize_crop(
    frames: Tensor,
    size: Size,
    crop: Literal["center", "random"] = "center",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Scales frames to cover `size` keeping their aspect ratio, then crops `size` out of them.

    The scale is the smallest that makes both sides at least the target (so a square target from a landscape clip
    scales the height to the target and crops the sides). Frames already of `size` are returned as a copy.

    Args:
        frames: (..., C, H, W) float in [0, 1]; NaN frames (padding) stay NaN.
        size: output (H, W), or an int for a square.
        crop: "center" or "random" (one random window for the whole clip, from `generator`).
        generator: randomness of the "random" crop; None = torch's global RNG.

    Returns:
        (..., C, size_h, size_w) tensor of the frames' dtype.
    """
    _check_frames(frames, "resize_crop")
    out_h, out_w = _size(size, "resize_crop")
    if crop not in ("center", "random"):
        raise ValueError(f"resize_crop: crop must be 'center' or 'random', got {crop!r}")
    H, W = frames.shape[-2:]
    scale = max(out_h / H, out_w / W)
    scaled = (max(out_h, round(H * scale)), max(out_w, round(W * scale)))
    if scaled != (H, W):
        frames = resize(frames, scaled)
    if crop == "center":
        return center_crop(frames, (out_h, out_w))
    return random_crop(frames, (out_h, out_w), generator)
