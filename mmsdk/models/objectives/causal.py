"""Decoder-only next-token prediction (GPT, Timer-XL): causal attention, the prediction at a token is about the
next one."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import register_objective
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import Objective, Prediction


@register_objective
class CausalModel(Objective):
    """pred[:, t] predicts the target of the token after t; each adapter defines "after" (`next_token_loss`)."""

    name = "causal"
    uses_mask = False
    causal = True
    default_term = "next_token"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.heads = self.build_heads(config.encoder.dim)

    def forward(self, batch: TokenBatch, mask: Mask | None = None) -> Prediction:
        return self.apply_heads(self.heads, self.backbone(batch), batch)  # causal encoder (B, N, D) → heads

    def modality_loss(
        self, adapter: Adapter, pred: Tensor, part: TokenBatch, target: Tensor | None
    ) -> Tensor | Mapping[str, Tensor]:
        return adapter.next_token_loss(pred, part)
