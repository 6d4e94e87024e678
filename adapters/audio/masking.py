"""SSAST's cluster masking of spectrogram patches, registered as the `cluster` mask strategy."""

from __future__ import annotations

import math

import torch

from mmsdk.contracts.mask_strategies import MaskingConfig, noise_with_padding
from mmsdk.contracts.masking import Mask, num_kept
from mmsdk.contracts.registry import register_mask_strategy
from mmsdk.contracts.tokens import TokenBatch, gather_tokens


@register_mask_strategy("cluster")
def cluster_strategy(batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None) -> Mask:
    """Hides square clusters of neighbouring patches (SSAST's patch masking): per clip, about
    `hidden / size²` random real patches are cluster centres and the `ratio` of the tokens nearest to a centre (in
    Chebyshev distance over the (frequency, time) grid) are hidden. The cluster side is drawn per batch from
    `config.options["cluster_min"]`..`["cluster_max"]` (SSAST: 3 to 6 patches). Padding is hidden first.

    Raises:
        ValueError: when the batch has no (B, N, 2) grid positions (it is not a spectrogram batch).
    """
    if batch.positions is None or batch.positions.dim() != 3 or batch.positions.shape[-1] != 2:
        raise ValueError("MaskingConfig.strategy='cluster' needs (B, N, 2) (frequency, time) token positions")
    lo, hi = int(config.options.get("cluster_min", 3)), int(config.options.get("cluster_max", 6))
    if not 1 <= lo <= hi:
        raise ValueError(f"MaskingConfig.options: need 1 <= cluster_min <= cluster_max, got {lo}, {hi}")
    b, n = batch.batch_size, batch.num_tokens
    device = batch.tokens.device
    keep = num_kept(n, ratio)
    side = int(torch.randint(lo, hi + 1, (), generator=generator))
    centres = max(1, min(n, math.ceil((n - keep) / side**2)))
    pick = torch.rand(b, n, generator=generator, device=device)  # centres among real tokens first
    anchors = noise_with_padding(pick, batch.padding_mask).argsort(dim=1)[:, :centres]  # (B, K)
    grid = batch.positions.float()  # (B, N, 2)
    anchor_pos = gather_tokens(grid, anchors)  # (B, K, 2)
    distance = (grid[:, :, None, :] - anchor_pos[:, None, :, :]).abs().amax(dim=-1).amin(dim=-1)  # (B, N)
    tie = 1e-3 * torch.rand(b, n, generator=generator, device=device)  # break ties at random
    return Mask.from_noise(noise_with_padding(-(distance + tie), batch.padding_mask), keep)
