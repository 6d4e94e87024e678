"""VideoMAE's tube masking, registered as the `tube` mask strategy (spacetime-random masking is `random`)."""

from __future__ import annotations

import torch

from mmsdk.contracts.mask_strategies import MaskingConfig, noise_with_padding
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import register_mask_strategy
from mmsdk.contracts.tokens import TokenBatch


@register_mask_strategy("tube")
def tube_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """Hides the same spatial locations at every time step (VideoMAE's tube masking): `ratio` of the S tubes of
    one time step are drawn per clip, and all their tubes in time are hidden, so a hidden tube cannot be copied
    from its neighbour in time. Padding tokens are hidden first.

    Needs a time-major token grid with `time_ids` (every time step holds the same S spatial tokens in the same
    order), as the video adapter makes.

    Raises:
        ValueError: without time ids, or when the tokens are not a whole time × space grid.
    """
    if batch.time_ids is None:
        raise ValueError("MaskingConfig.strategy='tube' needs time_ids (a time-major grid of video tubes)")
    b, n = batch.batch_size, batch.num_tokens
    steps = int(batch.time_ids[0].max()) + 1
    if n % steps:
        raise ValueError(f"MaskingConfig.strategy='tube': {n} tokens are not {steps} time steps of equal size")
    space = n // steps
    keep_space = min(space, max(1, round(space * (1.0 - ratio))))
    draw = torch.rand(b, space, generator=generator, device=batch.tokens.device)  # (B, S)
    rank = draw.argsort(dim=1).argsort(dim=1).float()  # (B, S) each location's rank, 0 = kept first
    time = torch.arange(steps, device=rank.device).repeat_interleave(space) / (2 * steps)  # (N,) in [0, 0.5)
    noise = rank.repeat(1, steps) + time  # (B, N): a location's tubes stay together, earlier time first
    return Mask.from_noise(noise_with_padding(noise, batch.padding_mask), keep_space * steps)
