"""Token masking with one convention for every strategy: argsort of per-token noise.

Each strategy produces a noise score per token (lower = more likely kept); :func:`mask_from_noise` turns it into
`ids_keep` (the kept tokens in order of noise), `ids_restore` (the inverse permutation) and a boolean `mask`
(True = hidden). The number of kept tokens is the same for every sequence in a batch, so shapes stay static.
Adapters plug their own strategies (tube, cluster, time/frequency) in by building noise and calling
:func:`mask_from_noise`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mmsdk.config import Config, require

MaskStrategy = Literal["random", "block", "group", "tail"]


@dataclass
class Mask:
    """A batch of masks over N tokens with K kept per sequence.

    Attributes:
        ids_keep: (B, K) long, indices of kept (visible) tokens.
        ids_restore: (B, N) long; `gather(cat(kept, hidden), ids_restore)` puts tokens back in order.
        mask: (B, N) bool, True where the token is hidden (to be predicted).
    """

    ids_keep: Tensor
    ids_restore: Tensor
    mask: Tensor

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]


def num_kept(num_tokens: int, ratio: float) -> int:
    """Tokens kept when masking `ratio` of N: at least 1 kept and at least 1 masked (for N > 1)."""
    keep = round(num_tokens * (1.0 - ratio))
    return max(1, min(num_tokens - 1, keep)) if num_tokens > 1 else 1


def mask_from_noise(noise: Tensor, num_keep: int) -> Mask:
    """The core of every strategy: keep the `num_keep` tokens with the lowest noise.

    Args:
        noise: (B, N) float scores.
        num_keep: K, tokens kept per sequence.
    """
    if noise.dim() != 2:
        raise ValueError(f"mask noise must be (B, N), got shape {tuple(noise.shape)}")
    n = noise.shape[1]
    if not 1 <= num_keep <= n:
        raise ValueError(f"num_keep must be in [1, {n}], got {num_keep}")
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)  # (B, N): ascending noise, kept first
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # (B, N)
    ids_keep = ids_shuffle[:, :num_keep]  # (B, K)
    mask = torch.ones_like(noise, dtype=torch.bool)
    mask[:, :num_keep] = False
    mask = torch.gather(mask, 1, ids_restore)  # (B, N) in original order
    return Mask(ids_keep, ids_restore, mask)


def _noise_with_padding(noise: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Pushes padded tokens (False in padding_mask) to the end so they are dropped first."""
    if padding_mask is None:
        return noise
    return noise + (~padding_mask).to(noise.dtype) * 1e4


def random_mask(
    batch_size: int,
    num_tokens: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    padding_mask: Tensor | None = None,
) -> Mask:
    """Uniformly random masking of `ratio` of the tokens (MAE)."""
    noise = torch.rand(batch_size, num_tokens, generator=generator, device=device)
    return mask_from_noise(_noise_with_padding(noise, padding_mask), num_kept(num_tokens, ratio))


