"""Pictures of video reconstructions: a grid of frames (columns = time) with rows for the original clip, the masked
input and the reconstruction (the visible tubes as they were, the model's predictions in the hidden ones).

Clips of 3 or more channels are drawn as RGB from their first three channels (further channels, such as depth or
thermal after RGB, are not drawn), 1- and 2-channel clips as gray images of channel 0. matplotlib is imported only
when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from mmsdk.adapters._plotting import pyplot, save_figure


def _numpy(value: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _image(frame: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] → an (H, W, 3) RGB or (H, W) gray image and its colour map; NaN drawn black."""
    frame = np.nan_to_num(frame, nan=0.0).clip(0.0, 1.0)
    if frame.shape[0] >= 3:
        return frame[:3].transpose(1, 2, 0), None
    return frame[0], "gray"


def plot_video_reconstruction(
    frames: Tensor | np.ndarray,
    hidden: Tensor | np.ndarray,
    reconstruction: Tensor | np.ndarray,
    path: str | Path,
    title: str = "video reconstruction",
    max_columns: int = 8,
) -> Path:
    """Original, masked input and reconstruction of one clip as a grid of frames (a PNG).

    Args:
        frames: (T, C, H, W) the clip in [0, 1] (NaN = missing pixel).
        hidden: (T, H, W) bool, True where a hidden tube covers the pixel.
        reconstruction: (T, C, H, W) the model's predictions folded back into frames, in [0, 1] units.
        path: the PNG to write.
        title: the figure title.
        max_columns: at most this many frames, evenly spaced over the clip.

    Raises:
        ValueError: when the shapes disagree.
    """
    x, mask, recon = (
        np.asarray(v.detach().float().cpu() if isinstance(v, Tensor) else v) for v in (frames, hidden, reconstruction)
    )
    mask = mask.astype(bool)
    if x.ndim != 4 or recon.shape != x.shape or mask.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"plot_video_reconstruction: frames {x.shape}, hidden {mask.shape} and reconstruction {recon.shape} "
            "must be (T, C, H, W), (T, H, W) and (T, C, H, W)"
        )
    t = x.shape[0]
    columns = np.unique(np.linspace(0, t - 1, min(t, max_columns)).round().astype(int))
    masked = np.where(mask[:, None], np.nan, x)
    blended = np.where(mask[:, None], recon, x)
    rows = [("original", x), ("masked input", masked), ("reconstruction", blended)]
    plt = pyplot()
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(1.6 * len(columns) + 0.8, 1.7 * len(rows)), squeeze=False
    )
    for r, (label, clip) in enumerate(rows):
        for c, step in enumerate(columns):
            image, cmap = _image(clip[step])
            ax = axes[r][c]
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {step}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
