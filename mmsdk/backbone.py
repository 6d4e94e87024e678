"""The model config and the backbone: adapter tokens + absolute positions → shared transformer encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from mmsdk.adapter import Adapter, build_adapter, get_adapter_class
from mmsdk.attention_mask import AttentionMask
from mmsdk.config import Config
from mmsdk.tokens import TokenBatch
from mmsdk.transformer import Transformer, TransformerConfig

Objective = Literal["mae", "bert", "causal"]


@dataclass
class ModelConfig(Config):
    """A whole model: which adapter, the encoder, the pretraining objective and (for MAE) the decoder."""

    adapter: str = "patchtst"
    """Registered adapter name (see `mmsdk.available_adapters()`)."""
    adapter_config: dict[str, Any] = field(default_factory=dict)
    """The adapter's own config fields (validated by the adapter's config class)."""
    encoder: TransformerConfig = field(default_factory=TransformerConfig)
    """The shared transformer encoder."""
    objective: Objective = "mae"
    """mae (encoder sees visible tokens only, light decoder), bert (mask token inside the encoder) or causal
    (next-token prediction)."""
    decoder: TransformerConfig | None = None
    """The MAE decoder (defaults to 2 blocks at half the encoder width); ignored by other objectives."""
    norm_targets: bool = False
    """Normalize each target token (per-patch normalized targets, MAE's norm_pix_loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        cls = get_adapter_class(self.adapter)  # raises ValueError naming the known adapters
        self.adapter_config = cls.config_class.from_dict(self.adapter_config).to_dict()
        if self.objective == "mae" and self.decoder is None:
            dim = max(self.encoder.heads, (self.encoder.dim // 2) // self.encoder.heads * self.encoder.heads)
            self.decoder = TransformerConfig(dim=dim, depth=2, heads=self.encoder.heads, norm=self.encoder.norm)


class Backbone(nn.Module):
    """Adapter + absolute positions + encoder: raw tokens in, contextual features out.

    State-dict keys under `backbone.` are what a pretrained checkpoint hands to a fine-tuning model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.adapter: Adapter = build_adapter(config.adapter, config.adapter_config, config.encoder.dim)
        self.positions = self.adapter.build_positions(config.encoder.dim)
        self.embed_dropout = nn.Dropout(self.adapter.embedding_dropout())
        self.encoder = Transformer(config.encoder)

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        """Validated tokens of raw inputs."""
        return self.adapter.tokenize(inputs).validate()

    def embed(self, batch: TokenBatch) -> Tensor:
        """Content embeddings plus absolute positions, then the adapter's embedding dropout: (B, N, D)."""
        x = batch.tokens
        if self.positions is not None and batch.positions is not None:
            x = x + self.positions(batch.positions)
        return self.embed_dropout(x)

    def encode(self, x: Tensor, batch: TokenBatch, causal: bool = False) -> Tensor:
        """Runs the encoder over embedded tokens x (B, N, D) with the masks and ids of `batch`."""
        rope = self.config.encoder.rope
        rope_positions = None
        if rope == "1d":
            # time ids, else the first position axis: both survive `select`, so visible-only (MAE) encoders rotate
            # tokens by their original place, not their index among the visible ones
            rope_positions = batch.time_ids
            if rope_positions is None and batch.positions is not None:
                rope_positions = batch.positions[..., 0]
        elif rope == "axial":
            rope_positions = batch.positions
        return self.encoder(
            x,
            AttentionMask.from_batch(batch, causal=causal),
            positions=rope_positions,
            variate_ids=batch.variate_ids,
        )

    def forward(self, batch: TokenBatch, causal: bool = False) -> Tensor:
        """(B, N, D) features of every token of `batch`."""
        return self.encode(self.embed(batch), batch, causal)
