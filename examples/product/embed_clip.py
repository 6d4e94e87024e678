"""Embed a video clip with an exported mmsdk VideoMAE embedding model (numpy + onnxruntime + PyAV, no torch).

    python examples/product/embed_clip.py embedding.onnx clip.mp4 [--output embedding.npy]

PyAV decodes the file's first video stream; `num_frames` frames (from the metadata config) are picked at the
centres of equal segments of the video (VideoMAE's test-time sampling), cropped to the model's aspect ratio
around the centre and resized to its `frame_size` (nearest neighbour, numpy), as (1, T, C, H, W) float32 in
[0, 1]. The per-channel normalization is inside the graph. Prints the embedding's shape and L2 norm, and with
`--output` saves it as a .npy file. Works for a classifier too (the logits are printed the same way).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from mmsdk.export.runtime import OnnxModel


def check_video_model(model: OnnxModel) -> tuple[int, tuple[int, int], int]:
    """(num_frames, (height, width), channels) of a video model; ValueError for another kind of model."""
    cfg = model.adapter_config
    if "num_frames" not in cfg or "frame_size" not in cfg or model.input_names != ["frames"]:
        raise ValueError(
            f"{model.path.name} is not a video model (adapter {model.metadata.get('mmsdk.adapter')!r}, inputs "
            f"{model.input_names}); export a VideoMAE model"
        )
    size = cfg["frame_size"]
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    channels = int(cfg.get("channels", 3))
    if channels not in (1, 3):
        raise ValueError(f"{model.path.name} takes {channels}-channel frames; this script decodes RGB or grey video")
    return int(cfg["num_frames"]), (height, width), channels


def read_frames(path: Path, channels: int) -> list[np.ndarray]:
    """Every frame (H, W, channels) uint8 of the file's first video stream, in order."""
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    fmt = "rgb24" if channels == 3 else "gray"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            frames = [frame.to_ndarray(format=fmt) for frame in container.decode(video=0)]
    except av.FFmpegError as error:
        raise ValueError(f"PyAV could not decode {path}: {error}") from error
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return [frame if frame.ndim == 3 else frame[:, :, None] for frame in frames]


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """The centres of `num_frames` equal segments of `total` frames (frames repeat when the video is shorter)."""
    centres = (np.arange(num_frames) + 0.5) * total / num_frames
    return np.minimum(centres.astype(np.int64), total - 1)


def fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` (H, W, C) cropped around its centre to the aspect ratio of `size` and resized to it (nearest)."""
    h, w = frame.shape[:2]
    out_h, out_w = size
    crop_h, crop_w = min(h, round(w * out_h / out_w)), min(w, round(h * out_w / out_h))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    rows = top + ((np.arange(out_h) + 0.5) * crop_h / out_h).astype(np.int64)
    cols = left + ((np.arange(out_w) + 0.5) * crop_w / out_w).astype(np.int64)
    return frame[rows[:, None], cols[None, :]]


def clip_array(frames: Sequence[np.ndarray], num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """The model input (1, T, C, H, W) float32 in [0, 1] from decoded frames."""
    chosen = [fit(frames[i], size) for i in sample_indices(len(frames), num_frames)]
    clip = np.stack(chosen).astype(np.float32) / 255.0  # (T, H, W, C)
    return clip.transpose(0, 3, 1, 2)[None]


def embed(model: OnnxModel, path: Path) -> np.ndarray:
    """The model's output (D,) for the video file at `path`."""
    num_frames, size, channels = check_video_model(model)
    return model(clip_array(read_frames(path, channels), num_frames, size))[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad model or input, with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="the exported video model (.onnx)")
    parser.add_argument("clip", type=Path, help="a video file PyAV decodes (.mp4, .webm, .avi, ...)")
    parser.add_argument("--output", type=Path, help="save the embedding here (.npy)")
    args = parser.parse_args(argv)
    try:
        model = OnnxModel(args.model)
        check_video_model(model)
        vector = embed(model, args.clip)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"shape\t{'x'.join(map(str, vector.shape))}")
    print(f"norm\t{float(np.linalg.norm(vector.astype(np.float64))):.6f}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.output, vector)
        print(f"saved the {model.metadata.get('mmsdk.kind', 'model')} output to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
