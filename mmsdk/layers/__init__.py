"""Torch-only building blocks of the shared core: attention (fused, FlexAttention and reference paths), attention
masks, norms, MLPs, dropout (a fused CPU path), drop path, absolute and rotary positions, the transformer block and
stack.

Nothing here knows tokens, adapters or modalities; these modules import only torch (and `mmsdk.config`, the
dependency-free config base).
"""

from mmsdk.layers.attention import Attention, Backend, PreparedMask, reference_attention
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.block import Block, NormPosition, memory_mask
from mmsdk.layers.drop_path import DropPath
from mmsdk.layers.dropout import Dropout
from mmsdk.layers.fsq import FiniteScalarQuantizer, PatchTokenizer
from mmsdk.layers.mlp import GeluMlp, MlpKind, SwiGluMlp, build_mlp
from mmsdk.layers.norms import BatchNorm, NormKind, build_norm
from mmsdk.layers.pooling import Pooling, pool_tokens
from mmsdk.layers.positions import (
    ContinuousPositions,
    FixedPositions,
    InterpolatedPositions,
    LearnedPositions,
    PositionKind,
    SinCosPositions,
    build_positions,
    normalized_sincos_table,
    sincos_1d,
    sincos_nd,
    sincos_table,
)
from mmsdk.layers.rotary import Rotary
from mmsdk.layers.transformer import Transformer
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.layers.weight_init import init_weights

__all__ = [
    "Attention",
    "AttentionMask",
    "Backend",
    "BatchNorm",
    "Block",
    "ContinuousPositions",
    "DropPath",
    "Dropout",
    "FiniteScalarQuantizer",
    "FixedPositions",
    "GeluMlp",
    "InterpolatedPositions",
    "LearnedPositions",
    "MlpKind",
    "NormKind",
    "NormPosition",
    "PatchTokenizer",
    "Pooling",
    "PositionKind",
    "PreparedMask",
    "Rotary",
    "SinCosPositions",
    "SwiGluMlp",
    "Transformer",
    "TransformerConfig",
    "build_mlp",
    "build_norm",
    "build_positions",
    "init_weights",
    "memory_mask",
    "normalized_sincos_table",
    "pool_tokens",
    "reference_attention",
    "sincos_1d",
    "sincos_nd",
    "sincos_table",
]
