"""The token batch: the one contract between modality adapters and the shared core.

An adapter turns raw data (series, spectrograms, point clouds, video, ...) into a :class:`TokenBatch`. The core
only ever sees embedded tokens plus optional per-token metadata; it never knows patch geometry, channels or
vocabularies. Fields the core does not use itself (`targets`, `target_mask`, `context`) travel with the batch so
that the adapter can compute its loss and undo its normalization after the encoder.

A model of several modalities concatenates its adapters' batches with :meth:`TokenBatch.concat`: the result holds
the per-token fields the core uses (tokens, padding, modality/variate/time ids) for the whole sequence and keeps
each modality's own batch (positions, targets, context) in `parts`, in sequence order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

_PER_TOKEN_FIELDS = (
    "tokens",
    "positions",
    "padding_mask",
    "modality_ids",
    "variate_ids",
    "sample_ids",
    "time_ids",
    "clip_time",
    "targets",
    "target_mask",
)
_ID_FIELDS = ("modality_ids", "variate_ids", "sample_ids", "time_ids")

PRESENT_KEY = "present"
"""The reserved entry of a multimodal inputs mapping that says which samples have each modality:
`{"series": (B, L, C), "video": (B, T, C, H, W), "present": {"video": (B,) bool}}`; a modality it does not name is
present in every sample. An absent sample's raw values are ignored (any finite placeholder, e.g. zeros): its tokens
become padding."""


@dataclass
class TokenBatch:
    """A batch of embedded tokens with optional per-token metadata.

    Shapes use B = batch, N = tokens per sequence, D = embedding width, P = target width per token.

    Attributes:
        tokens: (B, N, D) float content embeddings, *without* absolute positions (the model adds those through
            the adapter's position module so that mask tokens and decoders get them too).
        positions: (B, N, k) token coordinates: integer grid indices (1-D/2-D/3-D patches) or continuous
            coordinates (point-cloud group centers). Used by absolute position embeddings.
        padding_mask: (B, N) bool, True where the token is real and False where it is padding.
        modality_ids: (B, N) long, which modality a token belongs to (multimodal models).
        variate_ids: (B, N) long, which variate/channel/group a token belongs to (same-variate attention bias,
            per-group masking).
        sample_ids: (B, N) long, which packed sample a token belongs to (block-diagonal attention).
        time_ids: (B, N) long, the token's time step; causal masks compare these instead of the token index, so
            a token sees every variate's past (Timer-XL). Rotary embeddings also use them.
        clip_time: (B, N) float, where the token lies in the sample's time span as a fraction (0 = its start, 1 = its
            end). Paired modalities of one sample (a clip's frames, its sound, its sensor trace) cover the same span,
            so this one clock lines their tokens up (`ModelConfig.shared_time`); None where an adapter has no time.
        targets: (B, N, P) per-token reconstruction targets in the adapter's normalized space.
        target_mask: (B, N, P) bool, True where a target value is observed (missing values are excluded from
            losses).
        context: adapter-owned tensors needed after the encoder (e.g. normalization statistics).
        parts: for a multimodal batch made by :meth:`concat`, each modality's own batch in sequence order (its
            tokens are the concatenated `tokens[:, start:stop]`); None for a batch of one adapter.
        class_features: (B, P, D) encoder features of the model's class tokens (`ModelConfig.class_tokens`), set by
            the task model on the batch its head reads (`pooling: first` pools the first); None otherwise.
    """

    tokens: Tensor
    positions: Tensor | None = None
    padding_mask: Tensor | None = None
    modality_ids: Tensor | None = None
    variate_ids: Tensor | None = None
    sample_ids: Tensor | None = None
    time_ids: Tensor | None = None
    clip_time: Tensor | None = None
    targets: Tensor | None = None
    target_mask: Tensor | None = None
    context: dict[str, Tensor] = field(default_factory=dict)
    parts: dict[str, TokenBatch] | None = None
    class_features: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def validate(self) -> TokenBatch:
        """Checks shapes, dtypes and finiteness; returns self so it can be chained.

        Raises:
            ValueError: naming the offending field and its shape or dtype.
        """
        tokens = self.tokens
        if tokens.dim() != 3:
            raise ValueError(f"TokenBatch.tokens must be (B, N, D), got shape {tuple(tokens.shape)}")
        if not tokens.is_floating_point():
            raise ValueError(f"TokenBatch.tokens must be floating point, got {tokens.dtype}")
        b, n, _ = tokens.shape
        if b == 0 or n == 0:
            raise ValueError(f"TokenBatch is empty: tokens have shape {tuple(tokens.shape)}")
        if not torch.compiler.is_compiling():
            bad = ~torch.isfinite(tokens)
            if bool(bad.any()):
                first = tuple(int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"TokenBatch.tokens contain NaN or Inf: {int(bad.sum())} of {tokens.numel()} values of shape "
                    f"{tuple(tokens.shape)}, the first at index {first}; check the input data or its normalization"
                )
        for name in _PER_TOKEN_FIELDS[1:]:
            value = getattr(self, name)
            if value is None:
                continue
            if tuple(value.shape[:2]) != (b, n):
                raise ValueError(f"TokenBatch.{name} has shape {tuple(value.shape)}; expected leading dims {(b, n)}")
        features = self.class_features
        if features is not None and (features.dim() != 3 or features.shape[0] != b):
            raise ValueError(f"TokenBatch.class_features must be ({b}, P, D), got shape {tuple(features.shape)}")
        if self.padding_mask is not None and self.padding_mask.dtype != torch.bool:
            raise ValueError(f"TokenBatch.padding_mask must be bool, got {self.padding_mask.dtype}")
        if self.clip_time is not None and (self.clip_time.dim() != 2 or not self.clip_time.is_floating_point()):
            raise ValueError(f"TokenBatch.clip_time must be (B, N) float, got {tuple(self.clip_time.shape)}")
        if self.target_mask is not None and self.target_mask.dtype != torch.bool:
            raise ValueError(f"TokenBatch.target_mask must be bool, got {self.target_mask.dtype}")
        for name in _ID_FIELDS:
            value = getattr(self, name)
            if value is not None and (value.dim() != 2 or value.dtype != torch.long):
                raise ValueError(f"TokenBatch.{name} must be (B, N) long, got {tuple(value.shape)} {value.dtype}")
        return self

    def select(self, ids: Tensor) -> TokenBatch:
        """Gathers tokens along N for every per-token field.

        Args:
            ids: (B, K) long indices into N (e.g. `ids_keep` of a mask).

        Returns:
            A TokenBatch of K tokens per sequence; `context` and `parts` (which describe the whole sequence) are
            shared, not gathered.
        """
        changes = {}
        for name in _PER_TOKEN_FIELDS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = gather_tokens(value, ids)
        return dataclasses.replace(self, **changes)

    def replace(self, **changes: object) -> TokenBatch:
        """Returns a shallow copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def with_presence(self, present: Tensor) -> TokenBatch:
        """The batch with the tokens of absent samples turned into padding.

        Args:
            present: (B,) bool, True for the samples that have this modality.
        """
        if present.shape != (self.batch_size,) or present.dtype != torch.bool:
            raise ValueError(
                f"presence must be a ({self.batch_size},) bool tensor, got {tuple(present.shape)} {present.dtype}"
            )
        real = present.unsqueeze(1).expand(-1, self.num_tokens)  # (B, N)
        return self.replace(padding_mask=real if self.padding_mask is None else self.padding_mask & real)

    def slices(self) -> dict[str, slice]:
        """Where each part lies along N (`{name: slice(start, stop)}`); empty for a batch without parts."""
        out, start = {}, 0
        for name, part in (self.parts or {}).items():
            out[name] = slice(start, start + part.num_tokens)
            start += part.num_tokens
        return out

    @staticmethod
    def concat(parts: Mapping[str, TokenBatch]) -> TokenBatch:
        """One sequence of several modalities' token batches (B, ΣN_m, D), with `modality_ids` = index of the part.

        Ids are kept where any part has them (parts without get zeros); variate ids become
        `variate_id · M + modality index`, so equal ids never cross modalities (same-variate bias, group masks).
        Positions, targets and context stay in `parts`: each modality embeds its own positions and owns its loss.

        Raises:
            ValueError: for no parts, parts with different batch sizes or widths, or packed parts (`sample_ids`).
        """
        if not parts:
            raise ValueError("TokenBatch.concat needs at least one part")
        items = list(parts.items())
        b, d = items[0][1].batch_size, items[0][1].dim
        for name, part in items:
            if part.batch_size != b:
                raise ValueError(
                    f"TokenBatch.concat: modality {name!r} has {part.batch_size} sequences but "
                    f"{items[0][0]!r} has {b}; every modality must give one sequence per sample (a channel-"
                    "independent adapter such as patchtst cannot share a sequence with other modalities)"
                )
            if part.dim != d:
                raise ValueError(f"TokenBatch.concat: modality {name!r} has width {part.dim}, expected {d}")
            if part.sample_ids is not None:
                raise ValueError(f"TokenBatch.concat: modality {name!r} is packed (sample_ids); pack after concat")
        m = len(items)

        def ids(name: str) -> Tensor | None:
            if all(getattr(part, name) is None for _, part in items):
                return None
            values = []
            for index, (_, part) in enumerate(items):
                value = getattr(part, name)
                if value is None:
                    value = torch.zeros(b, part.num_tokens, dtype=torch.long, device=part.tokens.device)
                if name == "variate_ids":
                    value = value * m + index
                values.append(value)
            return torch.cat(values, dim=1)  # (B, ΣN_m)

        padding = None
        if any(part.padding_mask is not None for _, part in items):
            padding = torch.cat(
                [
                    part.padding_mask
                    if part.padding_mask is not None
                    else torch.ones(b, part.num_tokens, dtype=torch.bool, device=part.tokens.device)
                    for _, part in items
                ],
                dim=1,
            )
        modality_ids = torch.cat(
            [
                torch.full((b, part.num_tokens), index, dtype=torch.long, device=part.tokens.device)
                for index, (_, part) in enumerate(items)
            ],
            dim=1,
        )
        clip_time = None
        if any(part.clip_time is not None for _, part in items):  # NaN where a part has no clock
            clip_time = torch.cat(
                [
                    part.clip_time
                    if part.clip_time is not None
                    else torch.full((b, part.num_tokens), float("nan"), device=part.tokens.device)
                    for _, part in items
                ],
                dim=1,
            )
        return TokenBatch(
            tokens=torch.cat([part.tokens for _, part in items], dim=1),  # (B, ΣN_m, D)
            padding_mask=padding,
            modality_ids=modality_ids,
            variate_ids=ids("variate_ids"),
            time_ids=ids("time_ids"),
            clip_time=clip_time,
            parts=dict(items),
        )


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """Gathers along dim 1: x (B, N, ...) and ids (B, K) -> (B, K, ...)."""
    index = ids.reshape(*ids.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, index)
