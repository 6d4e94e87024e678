"""Dataset statistics of the log-mel features, for the `(x − mean) / (2 · std)` normalization (SSAST's convention).

The statistics belong to the model: they are adapter config fields (`norm_mean`, `norm_std`), saved with every
checkpoint and baked into exported graphs, so training, evaluation and serving use the same numbers. Compute them
once on the training clips of your data and put them in the recipe:

    python -m mmsdk.adapters.audio.stats my_clips/ --seconds 1.0
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from mmsdk.adapters.audio.frontend import Fbank, FbankConfig
from mmsdk.adapters.audio.spectrogram import real_lengths

logger = logging.getLogger(__name__)


@torch.no_grad()
def fbank_statistics(
    clips: Iterable[Tensor | tuple[Tensor, object]], fbank: FbankConfig | None = None, max_clips: int | None = 2000
) -> tuple[float, float]:
    """Mean and standard deviation of the log-mel features over the real frames of `clips`.

    Args:
        clips: 1-D waveforms at the filterbank's sample rate (NaN tail = padding), or `(clip, target)` pairs such as
            the items of a labelled dataset.
        fbank: the filterbank settings of the model (the AST/SSAST defaults when None).
        max_clips: stop after this many clips (None: all).

    Returns:
        `(mean, std)` to set as the adapter's `norm_mean` and `norm_std`.

    Raises:
        ValueError: when no clip has a whole frame.
    """
    front = Fbank(fbank or FbankConfig())
    total, total_sq, count = 0.0, 0.0, 0
    for index, item in enumerate(clips):
        if max_clips is not None and index >= max_clips:
            break
        clip = item[0] if isinstance(item, (tuple, list)) else item
        wave = torch.as_tensor(clip, dtype=torch.float32).reshape(1, -1)  # (1, T)
        lengths = real_lengths(wave)
        if int(lengths[0]) < front.config.window_samples:
            continue
        features, frames = front(wave, lengths)  # (1, F, M), (1,)
        real = features[0, : int(frames[0])].double()  # (F_real, M)
        total += float(real.sum())
        total_sq += float(real.square().sum())
        count += real.numel()
    if count == 0:
        raise ValueError("fbank_statistics: no clip is longer than one analysis window")
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean**2, 0.0))
    logger.info("log-mel statistics over %d values: mean %.4f, std %.4f", count, mean, std)
    return mean, std


def main(args: list[str] | None = None) -> None:
    """Prints `norm_mean` / `norm_std` of a folder of audio files (every file, recursively)."""
    from mmsdk.adapters.audio.datasets import AudioFiles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="+", help="folders (or files) of audio")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--mel-bins", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (longer files are cropped)")
    parser.add_argument("--max-clips", type=int, default=2000)
    parsed = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rate = parsed.sample_rate
    files = AudioFiles(parsed.folder, rate, round(parsed.seconds * rate), crop="start")
    config = FbankConfig(sample_rate=rate, num_mel_bins=parsed.mel_bins)
    mean, std = fbank_statistics(files, config, parsed.max_clips)
    print(f"norm_mean: {mean:.6f}\nnorm_std: {std:.6f}")  # the recipe lines, for the user to paste


if __name__ == "__main__":
    main()
