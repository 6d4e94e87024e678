"""Point-MAE's block masking, registered as the `point_block` mask strategy."""

from __future__ import annotations

import torch

from mmsdk.contracts.mask_strategies import MaskingConfig, noise_with_padding
from mmsdk.contracts.masking import Mask, num_kept
from mmsdk.contracts.registry import register_mask_strategy
from mmsdk.contracts.tokens import TokenBatch, gather_tokens


@register_mask_strategy("point_block")
def point_block_strategy(
    batch: TokenBatch, config: MaskingConfig, ratio: float, generator: torch.Generator | None
) -> Mask:
    """Hides one spatially contiguous block per cloud: the `ratio` of the groups nearest to a random group center
    (Point-MAE's `mask_type: block`, `_mask_center_block`). Padding is hidden first.

    Raises:
        ValueError: when the batch has no 3-D group centers as positions (e.g. it is not a Point-MAE batch).
    """
    if batch.positions is None or batch.positions.dim() != 3 or batch.positions.shape[-1] < 3:
        raise ValueError("MaskingConfig.strategy='point_block' needs (B, S, 3) group centers as token positions")
    b, n = batch.batch_size, batch.num_tokens
    centers = batch.positions[..., :3].float()  # (B, S, 3)
    pick = torch.randint(0, n, (b, 1), generator=generator, device=centers.device)  # (B, 1) one anchor group each
    anchor = gather_tokens(centers, pick)  # (B, 1, 3)
    distance = (centers - anchor).square().sum(dim=-1)  # (B, S)
    return Mask.from_noise(noise_with_padding(-distance, batch.padding_mask), num_kept(n, ratio))
