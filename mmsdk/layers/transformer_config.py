"""The config of a transformer stack (encoders and decoders): width, depth, norms, MLP, rotary positions, dropouts
and the attention backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mmsdk.config import Config, require
from mmsdk.layers.attention import Backend
from mmsdk.layers.mlp import MlpKind
from mmsdk.layers.norms import NormKind

NormPosition = Literal["pre", "post"]


@dataclass
class TransformerConfig(Config):
    """A stack of transformer blocks (used for encoders and decoders); pre-norm with a final norm by default."""

    dim: int = 128
    """Model width D."""
    depth: int = 3
    """Number of blocks."""
    heads: int = 4
    """Attention heads (dim must be divisible by heads)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of dim."""
    norm: NormKind = "layernorm"
    """Normalization: layernorm, rmsnorm, or batchnorm (BatchNorm1d over the features of all B·N tokens, as in
    PatchTST; for fixed-length inputs, since padding tokens enter the batch statistics)."""
    norm_position: NormPosition = "pre"
    """pre: x + f(norm(x)) (stable for deep stacks); post: norm(x + f(x)) (original Transformer/BERT, PatchTST's
    pre_norm=False)."""
    final_norm: bool = True
    """Normalize the stack's output (standard for pre-norm; PatchTST has no final norm)."""
    mlp: MlpKind = "gelu"
    """Feed-forward: gelu (Linear-GELU-Linear) or swiglu."""
    qk_norm: bool = False
    """Normalize queries and keys per head before attention."""
    rope: Literal["none", "1d", "axial"] = "none"
    """Rotary embedding: none, 1d over time ids (or token index), or axial over all position axes."""
    rope_axes: int = 1
    """Number of position axes for axial rope."""
    drop_path: float = 0.0
    """Stochastic-depth rate of the last block (linearly increasing from 0)."""
    dropout: float = 0.0
    """Dropout on each attention and MLP branch's output, and on MLP activations unless `mlp_dropout` is set
    (PatchTST's dropout)."""
    mlp_dropout: float | None = None
    """Dropout on the MLP's hidden activations; None = `dropout` (HF PatchTST's ff_dropout)."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities; > 0 moves SDPA off its fused CPU kernels (about 3x slower there)."""
    attention: Backend = "auto"
    """Attention backend: auto (SDPA, FlexAttention for structured masks on GPU), sdpa, flex or reference."""
    variate_bias: bool = False
    """Learn a per-head bias for same-variate token pairs (needs variate ids)."""
    cross_attention: bool = False
    """Add cross-attention to an encoder's output in every block (decoders)."""
    norm_eps: float = 1e-6
    """Epsilon of every norm (the final norm's too, unless `final_norm_eps` is set)."""
    final_norm_eps: float | None = None
    """Epsilon of the final norm; None = `norm_eps` (HF VideoMAE's decoder norm uses PyTorch's default 1e-5 after
    blocks with 1e-12)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("dim", "depth", "heads"):
            require(getattr(self, name) > 0, self, name, f"must be positive, got {getattr(self, name)}")
        require(self.dim % self.heads == 0, self, "heads", f"dim={self.dim} is not divisible by heads={self.heads}")
        require(0.0 <= self.drop_path < 1.0, self, "drop_path", f"must be in [0, 1), got {self.drop_path}")
        require(0.0 <= self.dropout < 1.0, self, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            self.mlp_dropout is None or 0.0 <= self.mlp_dropout < 1.0,
            self,
            "mlp_dropout",
            f"must be None or in [0, 1), got {self.mlp_dropout}",
        )
        require(
            0.0 <= self.attention_dropout < 1.0,
            self,
            "attention_dropout",
            f"must be in [0, 1), got {self.attention_dropout}",
        )
        require(self.mlp_ratio > 0, self, "mlp_ratio", f"must be positive, got {self.mlp_ratio}")
        require(
            self.final_norm_eps is None or self.final_norm_eps > 0,
            self,
            "final_norm_eps",
            f"must be None or positive, got {self.final_norm_eps}",
        )
        require(
            not (self.attention == "flex" and self.attention_dropout > 0),
            self,
            "attention",
            "FlexAttention has no attention dropout; use attention_dropout=0 or attention='auto'",
        )
