"""Quantile outputs of the forecast heads that learn them (PatchTST, Timer-XL), with the pinball loss.

A head with `HeadConfig.quantiles` (Q levels) predicts 1 + Q values per horizon step and variate: the point
forecast (trained with MSE, like a head without quantiles) and the Q quantiles (trained with the pinball loss, see
:class:`~mmsdk.models.tasks.Forecast`). Quantiles are sorted along the level axis before they leave the head, so
they never cross (the rearrangement of Chernozhukov et al., which keeps every level's pinball loss as low or lower).
"""

from __future__ import annotations

from torch import Tensor

from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tasks import FORECAST, QUANTILES, Outputs


def output_count(head: HeadConfig) -> int:
    """Values per horizon step and variate: 1 (the point forecast) + the number of quantile levels."""
    return 1 + len(head.quantiles or ())


def forecast_outputs(values: Tensor, head: HeadConfig) -> Outputs:
    """(B, 1 + Q, H, C) values in data units → the point forecast (B, H, C), or, for a head with quantiles,
    {"forecast": (B, H, C), "quantiles": (B, H, C, Q), sorted along Q}."""
    if head.quantiles is None:
        return values[:, 0]
    quantiles = values[:, 1:].permute(0, 2, 3, 1).sort(dim=-1).values  # (B, H, C, Q)
    return {FORECAST: values[:, 0], QUANTILES: quantiles}
