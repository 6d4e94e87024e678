"""Pictures of spectrogram reconstructions: the log-mel input, the masked input and the reconstruction.

Spectrograms are drawn with time on x and mel bins on y (low frequencies at the bottom), in the model's normalized
units on one colour scale. matplotlib is imported only when a picture is drawn (Agg backend).
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


def plot_spectrogram_reconstruction(
    spectrogram: Tensor | np.ndarray,
    hidden: Tensor | np.ndarray,
    reconstruction: Tensor | np.ndarray,
    path: str | Path,
    title: str = "spectrogram reconstruction",
) -> Path:
    """Three panels side by side: input, masked input (hidden patches blank), and the input's visible patches
    with the model's predictions in the hidden ones.

    Args:
        spectrogram: (F, M) normalized log-mel features of one clip (its real frames).
        hidden: (F, M) bool, True where a hidden token covers the value.
        reconstruction: (F, M) the predictions, folded back from patches.
        path: the PNG to write.
        title: the figure title.

    Raises:
        ValueError: when the three arrays do not share one (F, M) shape.
    """
    x, mask, recon = _numpy(spectrogram), _numpy(hidden).astype(bool), _numpy(reconstruction)
    if x.ndim != 2 or mask.shape != x.shape or recon.shape != x.shape:
        raise ValueError(
            f"plot_spectrogram_reconstruction: spectrogram {x.shape}, hidden {mask.shape} and reconstruction "
            f"{recon.shape} must be one (frames, mel_bins) shape"
        )
    filled = np.where(mask, np.nan_to_num(recon), x)
    masked = np.where(mask, np.nan, x)
    lo, hi = np.nanpercentile(x, 1), np.nanpercentile(x, 99)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    panels = (("log-mel input", x), (f"masked input ({mask.mean():.0%} hidden)", masked), ("reconstruction", filled))
    image = None
    for ax, (name, values) in zip(axes, panels):
        image = ax.imshow(values.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi, interpolation="none")
        ax.set_title(name)
        ax.set_xlabel("frame (10 ms)")
    axes[0].set_ylabel("mel bin")
    fig.colorbar(image, ax=axes[-1], label="normalized log-mel")
    fig.suptitle(title)
    return save_figure(fig, path)
