"""The transformer block (pre- or post-norm): self-attention, optional cross-attention, MLP, stochastic depth."""

from __future__ import annotations

from torch import Tensor, nn

from mmsdk.layers.attention import Attention, PreparedMask
from mmsdk.layers.drop_path import DropPath
from mmsdk.layers.dropout import Dropout
from mmsdk.layers.mlp import build_mlp
from mmsdk.layers.norms import build_norm
from mmsdk.layers.rotary import Rotary
from mmsdk.layers.transformer_config import NormPosition, TransformerConfig

__all__ = ["Block", "NormPosition", "memory_mask"]


class Block(nn.Module):
    """One block of a :class:`~mmsdk.layers.transformer.Transformer`, configured by its `TransformerConfig`.

    Pre-norm (default): x + attn(norm(x)), [x + cross_attn(norm(x), memory)], x + mlp(norm(x)).
    Post-norm (the original Transformer/BERT, PatchTST's pre_norm=False): norm(x + attn(x)), ..., norm(x + mlp(x)).

    Args:
        config: width, heads, norms, MLP, dropouts, variate bias and cross-attention of the stack.
        drop_path: stochastic-depth probability of this block (the stack raises it linearly with depth).
        rope: the rotary embedding shared by the stack, or None.
    """

    def __init__(self, config: TransformerConfig, drop_path: float = 0.0, rope: Rotary | None = None) -> None:
        super().__init__()
        dim, heads, eps = config.dim, config.heads, config.norm_eps
        self.post_norm = config.norm_position == "post"
        self.norm1 = build_norm(config.norm, dim, eps)
        self.attn = Attention(
            dim,
            heads,
            qk_norm=config.qk_norm,
            rope=rope,
            variate_bias=config.variate_bias,
            dropout=config.attention_dropout,
        )
        self.attn_dropout = Dropout(config.dropout)
        cross = config.cross_attention
        self.cross_norm = build_norm(config.norm, dim, eps) if cross else None
        self.cross_attn = (
            Attention(dim, heads, qk_norm=config.qk_norm, dropout=config.attention_dropout, cross=True)
            if cross
            else None
        )
        self.norm2 = build_norm(config.norm, dim, eps)
        self.mlp = build_mlp(config.mlp, dim, int(dim * config.mlp_ratio), config.dropout, config.mlp_dropout)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: Tensor,
        mask: PreparedMask,
        rope_positions: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: PreparedMask | None = None,
    ) -> Tensor:
        """x (B, N, D) → (B, N, D); `memory` (B, M, D) is required when the block has cross-attention."""
        if self.cross_attn is not None and memory is None:
            raise ValueError("a cross-attention block needs `memory` (the encoder output)")
        cross_mask = memory_mask or PreparedMask("sdpa")
        if self.post_norm:
            x = self.norm1(x + self.drop_path(self.attn_dropout(self.attn(x, mask, rope_positions))))
            if self.cross_attn is not None:
                branch = self.attn_dropout(self.cross_attn(x, cross_mask, memory=memory))
                x = self.cross_norm(x + self.drop_path(branch))
            return self.norm2(x + self.drop_path(self.mlp(x)))
        x = x + self.drop_path(self.attn_dropout(self.attn(self.norm1(x), mask, rope_positions)))
        if self.cross_attn is not None:
            x = x + self.drop_path(self.attn_dropout(self.cross_attn(self.cross_norm(x), cross_mask, memory=memory)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def memory_mask(padding: Tensor | None, backend: str) -> PreparedMask:
    """Key-padding mask for cross-attention over a memory with padding (B, M) bool, True = real."""
    kind = "reference" if backend == "reference" else "sdpa"
    if padding is None:
        return PreparedMask(kind)
    return PreparedMask(kind, dense=padding[:, None, None, :])  # (B, 1, 1, M)
