"""Pretraining models, one per objective. They return predictions; losses belong to the training system.

- :class:`MaskedAutoencoder` (MAE): the encoder sees only visible tokens; a light decoder fills mask tokens in.
- :class:`MaskedTokenModel` (BERT/PatchTST/SSAST): hidden tokens are replaced by a mask embedding inside the
  encoder (a learned mask token, or one the adapter defines).
- :class:`CausalModel` (GPT/Timer-XL): causal attention; the prediction at a token is about the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmsdk.adapter import Adapter
from mmsdk.attention_mask import AttentionMask
from mmsdk.backbone import Backbone, ModelConfig
from mmsdk.blocks import init_weights
from mmsdk.masking import Mask, unshuffle
from mmsdk.tokens import TokenBatch
from mmsdk.transformer import Transformer


@dataclass
class Prediction:
    """What a pretraining model returns.

    Attributes:
        pred: (B, N, P) predicted targets for every token position ((B, N, K) outputs of the adapter's own
            pretraining head when it defines one, see :meth:`~mmsdk.adapter.Adapter.build_pretrain_head`).
        hidden: (B, N) bool, True for tokens the loss is about (masked tokens; all tokens for causal).
    """

    pred: Tensor
    hidden: Tensor


def build_pretrain_head(adapter: Adapter, dim: int) -> nn.Module:
    """The adapter's pretraining head for width `dim`, else a freshly initialized `nn.Linear(dim, target_dim)`."""
    head = adapter.build_pretrain_head(dim)
    if head is None:
        head = nn.Linear(dim, adapter.target_dim)
        head.apply(init_weights)
    return head


class PretrainModel(nn.Module):
    """Shared surface of pretraining models: `tokenize(raw)`, `forward(batch, mask)`, `embed(raw)`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)

    @property
    def adapter(self):
        return self.backbone.adapter

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        """Validated token batch of raw inputs."""
        return self.backbone.tokenize(inputs)

    @torch.no_grad()
    def embed(self, inputs: Tensor) -> Tensor:
        """(B, N, D) encoder features of raw inputs with nothing masked."""
        return self.backbone(self.tokenize(inputs), causal=self.config.objective == "causal")


class MaskedAutoencoder(PretrainModel):
    """MAE: encode visible tokens, decode all positions with mask tokens, predict targets of every token."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        dec = config.decoder
        assert dec is not None  # filled in by ModelConfig
        self.decoder_embed = nn.Linear(config.encoder.dim, dec.dim)
        self.mask_token = nn.Parameter(torch.zeros(dec.dim))
        self.decoder_positions = self.adapter.build_positions(dec.dim)
        self.decoder = Transformer(dec)
        own_head = self.adapter.build_pretrain_head(dec.dim)
        self.head = nn.Linear(dec.dim, self.adapter.target_dim) if own_head is None else own_head
        self.decoder_embed.apply(init_weights)
        if own_head is None:
            self.head.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: TokenBatch, mask: Mask) -> Prediction:
        visible = batch.select(mask.ids_keep)  # K tokens per sequence
        h = self.backbone(visible)  # (B, K, D)
        d = self.decoder_embed(h)  # (B, K, Dd)
        d = unshuffle(d, self.mask_token, mask.ids_restore)  # (B, N, Dd)
        if self.decoder_positions is not None and batch.positions is not None:
            d = d + self.decoder_positions(batch.positions)
        d = self.decoder(d, AttentionMask.from_batch(batch), variate_ids=batch.variate_ids)  # (B, N, Dd)
        return Prediction(self.head(d), mask.mask)  # (B, N, P)


class MaskedTokenModel(PretrainModel):
    """BERT-style: hidden tokens become a mask embedding (plus their position) inside the encoder.

    The mask embedding is the adapter's :meth:`~mmsdk.adapter.Adapter.mask_embedding` when it defines one (then
    the model has no `mask_token` parameter), else a learned `mask_token`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if self.adapter.mask_embedding() is None:
            self.mask_token = nn.Parameter(torch.zeros(config.encoder.dim))
            nn.init.normal_(self.mask_token, std=0.02)
        else:
            self.register_parameter("mask_token", None)
        self.head = build_pretrain_head(self.adapter, config.encoder.dim)

    def mask_embedding(self) -> Tensor:
        """(D,) embedding placed at hidden tokens."""
        if self.mask_token is not None:
            return self.mask_token
        fill = self.adapter.mask_embedding()
        assert fill is not None  # the adapter defined one when the model was built
        return fill

    def forward(self, batch: TokenBatch, mask: Mask) -> Prediction:
        fill = self.mask_embedding().to(batch.tokens.dtype)  # (D,)
        tokens = torch.where(mask.mask.unsqueeze(-1), fill, batch.tokens)
        h = self.backbone(batch.replace(tokens=tokens))  # (B, N, D)
        return Prediction(self.head(h), mask.mask)


class CausalModel(PretrainModel):
    """Decoder-only next-token prediction: pred[:, t] predicts the target of the token after t."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.head = build_pretrain_head(self.adapter, config.encoder.dim)

    def forward(self, batch: TokenBatch, mask: Mask | None = None) -> Prediction:
        h = self.backbone(batch, causal=True)  # (B, N, D)
        hidden = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        return Prediction(self.head(h), hidden)


OBJECTIVES: dict[str, type[PretrainModel]] = {
    "mae": MaskedAutoencoder,
    "bert": MaskedTokenModel,
    "causal": CausalModel,
}
