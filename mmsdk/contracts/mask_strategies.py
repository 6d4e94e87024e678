"""Mask strategies by name, and drawing one batch's mask from a :class:`MaskingConfig`.

A strategy is a function `strategy(batch, config, ratio, generator) -> Mask` registered under a name (entry-point
group `mmsdk.mask_strategies`, or :func:`~mmsdk.contracts.registry.register_mask_strategy`). It reads what it needs
from the token batch (padding, variate/time/sample ids, positions) and draws its noise with `generator`, so a mask
is a pure function of the generator's seed. The core's strategies are here:

- `random`: uniformly random tokens (MAE);
- `block`: contiguous spans of `span` tokens;
- `group`: the same ratio inside every variate (PatchTST's per-channel masking of a flattened sequence);
- `tail`: the last time steps (forecasting), per packed sample when the batch is packed.

Adapters register their own (Point-MAE's spatial blocks, SSAST's clusters, VideoMAE's tubes) the same way. A
multimodal batch is masked per modality, each with its own strategy and ratio (:func:`draw_mask`), and the masks are
concatenated so that every modality keeps its share of inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmsdk.config import Config, require
from mmsdk.contracts.masking import Mask, num_kept
from mmsdk.contracts.registry import MASK_STRATEGIES, register_mask_strategy
from mmsdk.contracts.tokens import TokenBatch


def noise_with_padding(noise: Tensor, padding_mask: Tensor | None) -> Tensor:
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
    return Mask.from_noise(noise_with_padding(noise, padding_mask), num_kept(num_tokens, ratio))


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
    return Mask.from_noise(noise_with_padding(noise, padding_mask), num_kept(num_tokens, ratio))


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
    return Mask.from_noise(noise_with_padding(score, padding_mask), num_kept(n, ratio))


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
        return Mask.from_noise(noise.clone(), num_tokens - num_masked)
    if time_ids is None:
        time_ids = torch.cumsum(padding_mask.long(), dim=1) - 1  # (B, N) index among real tokens
    real = torch.ones_like(time_ids, dtype=torch.bool) if padding_mask is None else padding_mask
    last = torch.where(real, time_ids, torch.full_like(time_ids, -1)).max(dim=1, keepdim=True).values
    hidden = (time_ids > last - num_masked) | ~real  # (B, N)
    num_hidden = int(hidden.sum(dim=1).max())
    noise = hidden.float() + torch.arange(time_ids.shape[1], device=time_ids.device) * 1e-6
    return Mask.from_noise(noise, time_ids.shape[1] - num_hidden)


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
    return Mask.from_noise(noise, n - num_hidden)


@dataclass
class MaskingConfig(Config):
    """Which tokens a pretraining step hides: a registered strategy and its ratio."""

    strategy: str = "random"
    """A registered mask strategy: random, block, group, tail, or one an adapter registers (see
    `mmsdk.contracts.registry.MASK_STRATEGIES.names()`)."""
    ratio: float = 0.4
    """Fraction of tokens hidden (for tail: fraction of time steps)."""
    ratio_max: float | None = None
    """When set, each batch draws its ratio uniformly from [ratio, ratio_max] (Moirai: 0.15 to 0.5)."""
    span: int = 4
    """Span length in tokens for block masking."""
    options: dict[str, Any] = field(default_factory=dict)
    """Strategy-specific settings, read by strategies that define them."""
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-modality overrides of the fields above for multimodal models, e.g. `{video: {strategy: tube, ratio:
    0.9}}`; modalities not named use this config."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.strategy in MASK_STRATEGIES,
            self,
            "strategy",
            f"unknown strategy {self.strategy!r}; known: {MASK_STRATEGIES.names()}",
        )
        require(0.0 < self.ratio < 1.0, self, "ratio", f"must be in (0, 1), got {self.ratio}")
        if self.ratio_max is not None:
            require(
                self.ratio <= self.ratio_max < 1.0,
                self,
                "ratio_max",
                f"must be in [ratio={self.ratio}, 1), got {self.ratio_max}",
            )
        require(self.span >= 1, self, "span", f"must be >= 1, got {self.span}")
        for name, override in self.modalities.items():
            require(
                isinstance(override, Mapping) and "modalities" not in override,
                self,
                f"modalities.{name}",
                f"must be a mapping of MaskingConfig fields other than `modalities`, got {override!r}",
            )
            self.for_modality(name)  # validates the override

    def for_modality(self, name: str) -> MaskingConfig:
        """The config of one modality: this one with the modality's overrides applied."""
        override = self.modalities.get(name)
        if not override:
            return self
        fields = {k: v for k, v in self.to_dict().items() if k != "modalities"}
        try:
            return MaskingConfig.from_dict({**fields, **override})
        except ValueError as err:
            raise ValueError(f"MaskingConfig.modalities.{name}: {err}") from err


def draw_ratio(
    config: MaskingConfig, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> float:
    """The mask ratio of one batch: `config.ratio`, or a uniform draw from [ratio, ratio_max]."""
    if config.ratio_max is None or config.ratio_max == config.ratio:
        return config.ratio
    u = float(torch.rand((), generator=generator, device=device))
    return config.ratio + u * (config.ratio_max - config.ratio)


def apply_strategy(config: MaskingConfig, batch: TokenBatch, generator: torch.Generator | None = None) -> Mask:
    """One batch's mask under `config`: the ratio is drawn first (from `generator`), then the strategy runs."""
    ratio = draw_ratio(config, batch.tokens.device, generator)
    return MASK_STRATEGIES.get(config.strategy)(batch, config, ratio, generator)


def draw_mask(config: MaskingConfig, batch: TokenBatch, generator: torch.Generator | None = None) -> Mask:
    """The mask of a token batch; a multimodal batch (with `parts`) is masked part by part, in order.

    Each modality uses :meth:`MaskingConfig.for_modality` and draws from the same generator, so the whole mask is a
    pure function of the generator's seed.
    """
    if not batch.parts:
        return apply_strategy(config, batch, generator)
    return Mask.concat([apply_strategy(config.for_modality(n), p, generator) for n, p in batch.parts.items()])


# ------------------------------------------------------------------------------------------------ the registered


@register_mask_strategy("random")
def random_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """Uniformly random tokens; padding is hidden first."""
    b, n = batch.batch_size, batch.num_tokens
    return random_mask(b, n, ratio, generator, batch.tokens.device, batch.padding_mask)


@register_mask_strategy("block")
def block_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """Contiguous spans of `config.span` tokens."""
    b, n = batch.batch_size, batch.num_tokens
    return block_mask(b, n, ratio, config.span, generator, batch.tokens.device, batch.padding_mask)


@register_mask_strategy("group")
def group_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """The same ratio inside every variate (needs `variate_ids`)."""
    if batch.variate_ids is None:
        raise ValueError("MaskingConfig.strategy='group' needs variate ids in the token batch")
    return group_mask(batch.variate_ids, ratio, generator, batch.padding_mask)


@register_mask_strategy("tail")
def tail_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """The last `ratio` of the time steps (of every packed sample when the batch has `sample_ids`)."""
    if batch.sample_ids is not None:
        if batch.time_ids is None:
            raise ValueError("tail masking of packed rows (sample_ids) needs time ids in the token batch")
        return sample_tail_mask(batch.time_ids, batch.sample_ids, ratio, batch.padding_mask)
    b, n, time_ids = batch.batch_size, batch.num_tokens, batch.time_ids
    steps = n if time_ids is None else int(time_ids.max()) + 1
    num_masked = max(1, round(steps * ratio))
    return tail_mask(b, n, num_masked, batch.tokens.device, time_ids, batch.padding_mask)
