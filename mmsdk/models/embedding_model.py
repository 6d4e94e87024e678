"""The embedding model: the backbone alone, pooled over every real token (for export and search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter
from mmsdk.models.backbone import Backbone


class EmbeddingModel(nn.Module):
    """Raw inputs → (B, D) embeddings: the mean of the encoder features over real (non-padding) tokens of every
    modality given.

    Args:
        backbone: the pretrained backbone.
        modalities: the modalities the model reads (its graph inputs when exported); the others are absent. None =
            every modality of the backbone.
    """

    def __init__(self, backbone: Backbone, modalities: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        names = backbone.names if modalities is None else list(modalities)
        unknown = sorted(set(names) - set(backbone.names))
        if not names or unknown:
            raise ValueError(f"EmbeddingModel: modalities must be some of {backbone.names}, got {names}")
        self.modalities = names

    @property
    def input_adapters(self) -> dict[str, Adapter]:
        """The adapters of the modalities the model reads, in order (an exporter's graph inputs)."""
        return {name: self.backbone.adapters[name] for name in self.modalities}  # type: ignore[misc]

    def forward(self, inputs: Any) -> Tensor:
        if len(self.modalities) < len(self.backbone.names) and not isinstance(inputs, Mapping):
            inputs = {self.modalities[0]: inputs}
        batch = self.backbone.tokenize(inputs)
        hidden = self.backbone(batch)  # (B, N, D)
        if batch.padding_mask is None:
            return hidden.mean(dim=1)
        weight = batch.padding_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)
