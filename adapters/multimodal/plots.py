"""Pictures of cross-modal predictions: a modality predicted from others, next to the truth.

The target is drawn by the kind of data its adapter decodes to: a series (B, L, C) as one line per variate, frames
(B, T, C, H, W) as a strip of frames, a spectrogram (B, F, M) as an image; the truth comes from decoding the
target's own tokens the same way, so both sides are in the same units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmsdk.adapters._plotting import pyplot, save_figure

__all__ = ["plot_cross_modal"]


def _truth(model: Any, inputs: Mapping[str, Any], target: str) -> Tensor:
    """The target decoded from its own tokens (what a perfect prediction would give)."""
    batch = model.backbone.tokenize({target: inputs[target]})
    part = model.backbone.parts(batch)[target]
    decoded = model.backbone.adapters[target].decode(torch.nan_to_num(part.targets.float()), part)
    if decoded is None:
        raise ValueError(f"modality {target!r}: its adapter has no inverse to draw")
    return decoded


def _draw_series(fig: Any, truth: Tensor, pred: Tensor, title: str) -> None:
    channels = truth.shape[-1]
    for c in range(channels):
        ax = fig.add_subplot(channels, 1, c + 1)
        ax.plot(truth[:, c].numpy(), color="black", label="truth")
        ax.plot(pred[:, c].numpy(), color="tab:red", label="predicted")
        ax.set_ylabel(f"variate {c}")
        if c == 0:
            ax.set_title(title)
            ax.legend(loc="upper right", fontsize=8)
    fig.axes[-1].set_xlabel("time step")


def _draw_frames(fig: Any, truth: Tensor, pred: Tensor, title: str) -> None:
    frames = truth.shape[0]
    for row, (name, clip) in enumerate((("truth", truth), ("predicted", pred))):
        for t in range(frames):
            ax = fig.add_subplot(2, frames, row * frames + t + 1)
            image = clip[t].clamp(0, 1)
            image = image[0] if image.shape[0] == 1 else image[:3].permute(1, 2, 0)
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(name)
    fig.suptitle(title)


def _draw_image(fig: Any, truth: Tensor, pred: Tensor, title: str) -> None:
    vmin, vmax = float(torch.nan_to_num(truth, nan=0.0).min()), float(torch.nan_to_num(truth, nan=0.0).max())
    for row, (name, image) in enumerate((("truth", truth), ("predicted", pred))):
        ax = fig.add_subplot(2, 1, row + 1)
        ax.imshow(image.T.numpy(), origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_ylabel(f"{name}\nmel bin")
    fig.axes[0].set_title(title)
    fig.axes[-1].set_xlabel("frame")


@torch.no_grad()
def plot_cross_modal(
    model: Any, inputs: Mapping[str, Any], sources: Sequence[str], target: str, path: str | Path, index: int = 0
) -> Path:
    """Draws sample `index`'s `target` predicted from `sources` next to its truth (a PNG at `path`).

    Args:
        model: a 4m model.
        inputs: raw inputs of at least the sources and the target (a batch).
        sources: the modalities the prediction reads.
        target: the modality predicted.
        path: where the PNG goes.
        index: which sample of the batch.
    """
    shape = {target: tuple(inputs[target].shape[1:])}
    pred = model.predict({s: inputs[s] for s in sources}, [target], shapes=shape)[target][index].float()
    truth = _truth(model, inputs, target)[index].float()
    title = f"{target} predicted from {' + '.join(sources)}"
    plt = pyplot()
    if truth.dim() == 2 and truth.shape[-1] <= 8:  # a series (L, C)
        fig = plt.figure(figsize=(8, 1.8 * truth.shape[-1] + 0.6))
        _draw_series(fig, truth, pred, title)
    elif truth.dim() == 4:  # frames (T, C, H, W)
        fig = plt.figure(figsize=(1.3 * truth.shape[0], 3.0))
        _draw_frames(fig, truth, pred, title)
    elif truth.dim() == 2:  # a spectrogram (frames, mel bins)
        fig = plt.figure(figsize=(8, 4))
        _draw_image(fig, truth, pred, title)
    else:
        raise ValueError(f"plot_cross_modal: cannot draw {target!r} data of shape {tuple(truth.shape)}")
    return save_figure(fig, path)
