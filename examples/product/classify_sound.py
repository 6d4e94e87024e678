"""Classify a sound file with an exported mmsdk audio classifier (numpy + onnxruntime + soundfile, no torch).

    python examples/product/classify_sound.py classifier.onnx clip.wav [--top 5]

The file is read with soundfile (WAV, FLAC, OGG, ...) and mixed down to mono. Its sample rate must be the rate the
model was trained on (`mmsdk.sample_rate`): the runtime refuses another one, so resample first (e.g. `sox in.wav
-r 16000 out.wav`). The filterbank and its normalization are inside the graph, so the waveform goes in as read,
in [-1, 1]. A model with a learned position table takes at most `max_frames` frames: longer clips are cut to
that length (with a note). Prints the top classes, one `name<TAB>probability` line each, best first, with names
from the metadata labels (`class<i>` for a model saved without them); a multilabel model prints per-label
sigmoid probabilities, a classifier softmax ones.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from mmsdk.export.runtime import OnnxModel

CLASSIFIER_TASKS = ("classification", "multilabel")


def check_classifier(model: OnnxModel) -> str:
    """The task ("classification" or "multilabel") of an audio classifier; ValueError for another model."""
    task = model.task
    if model.sample_rate is None or task not in CLASSIFIER_TASKS:
        raise ValueError(
            f"{model.path.name} is not an audio classifier (adapter {model.metadata.get('mmsdk.adapter')!r}, task "
            f"{task!r}, sample rate {model.sample_rate}); export a model fine-tuned with task: classification"
        )
    return str(task)


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    """(mono waveform (T,) float32, sample rate) of an audio file; channels are averaged."""
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise ValueError(f"soundfile could not read {path}: {error}") from error
    if data.shape[0] == 0:
        raise ValueError(f"{path} holds no samples")
    return data.mean(axis=1), int(rate)


def max_samples(cfg: dict[str, Any]) -> int | None:
    """The longest clip in samples a learned-position model takes (`max_frames` frames); None when unbounded."""
    fbank = cfg.get("fbank") or {}
    if cfg.get("positions") != "learned" or "max_frames" not in cfg or "sample_rate" not in fbank:
        return None
    rate = int(fbank["sample_rate"])
    window = int(rate * float(fbank.get("frame_length_ms", 25.0)) * 0.001)  # Kaldi truncates, as the adapter
    shift = int(rate * float(fbank.get("frame_shift_ms", 10.0)) * 0.001)
    return window + (int(cfg["max_frames"]) - 1) * shift


def logits(model: OnnxModel, waveform: np.ndarray, rate: int) -> np.ndarray:
    """Class logits (K,) of one mono clip at `rate` Hz (the runtime checks the rate)."""
    check_classifier(model)
    limit = max_samples(model.adapter_config)
    if limit is not None and waveform.shape[0] > limit:
        print(f"note: cutting the clip to the model's {limit} samples", file=sys.stderr)
        waveform = waveform[:limit]
    return model(waveform[None].astype(np.float32), sample_rate=rate)[0]  # (K,)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad model or input, with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="the exported audio classifier (.onnx)")
    parser.add_argument("clip", type=Path, help="an audio file soundfile reads (WAV, FLAC, OGG, ...)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    try:
        model = OnnxModel(args.model)
        check_classifier(model)
        waveform, rate = read_clip(args.clip)
        best = model.top_classes(logits(model, waveform, rate), args.top)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, probability in best:
        print(f"{name}\t{probability:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
