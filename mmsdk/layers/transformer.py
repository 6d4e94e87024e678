"""The shared transformer stack (configured by :class:`~mmsdk.layers.transformer_config.TransformerConfig`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsdk.layers.attention import PreparedMask
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.block import Block, memory_mask
from mmsdk.layers.norms import build_norm
from mmsdk.layers.rotary import Rotary
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.layers.weight_init import init_weights


class Transformer(nn.Module):
    """Embedded tokens in, contextual tokens out: blocks + final norm (unless `final_norm=False`).

    The attention mask is resolved once per forward (dense matrix or FlexAttention block mask) and shared by
    all blocks.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        rope = None
        if config.rope != "none":
            axes = config.rope_axes if config.rope == "axial" else 1
            rope = Rotary(config.dim // config.heads, axes)
        self.rope = rope
        rates = [config.drop_path * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(config, rate, rope) for rate in rates)
        eps = config.norm_eps if config.final_norm_eps is None else config.final_norm_eps
        self.norm = build_norm(config.norm, config.dim, eps) if config.final_norm else nn.Identity()
        self.apply(init_weights)

    def forward(
        self,
        x: Tensor,
        mask: AttentionMask | None = None,
        positions: Tensor | None = None,
        variate_ids: Tensor | None = None,
        memory: Tensor | None = None,
        memory_padding: Tensor | None = None,
    ) -> Tensor:
        """Runs the stack.

        Args:
            x: (B, N, D) embedded tokens.
            mask: which tokens attend to which; None = full attention.
            positions: rope coordinates, (B, N) or (B, N, k); defaults to the token index.
            variate_ids: (B, N) long for the same-variate bias.
            memory: (B, M, D) encoder output for cross-attention blocks.
            memory_padding: (B, M) bool, True for real memory tokens.

        Returns:
            (B, N, D), after the final norm when the config has one.
        """
        b, n, d = x.shape
        if d != self.config.dim:
            raise ValueError(f"Transformer expects token width {self.config.dim}, got tokens of shape {tuple(x.shape)}")
        bias_ids = variate_ids if self.config.variate_bias else None
        backend = self.config.attention
        if backend == "auto" and self.training and self.config.attention_dropout > 0:
            backend = "sdpa"  # FlexAttention has no attention dropout
        prepared = PreparedMask.build(mask, backend, b, n, x.device, bias_ids)
        if self.rope is not None and positions is None:
            positions = torch.arange(n, device=x.device).expand(b, n)  # (B, N)
        cross = memory_mask(memory_padding, prepared.backend) if memory is not None else None
        for block in self.blocks:
            x = block(x, prepared, positions, memory, cross)
        return self.norm(x)
