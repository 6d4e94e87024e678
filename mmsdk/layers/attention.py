"""Multi-head attention with a fused path, a FlexAttention path and a plain reference path.

Backends (a `Literal` name in :class:`~mmsdk.layers.transformer.TransformerConfig`):

- ``"sdpa"``: `F.scaled_dot_product_attention` (flash/cuDNN/efficient kernels on GPU, flash-CPU on CPU). Full and
  plain-causal attention use the mask-free fast path; structured masks are passed as a dense boolean matrix.
- ``"flex"``: FlexAttention with a block-sparse mask and a score modifier for the same-variate bias (compiled on
  GPU with automatic dynamic shapes, so a new sequence length recompiles at most once; on CPU it runs eagerly and
  supports inference only). It has no attention dropout. Inside a `torch.compile`d model it lowers on CPU too,
  except on CPUs without AVX-512, where inductor's CPU FlexAttention kernel (torch 2.11) returns wrong rows for some
  lengths (errors of ~2 at 8 and 24 tokens on an AVX2 AMD EPYC): there the compiled model uses SDPA with the same
  mask and bias instead (:func:`cpu_flex_lowers_correctly`).
- ``"reference"``: explicit softmax(QKᵀ/√d + bias) V, the ground truth that the tests hold the others to.
- ``"auto"``: SDPA, except structured masks on CUDA go to FlexAttention (not while training with attention
  dropout, which FlexAttention lacks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.rotary import Rotary

Backend = Literal["auto", "sdpa", "flex", "reference"]

_compiled_flex: Any = None
_CPU_CAPABILITY = torch.backends.cpu.get_cpu_capability()  # read once: a compiled graph cannot call it


def cpu_flex_lowers_correctly() -> bool:
    """Whether inductor's CPU FlexAttention kernel is trusted on this machine: on AVX-512 CPUs (the kernel's AVX2
    build reads wrong values for some sequence lengths)."""
    return _CPU_CAPABILITY.startswith("AVX512")


def compiled_flex_attention() -> Any:
    """The compiled FlexAttention kernel, built once per process.

    `dynamic=None` is torch's automatic dynamic shapes: the first sequence length gets a specialized kernel and
    the first different length recompiles once into a kernel for every length (never once per length).
    """
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=None)
    return _compiled_flex


def _flex_attention(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
    """FlexAttention on q/k/v (B, H, N, hd): the compiled kernel on GPU, eager on CPU (inference only there).

    The inputs are made contiguous first: inductor cannot lower FlexAttention when keys and values are views of one
    buffer (the fused key/value projection), and its CPU kernel mis-reads the strided keys that rotary embedding
    produces (errors of ~1e-2 against the reference).
    """
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if q.device.type != "cuda" or torch.compiler.is_compiling():
        return flex_attention(q, k, v, **kwargs)  # inside torch.compile, inductor fuses it itself
    return compiled_flex_attention()(q, k, v, **kwargs)


@dataclass
class PreparedMask:
    """An attention mask resolved for one forward pass and shared by every layer.

    Attributes:
        backend: the concrete backend ("sdpa", "flex" or "reference").
        dense: (B, 1, N, N) bool or None.
        is_causal: use SDPA's causal fast path (no dense matrix).
        block_mask: FlexAttention BlockMask or None.
        variate_ids: (B, N) long for the same-variate bias, or None.
        additive: `dense` as a float32 additive mask (0 = attend, -inf = not), built once while exporting to ONNX:
            SDPA then lowers to one broadcast Add per layer instead of a Where over (B, H, N, N) scores, which was
            16 % of ONNX Runtime's time on a 256-token video model.
    """

    backend: str
    dense: Tensor | None = None
    is_causal: bool = False
    block_mask: Any = None
    variate_ids: Tensor | None = None
    additive: Tensor | None = None

    @classmethod
    def build(
        cls,
        mask: AttentionMask | None,
        backend: Backend,
        batch_size: int,
        length: int,
        device: torch.device,
        variate_ids: Tensor | None = None,
    ) -> PreparedMask:
        """Chooses the concrete backend and builds the mask in its form."""
        mask = mask or AttentionMask()
        structured = not mask.is_full or variate_ids is not None
        if backend == "auto":
            backend = "flex" if structured and device.type == "cuda" and not mask.is_plain_causal else "sdpa"
        if backend == "flex" and device.type == "cpu" and torch.compiler.is_compiling():
            backend = _compiled_cpu_backend()
        if backend == "flex":
            block = None if mask.is_full else mask.block_mask(batch_size, length, device)
            return cls("flex", block_mask=block, variate_ids=variate_ids)
        if mask.is_plain_causal and backend == "sdpa" and variate_ids is None:
            return cls("sdpa", is_causal=True)
        dense = mask.dense(batch_size, length, device)
        additive = None
        if backend == "sdpa" and dense is not None and torch.onnx.is_in_onnx_export():
            additive = torch.zeros(dense.shape, device=device).masked_fill(~dense, float("-inf"))  # (B, 1, N, N)
        return cls(backend, dense=dense, variate_ids=variate_ids, additive=additive)


def _compiled_cpu_backend() -> Backend:
    """The backend that replaces "flex" inside a model compiled for CPU: flex where inductor lowers it correctly,
    else SDPA with the dense mask and the same bias (the same attention; not logged, as a compiled graph cannot
    log)."""
    return "flex" if cpu_flex_lowers_correctly() else "sdpa"


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, dropout: float = 0.0
) -> Tensor:
    """softmax(q kᵀ / √d + bias, masked) v, computed in float32. q/k/v (B, H, N, d); mask (B, 1|H, N, N) bool.

    `dropout` drops attention probabilities (as SDPA does); pass 0 outside training.
    """
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, M)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1)
    if dropout > 0.0:
        probs = F.dropout(probs, dropout, training=True)
    return (probs @ v.float()).to(q.dtype)


class Attention(nn.Module):
    """Multi-head self- or cross-attention.

    Args:
        dim: model width D.
        heads: number of heads H (D must be divisible by H).
        qkv_bias: bias in the q/k/v projections.
        qk_norm: normalize queries and keys per head (RMSNorm-free LayerNorm) before the dot product.
        rope: a rotary embedding applied to q and k (self-attention only), or None.
        variate_bias: learn a per-head additive bias for same-variate vs cross-variate pairs (Moirai).
        dropout: attention-probability dropout (training only).
        cross: keys and values come from a separate memory sequence.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        rope: Rotary | None = None,
        variate_bias: bool = False,
        dropout: float = 0.0,
        cross: bool = False,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention: dim={dim} is not divisible by heads={heads}")
        self.heads, self.head_dim, self.cross = heads, dim // heads, cross
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope
        self.dropout = dropout
        self.variate_bias = nn.Parameter(torch.zeros(heads, 2)) if variate_bias else None  # (H, [diff, same])

    def _bias(self, mask: PreparedMask) -> Tensor | None:
        """(B, H, N, N) additive same-variate bias, or None."""
        if self.variate_bias is None or mask.variate_ids is None:
            return None
        ids = mask.variate_ids
        same = (ids.unsqueeze(-1) == ids.unsqueeze(-2)).long()  # (B, N, N)
        return self.variate_bias[:, same].permute(1, 0, 2, 3)  # (B, H, N, N)

    def forward(
        self,
        x: Tensor,
        mask: PreparedMask,
        rope_positions: Tensor | None = None,
        memory: Tensor | None = None,
    ) -> Tensor:
        """Attends x (B, N, D) to itself, or to `memory` (B, M, D) when cross; returns (B, N, D)."""
        b, n, d = x.shape
        source = memory if self.cross else x
        q = self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        k, v = self.kv(source).view(b, source.shape[1], 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and rope_positions is not None and not self.cross:
            cos, sin = self.rope.angles(rope_positions)
            q, k = Rotary.rotate(q, cos, sin), Rotary.rotate(k, cos, sin)
        dropout = self.dropout if self.training else 0.0
        bias = self._bias(mask)

        if mask.backend == "reference":
            out = reference_attention(q, k, v, mask.dense, bias, dropout)
        elif mask.backend == "flex":
            if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
                raise RuntimeError(
                    "FlexAttention has no backward pass on CPU: train with attention='auto' or 'sdpa' on CPU, "
                    "or run flex inference under torch.no_grad()"
                )
            score_mod = None
            if bias is not None:
                table, ids = self.variate_bias, mask.variate_ids

                def score_mod(score: Tensor, bi: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
                    return score + table[h, (ids[bi, qi] == ids[bi, ki]).long()]

            out = _flex_attention(q, k, v, block_mask=mask.block_mask, score_mod=score_mod)
        else:
            attn_mask = mask.dense if mask.additive is None else mask.additive
            if bias is not None and mask.additive is not None:
                attn_mask = bias + mask.additive
            elif bias is not None:
                neg = torch.zeros_like(bias)
                attn_mask = bias if attn_mask is None else bias + neg.masked_fill(~attn_mask, float("-inf"))
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=mask.is_causal and attn_mask is None
            )
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.proj(out)
