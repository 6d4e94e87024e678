"""Test-time multi-clip evaluation: a video's class scores averaged over several clips (VideoMAE's multi-view test).

A classifier sees one clip of `num_frames` frames; a longer video is scored by cutting K evenly spaced clips
(`io.read_clips`), running the classifier on all of them and averaging the softmax probabilities (sigmoid for
multilabel heads). Works with an mmsdk task model or any callable mapping (B, T, C, H, W) clips to logits, such as
the exported ONNX model's `OnnxModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["average_clip_scores", "evaluate_videos", "predict_video"]

Scores = Literal["softmax", "sigmoid", "logits"]


def average_clip_scores(
    model: Callable[[Tensor], Tensor], clips: Tensor, scores: Scores = "softmax", batch_size: int = 16
) -> Tensor:
    """Class scores of videos averaged over their clips.

    Args:
        model: clips (B, T, C, H, W) → logits (B, classes); a torch module is run in eval mode without gradients.
        clips: (V, K, T, C, H, W): K clips of each of V videos (or (K, T, C, H, W) for one video).
        scores: what is averaged: softmax probabilities (single-label), sigmoid (multilabel) or raw logits.
        batch_size: clips per forward pass.

    Returns:
        (V, classes) averaged scores ((classes,) for one video).

    Raises:
        ValueError: for clips that are not 5-D or 6-D.
    """
    single = clips.dim() == 5
    if single:
        clips = clips[None]
    if clips.dim() != 6:
        raise ValueError(f"clips must be (V, K, T, C, H, W) or (K, T, C, H, W), got shape {tuple(clips.shape)}")
    v, k = clips.shape[:2]
    flat = clips.reshape(v * k, *clips.shape[2:])  # (V·K, T, C, H, W)
    if isinstance(model, torch.nn.Module):
        model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            logits = model(flat[start : start + batch_size])
            outputs.append(torch.as_tensor(np.asarray(logits)) if not isinstance(logits, Tensor) else logits)
    logits = torch.cat(outputs).float().reshape(v, k, -1)  # (V, K, classes)
    if scores == "softmax":
        logits = logits.softmax(dim=-1)
    elif scores == "sigmoid":
        logits = logits.sigmoid()
    averaged = logits.mean(dim=1)  # (V, classes)
    return averaged[0] if single else averaged


def predict_video(
    model: Callable[[Tensor], Tensor],
    path: str | Path,
    num_clips: int = 5,
    num_frames: int = 16,
    stride: int = 4,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    scores: Scores = "softmax",
) -> Tensor:
    """(classes,) scores of one video file averaged over `num_clips` evenly spaced clips (see `io.read_clips`)."""
    from mmsdk.adapters.video.io import read_clips

    clips = read_clips(path, num_clips, num_frames=num_frames, stride=stride, size=size, channels=channels)
    return average_clip_scores(model, clips, scores)


def evaluate_videos(
    model: Callable[[Tensor], Tensor],
    paths: Sequence[str | Path],
    labels: Sequence[int],
    num_clips: int = 5,
    **read: object,
) -> dict[str, float]:
    """Accuracy of single-clip (the centre clip) and multi-clip prediction over labelled video files.

    Args:
        model: clips → logits.
        paths: video files.
        labels: their class indices.
        num_clips: clips averaged per video.
        read: `num_frames`, `stride`, `size`, `channels` for `read_clips`.

    Returns:
        `{"acc_1_clip": ..., "acc_<K>_clips": ...}`.
    """
    from mmsdk.adapters.video.io import read_clips

    if len(paths) != len(labels) or not paths:
        raise ValueError(f"evaluate_videos needs as many labels as paths (>= 1), got {len(paths)} and {len(labels)}")
    one, many = 0, 0
    for path, label in zip(paths, labels):
        centre = read_clips(path, 1, **read)  # type: ignore[arg-type]
        clips = read_clips(path, num_clips, **read)  # type: ignore[arg-type]
        one += int(average_clip_scores(model, centre).argmax()) == int(label)
        many += int(average_clip_scores(model, clips).argmax()) == int(label)
    return {"acc_1_clip": one / len(paths), f"acc_{num_clips}_clips": many / len(paths)}
