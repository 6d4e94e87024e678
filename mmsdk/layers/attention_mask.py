"""Structured attention masks, described once and built in the form each attention backend needs.

An :class:`AttentionMask` combines: causal (by token index or by time id), key padding, a bidirectional prefix,
and packed samples (block diagonal). `dense()` gives a (B, 1, N, N) boolean matrix for SDPA and the reference
path; `block_mask()` gives a FlexAttention `BlockMask` for GPU kernels. A token may always attend to itself, so no
row is ever fully masked (which would give NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AttentionMask:
    """What each query may attend to. All fields are optional; an empty mask means full attention.

    Attributes:
        causal: queries see only keys at or before their own time (index, or `time_ids` when given).
        padding_mask: (B, N) bool, True for real keys; padded keys are never attended.
        prefix_length: the first `prefix_length` tokens attend bidirectionally among themselves (prefix LM).
        sample_ids: (B, N) long; tokens attend only within their own packed sample (block diagonal).
        time_ids: (B, N) long; with `causal`, key j is visible to query i when time_ids[j] <= time_ids[i], so a
            token sees every variate's past (the multivariate causal mask of Timer-XL).
    """

    causal: bool = False
    padding_mask: Tensor | None = None
    prefix_length: int = 0
    sample_ids: Tensor | None = None
    time_ids: Tensor | None = None

    @property
    def is_full(self) -> bool:
        """True when nothing is masked (the fastest fused kernel applies)."""
        return not self.causal and self.padding_mask is None and self.sample_ids is None

    @property
    def is_plain_causal(self) -> bool:
        """True for index-causal with nothing else (SDPA's `is_causal` fast path)."""
        return (
            self.causal
            and self.time_ids is None
            and self.prefix_length == 0
            and self.padding_mask is None
            and self.sample_ids is None
        )

    def allowed(self, b: Tensor, q: Tensor, k: Tensor) -> Tensor:
        """Elementwise rule: may query index q attend to key index k in sequence b? (broadcastable tensors)."""
        ok = q == k
        rule = torch.ones_like(ok)
        if self.causal:
            causal = k <= q if self.time_ids is None else self.time_ids[b, k] <= self.time_ids[b, q]
            if self.prefix_length > 0:
                causal = causal | ((q < self.prefix_length) & (k < self.prefix_length))
            rule = rule & causal
        if self.padding_mask is not None:
            rule = rule & self.padding_mask[b, k]
        if self.sample_ids is not None:
            rule = rule & (self.sample_ids[b, q] == self.sample_ids[b, k])
        return ok | rule

    def dense(self, batch_size: int, length: int, device: torch.device) -> Tensor | None:
        """(B, 1, N, N) bool matrix (True = attend), or None for full attention."""
        if self.is_full:
            return None
        b = torch.arange(batch_size, device=device).view(-1, 1, 1)
        q = torch.arange(length, device=device).view(1, -1, 1)
        k = torch.arange(length, device=device).view(1, 1, -1)
        return self.allowed(b, q, k).unsqueeze(1)

    def block_mask(self, batch_size: int, length: int, device: torch.device):
        """A FlexAttention BlockMask for the same rule (built once per forward and shared by all layers)."""
        from torch.nn.attention.flex_attention import create_block_mask

        def mask_mod(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
            return self.allowed(b, q, k)

        needs_batch = self.padding_mask is not None or self.sample_ids is not None or self.time_ids is not None
        return create_block_mask(
            mask_mod, B=batch_size if needs_batch else None, H=None, Q_LEN=length, KV_LEN=length, device=device
        )
