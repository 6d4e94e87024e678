"""MAE: the encoder sees only the visible tokens; a light decoder fills mask tokens in and predicts every token."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.masking import Mask, unshuffle
from mmsdk.contracts.registry import register_objective
from mmsdk.contracts.tokens import TokenBatch, gather_tokens
from mmsdk.layers.transformer import Transformer
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.layers.weight_init import init_weights
from mmsdk.models.backbone import attention_mask
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import Objective, Prediction


@register_objective
class MaskedAutoencoder(Objective):
    """Encode the visible tokens (`mask.ids_keep`), decode all positions with a shared mask token, predict targets.

    The decoder adds each modality's absolute positions at its own width (and, for several modalities, a modality
    embedding), and rotates by the same coordinates as the encoder when it uses rotary embeddings.
    """

    name = "mae"
    default_term = "reconstruction"

    @classmethod
    def default_decoder(cls, encoder: TransformerConfig) -> TransformerConfig:
        """2 blocks at half the encoder width (rounded to a multiple of the heads)."""
        dim = max(encoder.heads, (encoder.dim // 2) // encoder.heads * encoder.heads)
        return TransformerConfig(dim=dim, depth=2, heads=encoder.heads, norm=encoder.norm)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        dec = config.decoder
        assert dec is not None  # filled in by ModelConfig
        self.decoder_embed = nn.Linear(config.encoder.dim, dec.dim)
        self.mask_token = nn.Parameter(torch.zeros(dec.dim))
        self.decoder_positions = self.backbone.build_positions(dec.dim)
        self.decoder_modality_embedding = None
        if len(self.backbone.adapters) > 1:
            self.decoder_modality_embedding = nn.Embedding(len(self.backbone.adapters), dec.dim)
            nn.init.normal_(self.decoder_modality_embedding.weight, std=0.02)
        self.decoder = Transformer(dec)
        self.heads = self.build_heads(dec.dim, initialize=False)
        self.decoder_embed.apply(init_weights)
        self.initialize_heads(self.heads)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: TokenBatch, mask: Mask | None) -> Prediction:
        if mask is None:
            raise ValueError("the mae objective needs a mask (which tokens the encoder sees)")
        x = self.backbone.embed(batch)  # (B, N, D) content + positions
        h = self.backbone.encode(gather_tokens(x, mask.ids_keep), batch, keep=mask.ids_keep)  # (B, K, D)
        d = unshuffle(self.decoder_embed(h), self.mask_token, mask.ids_restore)  # (B, N, Dd)
        positions = self.backbone.position_embedding(batch, self.decoder_positions, d.shape[-1])
        if positions is not None:
            d = d + positions
        modality = self.backbone.modality_offsets(batch, self.decoder_modality_embedding)
        if modality is not None:
            d = d + modality
        time = self.backbone.time_embedding(batch, d.shape[-1])
        if time is not None:
            d = d + time
        rope = self.backbone.rope_coordinates(batch, self.decoder.config.rope)
        d = self.decoder(d, attention_mask(batch), positions=rope, variate_ids=batch.variate_ids)  # (B, N, Dd)
        return self.apply_heads(self.heads, d, batch)

    def modality_loss(
        self, adapter: Adapter, pred: Tensor, part: TokenBatch, target: Tensor | None
    ) -> Tensor | Mapping[str, Tensor]:
        assert target is not None
        return adapter.reconstruction_loss(pred, part, target)
