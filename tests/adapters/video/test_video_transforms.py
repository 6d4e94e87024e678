"""Resizing and cropping clips: shapes, aspect ratio, crop positions, random-crop determinism and NaN padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmsdk.adapters.video.transforms import center_crop, random_crop, resize, resize_crop, short_side_resize


def _clip(T: int = 3, C: int = 3, H: int = 32, W: int = 48) -> torch.Tensor:
    return torch.rand(T, C, H, W, generator=torch.Generator().manual_seed(0))


def _grid(H: int, W: int) -> torch.Tensor:
    """(1, 1, H, W) whose pixel (y, x) is y * W + x: a crop shows where it came from."""
    return torch.arange(H * W, dtype=torch.float32).view(1, 1, H, W)


def test_short_side_resize_keeps_the_aspect_ratio() -> None:
    assert short_side_resize(_clip(H=32, W=48), 16).shape == (3, 3, 16, 24)
    assert short_side_resize(_clip(H=48, W=32), 16).shape == (3, 3, 24, 16)
    assert short_side_resize(_clip(H=30, W=40), 16).shape == (3, 3, 16, 21)  # 21.33 rounded
    x = _clip()
    assert torch.equal(short_side_resize(x, 32), x)


def test_resize_matches_interpolate_and_stays_in_range() -> None:
    x = _clip()
    out = resize(x, (16, 20))
    expected = F.interpolate(x, size=(16, 20), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(out, expected) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_center_crop_takes_the_middle() -> None:
    g = _grid(6, 9)
    out = center_crop(g, (2, 4))
    assert out.shape == (1, 1, 2, 4) and torch.equal(out, g[..., 2:4, 2:6])
    assert torch.equal(center_crop(g, 6), g[..., :, 1:7])
    out[...] = -1
    assert float(g.min()) == 0  # a copy, not a view


def test_resize_crop_covers_the_target_then_crops() -> None:
    x = _clip(H=32, W=48)
    square = resize_crop(x, 16)
    assert square.shape == (3, 3, 16, 16)
    assert torch.allclose(square, center_crop(short_side_resize(x, 16), 16))
    assert resize_crop(x, (16, 40)).shape == (3, 3, 16, 40)  # width limits: 32x48 -> 27x40 -> 16x40
    assert resize_crop(x, (40, 20)).shape == (3, 3, 40, 20)  # upscaling: 40x60 -> 40x20
    assert torch.equal(resize_crop(x, (32, 48)), x)
    batch = torch.rand(2, 4, 1, 20, 30)  # leading dims (B, T)
    assert resize_crop(batch, 10).shape == (2, 4, 1, 10, 10)


def test_random_crop_is_a_window_and_follows_the_generator() -> None:
    g = _grid(10, 12).expand(3, 1, 10, 12)
    positions = set()
    for seed in range(12):
        out = random_crop(g, (4, 5), torch.Generator().manual_seed(seed))
        assert out.shape == (3, 1, 4, 5) and torch.equal(out[0], out[2])  # one window for the whole clip
        top, left = divmod(int(out[0, 0, 0, 0]), 12)
        assert torch.equal(out, g[..., top : top + 4, left : left + 5])
        positions.add((top, left))
    assert len(positions) > 3
    a = resize_crop(_clip(), 16, crop="random", generator=torch.Generator().manual_seed(7))
    b = resize_crop(_clip(), 16, crop="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_nan_frames_stay_nan_without_spreading() -> None:
    x = _clip(T=4)
    x[2] = float("nan")  # padding frame
    out = resize_crop(x, 16)
    assert torch.isnan(out[2]).all() and torch.isfinite(out[[0, 1, 3]]).all()
    assert torch.allclose(out[[0, 1, 3]], resize_crop(x[[0, 1, 3]], 16))
    x[0, 0, 0, 0] = float("nan")  # a frame with any NaN counts as padding
    assert torch.isnan(resize(x, 8)[0]).all() and torch.isfinite(resize(x, 8)[1]).all()
    assert torch.isnan(resize_crop(torch.full((2, 3, 8, 8), float("nan")), 4)).all()


def test_half_precision_is_kept() -> None:
    out = resize_crop(_clip().half(), 16)
    assert out.dtype == torch.float16 and out.shape == (3, 3, 16, 16)


def test_errors() -> None:
    x = _clip()
    with pytest.raises(ValueError, match="larger than the frames"):
        center_crop(x, 40)
    with pytest.raises(ValueError, match="larger than the frames"):
        random_crop(x, (8, 50))
    with pytest.raises(ValueError, match="size"):
        resize_crop(x, 0)
    with pytest.raises(ValueError, match="size"):
        resize_crop(x, (16, 16, 3))
    with pytest.raises(ValueError, match="crop"):
        resize_crop(x, 16, crop="left")
    with pytest.raises(ValueError, match="float"):
        resize_crop(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="side"):
        short_side_resize(x, 0)
