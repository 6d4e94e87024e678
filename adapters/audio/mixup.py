"""Waveform mixup for fine-tuning, in the data path (never inside the model)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsdk.adapters.audio.datasets import _check_index, _item_rng
from mmsdk.adapters.audio.io import mix_clips
from mmsdk.config import require


class Mixup(Dataset):
    """Waveform mixup for fine-tuning: wraps a labelled dataset of (clip, target) items, target an int class id or
    a multi-hot (C,) vector; items are (clip, soft target float32 (C,)).

    With probability `prob` an item is mixed with another random item of the dataset: clip = λ·a + (1−λ)·b (see
    `mix_clips` for padding) and target = λ·t_a + (1−λ)·t_b, with λ ~ Beta(alpha, alpha). Unmixed items return
    their one-hot (or multi-hot) target as floats, so every batch collates.

    The default alpha = 10 is AST's (λ concentrated around 0.5, std ≈ 0.11, so a mixed clip clearly holds both
    sounds); image-style mixup uses alpha ≤ 1, where most λ lie near 0 or 1. prob = 0.5 is AST's mixup rate.

    Args:
        dataset: the labelled dataset (e.g. `AudioFolder`, `AudioManifest`, a `Subset` of one).
        num_classes: C.
        alpha: Beta parameter.
        prob: share of mixed items.
        seed: None = a new draw per access from torch's RNG (seeded per DataLoader worker); an int fixes each item's
            partner and λ (the same every epoch; for reproducible tests).
    """

    def __init__(
        self, dataset: Dataset, num_classes: int, alpha: float = 10.0, prob: float = 0.5, seed: int | None = None
    ) -> None:
        require(num_classes >= 1, self, "num_classes", f"must be >= 1, got {num_classes}")
        require(alpha > 0, self, "alpha", f"must be > 0, got {alpha}")
        require(0 <= prob <= 1, self, "prob", f"must be in [0, 1], got {prob}")
        require(len(dataset) >= 1, self, "dataset", "is empty")  # type: ignore[arg-type]
        self.dataset, self.num_classes, self.alpha, self.prob, self.seed = dataset, num_classes, alpha, prob, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _target(self, label: int | Tensor) -> Tensor:
        if isinstance(label, Tensor) and label.ndim == 1:
            if label.shape[0] != self.num_classes:
                raise ValueError(f"Mixup: target has {label.shape[0]} classes, num_classes is {self.num_classes}")
            return label.to(torch.float32)
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"Mixup: label {label} out of range for num_classes={self.num_classes}")
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        target[label] = 1.0
        return target

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        index, n = _check_index(self, index), len(self)
        clip, label = self.dataset[index]
        target = self._target(label)
        rng = _item_rng(self.seed, index)
        if n < 2 or rng.random() >= self.prob:
            return clip, target
        other = int(rng.integers(0, n - 1))
        other += other >= index  # any item but this one
        clip_b, label_b = self.dataset[other]
        lam = float(rng.beta(self.alpha, self.alpha))
        return mix_clips(clip, clip_b, lam), lam * target + (1 - lam) * self._target(label_b)