def block_mask(
    batch_size: int,
    num_tokens: int,
    ratio: float,
    span: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    padding_mask: Tensor | None = None,
) -> Mask:
    """Masks contiguous spans of `span` tokens: tokens of one span share one noise value."""
    spans = -(-num_tokens // span)
    span_noise = torch.rand(batch_size, spans, generator=generator, device=device)  # (B, S)
    noise = span_noise.repeat_interleave(span, dim=1)[:, :num_tokens]  # (B, N)
    noise = noise + torch.arange(num_tokens, device=noise.device) * 1e-6  # deterministic order within a span
    return mask_from_noise(_noise_with_padding(noise, padding_mask), num_kept(num_tokens, ratio))


def group_mask(
    group_ids: Tensor,
    ratio: float,
    generator: torch.Generator | None = None,
    padding_mask: Tensor | None = None,
) -> Mask:
    """Masks `ratio` of the tokens *within each group* (e.g. per channel of a flattened multivariate sequence).

    Ranks tokens inside their group by random noise and maps the rank to [0, 1); taking the lowest global scores
    then keeps the same fraction of every group (exactly, when groups have equal sizes).

    Args:
        group_ids: (B, N) long group of each token.
    """
    b, n = group_ids.shape
    noise = torch.rand(b, n, generator=generator, device=group_ids.device)
    order = torch.argsort(group_ids.double() * 2.0 + noise.double(), dim=1)  # groups contiguous, random inside
    sorted_groups = torch.gather(group_ids, 1, order)
    starts = torch.ones_like(sorted_groups, dtype=torch.bool)
    starts[:, 1:] = sorted_groups[:, 1:] != sorted_groups[:, :-1]
    position = torch.arange(n, device=group_ids.device).expand(b, n)
    group_start = torch.cummax(torch.where(starts, position, torch.zeros_like(position)), dim=1).values
    rank_sorted = (position - group_start).float()  # rank inside the group
    dense = torch.cumsum(starts.long(), dim=1) - 1  # (B, N) group index in [0, N), whatever the id values
    sizes = torch.zeros_like(rank_sorted).scatter_add_(1, dense, torch.ones_like(rank_sorted))
    size_sorted = torch.gather(sizes, 1, dense)
    score_sorted = (rank_sorted + 0.5) / size_sorted  # in (0, 1)
    score = torch.empty_like(score_sorted).scatter_(1, order, score_sorted)
    return mask_from_noise(_noise_with_padding(score, padding_mask), num_kept(n, ratio))


def tail_mask(
    batch_size: int,
    num_tokens: int,
    num_masked: int,
    device: torch.device | str | None = None,
    time_ids: Tensor | None = None,
    padding_mask: Tensor | None = None,
) -> Mask:
    """Masks the last `num_masked` time steps (forecasting). With `time_ids` (B, N) it masks the tokens of the
    last `num_masked` time steps of every variate. Padded tokens (False in `padding_mask`) are always hidden and
    "last" means the last *real* steps; rows hiding fewer tokens than the batch maximum also hide their latest
    visible ones, so every row keeps the same count."""
    if time_ids is None and padding_mask is None:
        noise = torch.arange(num_tokens, device=device, dtype=torch.float32).expand(batch_size, num_tokens)
        return mask_from_noise(noise.clone(), num_tokens - num_masked)
    if time_ids is None:
        time_ids = torch.cumsum(padding_mask.long(), dim=1) - 1  # (B, N) index among real tokens
    real = torch.ones_like(time_ids, dtype=torch.bool) if padding_mask is None else padding_mask
    last = torch.where(real, time_ids, torch.full_like(time_ids, -1)).max(dim=1, keepdim=True).values
    hidden = (time_ids > last - num_masked) | ~real  # (B, N)
    num_hidden = int(hidden.sum(dim=1).max())
    noise = hidden.float() + torch.arange(time_ids.shape[1], device=time_ids.device) * 1e-6
    return mask_from_noise(noise, time_ids.shape[1] - num_hidden)


def sample_tail_mask(
    time_ids: Tensor,
    sample_ids: Tensor,
    ratio: float,
    padding_mask: Tensor | None = None,
) -> Mask:
    """Tail masking for packed rows: every sample (series) hides the last `ratio` of *its own* time steps.

    A packed row holds several series, each with time ids starting at 0, so "the last steps" must be found per
    (row, sample) rather than per row. Sample i with T_i steps hides its last max(1, round(T_i · ratio)) steps
    (all of them for a one-step sample). Padded tokens are always hidden; rows hiding fewer tokens than the batch
    maximum also hide their latest visible ones, so every row keeps the same count.

    Args:
        time_ids: (B, N) long time step of each token within its sample.
        sample_ids: (B, N) long sample of each token (values need not be contiguous).
        ratio: fraction of each sample's time steps to hide, in (0, 1).
        padding_mask: (B, N) bool, True for real tokens.
    """
    if time_ids.shape != sample_ids.shape or time_ids.dim() != 2:
        raise ValueError(
            f"time_ids and sample_ids must both be (B, N), got {tuple(time_ids.shape)} and {tuple(sample_ids.shape)}"
        )
    b, n = time_ids.shape
    real = torch.ones_like(time_ids, dtype=torch.bool) if padding_mask is None else padding_mask
    # dense per-row sample index so the per-sample table is at most (B, N)
    _, dense = torch.unique(sample_ids, return_inverse=True)  # (B, N) in [0, U)
    slots = int(dense.max()) + 1
    masked_times = torch.where(real, time_ids, torch.full_like(time_ids, -1))
    last = torch.full((b, slots), -1, dtype=time_ids.dtype, device=time_ids.device)
    last = last.scatter_reduce(1, dense, masked_times, reduce="amax")  # (B, U) last real step of each sample
    steps = (last + 1).clamp(min=1).double()
    hide = torch.round(steps * ratio).clamp(min=1).long()  # (B, U) steps hidden per sample
    threshold = torch.gather(last - hide, 1, dense)  # (B, N)
    hidden = (time_ids > threshold) | ~real  # (B, N)
    num_hidden = int(hidden.sum(dim=1).max())
    noise = hidden.float() + torch.arange(n, device=time_ids.device) * 1e-6
    return mask_from_noise(noise, n - num_hidden)


@dataclass
class MaskingConfig(Config):
    """Which tokens a pretraining system hides."""

    strategy: MaskStrategy = "random"
    """random (uniform), block (contiguous spans), group (same ratio in every variate) or tail (forecast)."""
    ratio: float = 0.4
    """Fraction of tokens hidden (for tail: fraction of time steps)."""
    ratio_max: float | None = None
    """When set, each batch draws its ratio uniformly from [ratio, ratio_max] (Moirai: 0.15 to 0.5)."""
    span: int = 4
    """Span length in tokens for block masking."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.ratio < 1.0, self, "ratio", f"must be in (0, 1), got {self.ratio}")
        if self.ratio_max is not None:
            require(
                self.ratio <= self.ratio_max < 1.0,
                self,
                "ratio_max",
                f"must be in [ratio={self.ratio}, 1), got {self.ratio_max}",
            )
        require(self.span >= 1, self, "span", f"must be >= 1, got {self.span}")


def draw_ratio(
    config: MaskingConfig, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> float:
    """The mask ratio of one batch: `config.ratio`, or a uniform draw from [ratio, ratio_max]."""
    if config.ratio_max is None or config.ratio_max == config.ratio:
        return config.ratio
    u = float(torch.rand((), generator=generator, device=device))
    return config.ratio + u * (config.ratio_max - config.ratio)


def apply_strategy(
    config: MaskingConfig,
    batch_size: int,
    num_tokens: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    padding_mask: Tensor | None = None,
    group_ids: Tensor | None = None,
    time_ids: Tensor | None = None,
    sample_ids: Tensor | None = None,
) -> Mask:
    """Draws a mask for one batch according to a :class:`MaskingConfig`.

    With `config.ratio_max` the batch's ratio is drawn from `generator` first, so masks stay a pure function of
    the generator's seed. With `sample_ids` (packed rows), tail masking hides the tail of every sample.
    """
    ratio = draw_ratio(config, device, generator)
    if config.strategy == "random":
        return random_mask(batch_size, num_tokens, ratio, generator, device, padding_mask)
    if config.strategy == "block":
        return block_mask(batch_size, num_tokens, ratio, config.span, generator, device, padding_mask)
    if config.strategy == "group":
        if group_ids is None:
            raise ValueError("MaskingConfig.strategy='group' needs variate ids in the token batch")
        return group_mask(group_ids.to(device), ratio, generator, padding_mask)
    if sample_ids is not None:
        if time_ids is None:
            raise ValueError("tail masking of packed rows (sample_ids) needs time ids in the token batch")
        return sample_tail_mask(time_ids, sample_ids, ratio, padding_mask)
    steps = num_tokens if time_ids is None else int(time_ids.max()) + 1
    num_masked = max(1, round(steps * ratio))
    return tail_mask(batch_size, num_tokens, num_masked, device, time_ids, padding_mask)


def unshuffle(visible: Tensor, fill: Tensor, ids_restore: Tensor) -> Tensor:
    """Appends `fill` tokens after the visible ones and restores the original order.

    Args:
        visible: (B, K, D) encoded visible tokens.
        fill: (D,) token placed at every hidden position (e.g. a learned mask token).
        ids_restore: (B, N) from the mask.

    Returns:
        (B, N, D).
    """
    b, k, d = visible.shape
    n = ids_restore.shape[1]
    full = torch.cat([visible, fill.to(visible.dtype).expand(b, n - k, d)], dim=1)  # (B, N, D) shuffled order
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
