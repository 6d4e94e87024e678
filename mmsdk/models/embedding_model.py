"""The embedding model: the backbone alone, pooled over every real token (for export and search)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmsdk.models.backbone import Backbone


class EmbeddingModel(nn.Module):
    """Raw inputs → (B, D) embeddings: the mean of the encoder features over real (non-padding) tokens of every
    modality."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config

    def forward(self, inputs: Any) -> Tensor:
        batch = self.backbone.tokenize(inputs)
        hidden = self.backbone(batch)  # (B, N, D)
        if batch.padding_mask is None:
            return hidden.mean(dim=1)
        weight = batch.padding_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)
