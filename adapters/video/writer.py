"""Writing clips to video files (tests, the demo and the examples make their videos here): mp4 (H.264), webm
(VP9, alpha kept), avi (MPEG-4) and mkv (lossless FFV1) by file suffix, optionally with variable frame timing.

PyAV is imported when a file is written, so importing this module needs only torch and numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsdk.adapters.video.io import _READ_FORMATS, VIDEO_EXTENSIONS, _import_av

__all__ = ["write_video"]

# codec `write_video` uses per file suffix, and the pixel format it stores per channel count
_DEFAULT_CODECS = {".mp4": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4", ".mkv": "ffv1"}
_WRITE_FORMATS: dict[str, dict[int, str]] = {
    "ffv1": {1: "gray", 3: "bgr0", 4: "bgra"},  # lossless
    "png": {1: "gray", 3: "rgb24", 4: "rgba"},  # lossless
    "qtrle": {1: "gray", 3: "rgb24", 4: "argb"},  # lossless
    "libvpx-vp9": {1: "yuv420p", 3: "yuv420p", 4: "yuva420p"},
    "libx264": {1: "yuv420p", 3: "yuv420p"},
    "mpeg4": {1: "yuv420p", 3: "yuv420p"},
}
# mpeg4's default 200 kb/s is blocky; a fixed quantizer of 3 (lambda = 3 * FF_QP2LAMBDA) looks like the source
_DEFAULT_OPTIONS = {"mpeg4": {"flags": "+qscale", "global_quality": str(3 * 118)}}


def _to_uint8(frames: np.ndarray | Tensor) -> np.ndarray:
    """(T, H, W, C) uint8 of frames (T, C, H, W) uint8 or float in [0, 1] (clipped)."""
    t = torch.as_tensor(frames).detach().cpu()
    if t.ndim != 4 or t.shape[1] not in (1, 3, 4):
        raise ValueError(f"write_video: expected frames (T, C, H, W) with C = 1, 3 or 4, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("write_video: no frames to write")
    if t.is_floating_point():
        if not torch.isfinite(t).all():
            raise ValueError("write_video: frames contain NaN or Inf")
        t = (t.double().clamp(0, 1) * 255).round().to(torch.uint8)
    elif t.dtype != torch.uint8:
        raise ValueError(f"write_video: expected uint8 or float frames, got {t.dtype}")
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def _write_format(av: Any, codec: str, channels: int, width: int, height: int) -> str:
    """Pixel format `write_video` stores for a codec and channel count."""
    if codec in _WRITE_FORMATS:
        formats = _WRITE_FORMATS[codec]
        if channels not in formats:
            raise ValueError(f"write_video: {codec} cannot store alpha; use .mkv (ffv1), .webm or codec='png'")
        pix_fmt = formats[channels]
        if codec == "libx264" and (width % 2 or height % 2):
            pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps odd ones exactly
        return pix_fmt
    supported = [f.name for f in av.codec.Codec(codec, "w").video_formats or []]
    if channels == 4:
        alpha = [f for f in supported if any(c.is_alpha for c in av.VideoFormat(f).components)]
        if not alpha:
            raise ValueError(f"write_video: {codec} has no pixel format with alpha")
        return alpha[0]
    return "yuv420p" if "yuv420p" in supported or not supported else supported[0]


def write_video(
    path: str | Path,
    frames: np.ndarray | Tensor,
    fps: float = 25,
    codec: str | None = None,
    *,
    pts: Sequence[int] | None = None,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encodes frames into a video file, the codec chosen by the suffix.

    Codecs: .mp4/.mov libx264 (yuv420p; yuv444p for odd sizes, which 4:2:0 cannot hold), .webm libvpx-vp9
    (yuv420p, yuva420p with alpha), .avi mpeg4 (yuv420p, quantizer 3), .mkv ffv1 (lossless: gray, bgr0 or bgra).
    Gray frames go into the luma of 4:2:0 codecs. Alpha (C = 4) needs ffv1, png, qtrle or libvpx-vp9.

    Args:
        path: the file to write (its folder must exist); the suffix picks the container and default codec.
        frames: (T, C, H, W) with C = 1 (gray), 3 (RGB) or 4 (RGBA), float in [0, 1] (clipped) or uint8.
        fps: frame rate of a constant-rate file (ignored for the timestamps when `pts` is given).
        codec: FFmpeg encoder name overriding the suffix's default.
        pts: presentation times of the frames in milliseconds (time base 1/1000), strictly increasing, for
            variable-frame-rate files; the stream's stated rate is then their average. AVI cannot store a variable
            rate (FFmpeg fills the gaps with empty frames that decode to repeats).
        pix_fmt: stored pixel format overriding the default.
        options: encoder options (FFmpeg's AVOptions, e.g. {"crf": "18"} or {"g": "5"} for a keyframe every 5).

    Returns:
        the path written.
    """
    av = _import_av()
    path = Path(path)
    data = _to_uint8(frames)  # (T, H, W, C)
    T, H, W, C = data.shape
    codec = codec or _DEFAULT_CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"write_video: no default codec for {path.suffix!r}; pass codec= or use {VIDEO_EXTENSIONS}")
    rate = Fraction(fps).limit_denominator(1001)
    if pts is not None:
        pts = [int(p) for p in pts]
        if len(pts) != T or any(b <= a for a, b in pairwise(pts)):
            raise ValueError(f"write_video: pts must be {T} strictly increasing integers (ms), got {pts}")
        if T > 1:
            rate = Fraction(1000 * (T - 1), pts[-1] - pts[0]).limit_denominator(1001)
    time_base = Fraction(1, 1000) if pts is not None else 1 / rate
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = W, H
        stream.pix_fmt = pix_fmt or _write_format(av, codec, C, W, H)
        stream.codec_context.time_base = time_base
        if pts is not None:
            stream.time_base = time_base
        stream.options = {**_DEFAULT_OPTIONS.get(codec, {}), **(options or {})}
        layout = _READ_FORMATS[C]
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(data[i, :, :, 0] if C == 1 else data[i], format=layout)
            frame.pts, frame.time_base = (pts[i] if pts is not None else i), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
