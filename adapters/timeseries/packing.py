"""Packed pretraining data: variable-length multivariate windows collated into one packed-input object per batch.

A corpus of heterogeneous series (different lengths and variate counts) cannot be stacked into one (B, L, C)
tensor. :class:`SeriesWindows` cuts windows of whole patches from every series, each window keeping its own
length and variate count; its :meth:`~SeriesWindows.collate_fn` (which :class:`~mmsdk.training.data.DataModule`
uses for any dataset that defines one) turns a list of windows into a :class:`PackedInputs`. That object moves to
a device like a tensor, and :meth:`MoiraiAdapter.tokenize <mmsdk.adapters.timeseries.moirai.MoiraiAdapter.tokenize>`
packs it first-fit into rows of `max_tokens` tokens kept apart by `sample_ids`, so the pretraining system runs
unchanged: tokenize → tail masking per packed sample → mixture NLL.

```python
windows = SeriesWindows([a, b, c], patch_size=32, max_tokens=512, max_length=512)  # a: (T_a, C_a) arrays
mmsdk.pretrain(moirai_config, windows, masking={"strategy": "tail", "ratio": 0.15, "ratio_max": 0.5})
```
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


@dataclass
class PackedInputs:
    """A batch of series to be packed: B windows (L_i, C_i) of any lengths and variate counts.

    Lightning moves it to a device through :meth:`to`; the training systems read :attr:`batch_size` and
    :attr:`device` from it.

    Attributes:
        series: the B windows, each (L_i, C_i) float with NaN at missing points.
        max_tokens: the length of a packed token row (C_i · L_i / P tokens of every window must fit in one).
    """

    series: list[Tensor]
    max_tokens: int

    def __post_init__(self) -> None:
        if not self.series:
            raise ValueError("PackedInputs needs at least one series")
        if self.max_tokens < 1:
            raise ValueError(f"PackedInputs.max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def batch_size(self) -> int:
        """B: the number of series (not of packed rows)."""
        return len(self.series)

    @property
    def device(self) -> torch.device:
        return self.series[0].device

    def to(self, *args: Any, **kwargs: Any) -> PackedInputs:
        """Every series moved/cast like `Tensor.to`."""
        return PackedInputs([s.to(*args, **kwargs) for s in self.series], self.max_tokens)

    def pin_memory(self) -> PackedInputs:
        """Page-locked copies (what a DataLoader with `pin_memory=True` asks a batch for)."""
        return PackedInputs([s.pin_memory() for s in self.series], self.max_tokens)


class PackCollate:
    """DataLoader `collate_fn`: a list of (L_i, C_i) windows → :class:`PackedInputs` (picklable for workers)."""

    shard_rebuildable = True  # shards may rebuild it from its fields (mmsdk.contracts.shards)

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def __call__(self, items: Sequence[Tensor]) -> PackedInputs:
        return PackedInputs([torch.as_tensor(item, dtype=torch.float32) for item in items], self.max_tokens)


class SeriesWindows(Dataset):
    """Windows of whole patches over a collection of (T_i, C_i) series, for packed pretraining.

    Series i gets windows of up to n_i = min(T_i // P, max_length // P, max_tokens // C_i) patches per variate,
    started every `stride` steps (a window never crosses a series). With `variable_length` each window's length is
    drawn (seeded, fixed per index) uniformly from [min_patches, n_i] patches and its start from the steps the
    full-length window would cover, so one corpus trains every context length up to `max_length`. Series shorter
    than `min_patches` patches, or with more than `max_variates` variates, are skipped (logged).

    Args:
        series: (T_i, C_i) (or (T_i,)) float arrays; NaN marks missing values.
        patch_size: P; every window is a multiple of P long.
        max_tokens: packed row length; a window holds at most this many tokens (C_i · patches).
        max_length: longest window in steps (e.g. the model's context length).
        min_patches: shortest window in patches per variate (2 keeps the statistics patches apart from a tail).
        stride: steps between window starts of one series (None: half the longest window of that series).
        variable_length: draw window lengths in [min_patches, n_i] patches instead of always n_i.
        max_variates: skip series with more variates than the model accepts.
        seed: seeds the window lengths and offsets.

    Raises:
        ValueError: for bad sizes or when no series yields a window.
    """

    def __init__(
        self,
        series: Sequence[np.ndarray | Tensor],
        patch_size: int,
        max_tokens: int,
        max_length: int,
        min_patches: int = 2,
        stride: int | None = None,
        variable_length: bool = True,
        max_variates: int | None = None,
        seed: int = 0,
    ) -> None:
        if patch_size < 1 or min_patches < 1 or max_length < min_patches * patch_size:
            raise ValueError(
                f"SeriesWindows needs patch_size >= 1, min_patches >= 1 and max_length >= min_patches·patch_size, "
                f"got {patch_size}, {min_patches}, {max_length}"
            )
        if stride is not None and stride < 1:
            raise ValueError(f"SeriesWindows.stride must be >= 1 or None, got {stride}")
        self.series = [self._as_2d(s) for s in series]
        self.patch_size, self.max_tokens = patch_size, max_tokens
        self.collate_fn = PackCollate(max_tokens)
        rng = np.random.default_rng(seed)
        index: list[tuple[int, int, int]] = []  # (series, start, length)
        skipped = 0
        for i, values in enumerate(self.series):
            steps, variates = values.shape
            if max_variates is not None and variates > max_variates:
                skipped += 1
                continue
            patches = min(steps // patch_size, max_length // patch_size, max_tokens // variates)
            if patches < min_patches:
                skipped += 1
                continue
            span = patches * patch_size
            step = stride if stride is not None else max(patch_size, span // 2)
            for start in range(0, steps - span + 1, step):
                length = span
                if variable_length:
                    length = int(rng.integers(min_patches, patches + 1)) * patch_size
                offset = int(rng.integers(0, span - length + 1))
                index.append((i, start + offset, length))
        if skipped:
            logger.info("SeriesWindows: skipped %d of %d series (too short or too many variates)", skipped, len(series))
        if not index:
            raise ValueError(
                f"SeriesWindows: no series yields a window of {min_patches} patches of {patch_size} steps within "
                f"max_tokens={max_tokens} (series lengths {[s.shape[0] for s in self.series[:8]]}...)"
            )
        self.index = index

    @staticmethod
    def _as_2d(values: np.ndarray | Tensor) -> Tensor:
        if isinstance(values, np.ndarray):
            values = np.array(values, dtype=np.float32)  # a writable copy (statsmodels arrays are read-only)
        tensor = torch.as_tensor(values, dtype=torch.float32)
        if tensor.dim() == 1:
            tensor = tensor.unsqueeze(-1)
        if tensor.dim() != 2:
            raise ValueError(f"SeriesWindows expects (time, variates) series, got shape {tuple(tensor.shape)}")
        return tensor

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> Tensor:
        i, start, length = self.index[index]
        return self.series[i][start : start + length]  # (L, C)

    @property
    def num_tokens(self) -> int:
        """Real tokens over all windows (C · L / P each)."""
        return sum(self.series[i].shape[1] * length // self.patch_size for i, _, length in self.index)
