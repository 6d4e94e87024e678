"""Transformer blocks (pre- or post-norm): norms, MLPs, stochastic depth, self- and cross-attention blocks."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.attention import Attention, PreparedMask
from mmsdk.positions import Rotary

NormKind = Literal["layernorm", "rmsnorm", "batchnorm"]
NormPosition = Literal["pre", "post"]
MlpKind = Literal["gelu", "swiglu"]


class BatchNorm(nn.Module):
    """BatchNorm1d over the feature axis of (B, N, D) tokens (PatchTST's "batchnorm"; statistics over B·N).

    Statistics include every token of the batch, padding too, so it suits fixed-length inputs (patched series)
    rather than padded variable-length ones. In eval mode it applies the running statistics.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.batchnorm(x.transpose(1, 2)).transpose(1, 2)  # (B, D, N) for BatchNorm1d, back to (B, N, D)


def build_norm(kind: NormKind, dim: int, eps: float = 1e-6) -> nn.Module:
    """LayerNorm, RMSNorm or token BatchNorm by name."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    if kind == "batchnorm":
        return BatchNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose layernorm, rmsnorm or batchnorm")


class GeluMlp(nn.Module):
    """Linear → GELU → [dropout] → Linear → [dropout].

    Args:
        dim: input and output width.
        hidden: hidden width.
        dropout: dropout on the output.
        hidden_dropout: dropout on the GELU activations; None = `dropout`.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(dropout if hidden_dropout is None else hidden_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.hidden_dropout(F.gelu(self.fc1(x)))))


class SwiGluMlp(nn.Module):
    """SwiGLU: (SiLU(x W₁) ⊙ x W₃) W₂, with the hidden width scaled by 2/3 to keep the parameter count.

    Dropout arguments as in :class:`GeluMlp`.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None) -> None:
        super().__init__()
        hidden = int(2 * hidden / 3)
        self.gate_up = nn.Linear(dim, 2 * hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(dropout if hidden_dropout is None else hidden_dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(self.hidden_dropout(F.silu(gate) * up)))


def build_mlp(
    kind: MlpKind, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None
) -> nn.Module:
    """GELU MLP or SwiGLU by name; `hidden_dropout` (None = `dropout`) acts on the hidden activations."""
    if kind == "gelu":
        return GeluMlp(dim, hidden, dropout, hidden_dropout)
    if kind == "swiglu":
        return SwiGluMlp(dim, hidden, dropout, hidden_dropout)
    raise ValueError(f"unknown mlp {kind!r}; choose gelu or swiglu")


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample with probability p during training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        if keep == 0.0:
            return x * 0.0
        noise = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(keep)
        return x * noise / keep


class Block(nn.Module):
    """Transformer block with self-attention, optional cross-attention and an MLP sub-layer.

    Pre-norm (default): x + attn(norm(x)), [x + cross_attn(norm(x), memory)], x + mlp(norm(x)).
    Post-norm (the original Transformer/BERT, PatchTST's pre_norm=False): norm(x + attn(x)), ..., norm(x + mlp(x)).

    Args:
        dim: model width.
        heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        norm: "layernorm", "rmsnorm" or "batchnorm".
        mlp: "gelu" or "swiglu".
        qk_norm: normalize queries and keys.
        drop_path: stochastic-depth probability of this block.
        dropout: dropout on MLP activations and on the attention branch's output.
        rope: rotary embedding shared by the stack, or None.
        variate_bias: learn a same-variate attention bias.
        cross: add a cross-attention sub-layer (decoders attending to an encoder's output).
        norm_eps: epsilon of the norms.
        qkv_bias: bias in the query/key/value projections.
        attention_dropout: dropout on attention probabilities (SDPA then leaves its fused CPU kernels).
        norm_position: "pre" normalizes each sub-layer's input, "post" the sum of residual and sub-layer output.
        mlp_dropout: dropout on the MLP's hidden activations; None = `dropout`.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        norm: NormKind = "layernorm",
        mlp: MlpKind = "gelu",
        qk_norm: bool = False,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        rope: Rotary | None = None,
        variate_bias: bool = False,
        cross: bool = False,
        norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        attention_dropout: float = 0.0,
        norm_position: NormPosition = "pre",
        mlp_dropout: float | None = None,
    ) -> None:
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"unknown norm_position {norm_position!r}; choose pre or post")
        self.post_norm = norm_position == "post"
        self.norm1 = build_norm(norm, dim, norm_eps)
        self.attn = Attention(dim, heads, qkv_bias, qk_norm, rope, variate_bias, attention_dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.cross_norm = build_norm(norm, dim, norm_eps) if cross else None
        self.cross_attn = (
            Attention(dim, heads, qkv_bias, qk_norm, dropout=attention_dropout, cross=True) if cross else None
        )
        self.norm2 = build_norm(norm, dim, norm_eps)
        self.mlp = build_mlp(mlp, dim, int(dim * mlp_ratio), dropout, mlp_dropout)
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


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit norms (the ViT/MAE initialization)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and module.weight is not None:
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def memory_mask(padding: Tensor | None, backend: str) -> PreparedMask:
    """Key-padding mask for cross-attention over a memory with padding (B, M) bool, True = real."""
    if padding is None:
        return PreparedMask("reference" if backend == "reference" else "sdpa")
    dense = padding[:, None, None, :]  # (B, 1, 1, M)
    return PreparedMask("reference" if backend == "reference" else "sdpa", dense=dense)


__all__ = [
    "BatchNorm",
    "Block",
    "DropPath",
    "GeluMlp",
    "SwiGluMlp",
    "build_mlp",
    "build_norm",
    "init_weights",
    "memory_mask",
]
