"""Waveform augmentation for training, in the data path (never inside the model): speed perturbation and time shift.

Speed perturbation (Kaldi's `speed-perturb`, Ko et al. 2015) plays a clip faster or slower, moving its pitch and
formants together, which is how voices differ; it is what makes a keyword model hold up on voices it never heard
(`benchmarks/ssast_kws.py` measures it). Time shift moves the sound inside the clip, so a model does not learn
where in the window a word starts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsdk.adapters.audio.datasets import _check_index, _item_rng
from mmsdk.adapters.audio.io import fit_length
from mmsdk.config import require

SPEED_STEP = 0.01
"""Speed factors are drawn on a grid of 1 % steps, so each resampling ratio is a small fraction (fast kernels)."""


def change_speed(clip: Tensor, factor: float, sample_rate: int) -> Tensor:
    """Plays a (T,) clip `factor` times faster (pitch and tempo together): about T / factor samples.

    Band-limited resampling with `torchaudio.functional.resample` from `factor · sample_rate` to `sample_rate`
    Hz, so a slowed-down clip does not alias. NaN padding must be removed first (see `WaveAugment`).
    """
    import torchaudio.functional

    step = round(sample_rate * SPEED_STEP)
    source_rate = round(factor / SPEED_STEP) * step
    if source_rate == sample_rate or clip.shape[0] < 2:
        return clip.clone()
    return torchaudio.functional.resample(clip, source_rate, sample_rate).contiguous()


def shift_clip(clip: Tensor, shift: int) -> Tensor:
    """Moves a (T,) clip's samples by `shift` (later if positive), filling the vacated samples with zeros (silence);
    the length stays T."""
    if shift == 0:
        return clip.clone()
    out = torch.zeros_like(clip)
    if abs(shift) >= clip.shape[0]:
        return out
    if shift > 0:
        out[shift:] = clip[:-shift]
    else:
        out[:shift] = clip[-shift:]
    return out


class WaveAugment(Dataset):
    """Speed perturbation and time shift of training clips: wraps a dataset whose items are clips (T,) or
    (clip, target) tuples, and returns the same kind of item with an augmented clip of the same length.

    Only real samples are augmented: a clip's NaN tail (the padding marker) is removed first, and the result is
    fitted back to the clip length with `fit_length` (a sped-up clip gets a longer NaN tail, which the model
    turns into padding tokens; a slowed-down one is cropped at a random offset).

    Args:
        dataset: the training dataset.
        sample_rate: the clips' rate in Hz.
        speed: the largest relative speed change: factors are uniform in [1 - speed, 1 + speed] (1 % steps);
            0 = off. Kaldi's recipes use 0.1; 0.15 suits unseen voices.
        shift_seconds: the largest time shift, either way; 0 = off.
        seed: None = new draws per access from torch's RNG (seeded per DataLoader worker); an int fixes each
            item's draws (tests).
    """

    def __init__(
        self,
        dataset: Dataset,
        sample_rate: int,
        speed: float = 0.0,
        shift_seconds: float = 0.0,
        seed: int | None = None,
    ) -> None:
        require(sample_rate > 0, self, "sample_rate", f"must be > 0 Hz, got {sample_rate}")
        require(0 <= speed < 0.5, self, "speed", f"must be in [0, 0.5), got {speed}")
        require(shift_seconds >= 0, self, "shift_seconds", f"must be >= 0, got {shift_seconds}")
        self.dataset, self.sample_rate, self.speed, self.seed = dataset, sample_rate, speed, seed
        self.max_shift = round(shift_seconds * sample_rate)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def augment(self, clip: Tensor, rng: Any) -> Tensor:
        """One augmented copy of a (T,) clip (NaN tail allowed) with the draws of `rng` (a numpy Generator)."""
        length = clip.shape[0]
        real = clip[~torch.isnan(clip)]  # (T',) the real samples: NaN only ever pads the end
        if self.speed > 0 and real.shape[0] > 1:
            factor = 1 + rng.uniform(-self.speed, self.speed)
            real = change_speed(real, factor, self.sample_rate)
        if self.max_shift > 0 and real.shape[0] > 0:
            real = shift_clip(real, int(rng.integers(-self.max_shift, self.max_shift + 1)))
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return fit_length(real, length, "random", generator) if real.shape[0] else clip.clone()

    def __getitem__(self, index: int) -> Any:
        index = _check_index(self, index)
        item = self.dataset[index]
        rng = _item_rng(self.seed, index)
        if isinstance(item, tuple):
            return (self.augment(item[0], rng), *item[1:])
        return self.augment(item, rng)

    def shard_augmentation(self) -> tuple[Dataset, ClipAugment]:
        """For shards: the clips without augmentation, and the augmentation to draw anew at every read."""
        return self.dataset, ClipAugment(self.sample_rate, self.speed, self.max_shift / self.sample_rate)


class ClipAugment:
    """:class:`WaveAugment`'s speed perturbation and time shift as an item → item function (for shards that redo it
    at every read), drawing from torch's RNG (which the loader seeds per worker and epoch).

    Args:
        sample_rate, speed, shift_seconds: as for :class:`WaveAugment`.
    """

    shard_rebuildable = True  # shards may rebuild it from its spec (mmsdk.contracts.shards)

    def __init__(self, sample_rate: int, speed: float = 0.0, shift_seconds: float = 0.0) -> None:
        self.sample_rate, self.speed, self.shift_seconds = sample_rate, speed, shift_seconds
        self._wave = WaveAugment((), sample_rate, speed, shift_seconds)  # type: ignore[arg-type]

    def spec(self) -> dict[str, Any]:
        """The fields that rebuild it (`ClipAugment(**spec)`)."""
        return {"sample_rate": self.sample_rate, "speed": self.speed, "shift_seconds": self.shift_seconds}

    def __call__(self, item: Any) -> Any:
        rng = _item_rng(None, 0)
        if isinstance(item, tuple):
            return (self._wave.augment(item[0], rng), *item[1:])
        return self._wave.augment(item, rng)
