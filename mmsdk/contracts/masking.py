"""The mask contract: which tokens the encoder sees and which ones are predicted.

One convention serves every strategy (MAE's): argsort of per-token noise. A strategy scores each token (lower = more
likely kept) and :meth:`Mask.from_noise` turns the scores into `ids_keep` (the kept tokens, in order of noise),
`ids_restore` (the inverse permutation) and boolean maps. The number of kept tokens is the same in every row, so
shapes stay static.

A :class:`Mask` separates two questions that MAE's boolean mask conflates:

- `hidden` (B, N): the token is *not an input* (dropped before an MAE encoder, replaced by a mask token in a BERT
  one); its complement are the `ids_keep` inputs;
- `target` (B, N): the token is *predicted and scored*. Targets are always hidden, but hidden tokens need not be
  targets: multimodal budgets (4M) hide many tokens and predict only some, iterative generation re-enters with
  already generated tokens as inputs.

Strategies (random, block, group, tail, and the ones adapters register) live in
:mod:`mmsdk.contracts.mask_strategies`; a caller's own boolean map becomes a mask with :meth:`Mask.from_hidden`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Mask:
    """A batch of masks over N tokens with K inputs per sequence.

    Attributes:
        ids_keep: (B, K) long, the input (visible) tokens, in ascending noise order.
        ids_restore: (B, N) long; `gather(cat(inputs, hidden), ids_restore)` puts tokens back in order.
        hidden: (B, N) bool, True where the token is not an input.
        target: (B, N) bool, True where the token is predicted and scored; a subset of `hidden`.
    """

    ids_keep: Tensor
    ids_restore: Tensor
    hidden: Tensor
    target: Tensor

    @property
    def num_keep(self) -> int:
        """K: inputs per sequence."""
        return self.ids_keep.shape[1]

    @property
    def num_tokens(self) -> int:
        """N: tokens per sequence."""
        return self.ids_restore.shape[1]

    @property
    def ids_target(self) -> Tensor:
        """(B, T) long, the target tokens of every row in sequence order (for decoders that query targets only).

        Raises:
            ValueError: when rows have different numbers of targets (no static (B, T) layout exists).
        """
        counts = self.target.sum(dim=1)  # (B,)
        if not torch.compiler.is_compiling() and bool((counts != counts[0]).any()):
            raise ValueError(f"Mask.ids_target needs the same number of targets in every row, got {counts.tolist()}")
        order = torch.argsort((~self.target).to(torch.int8), dim=1, stable=True)  # targets first, in order
        return order[:, : int(counts[0])]

    @classmethod
    def from_noise(cls, noise: Tensor, num_keep: int) -> Mask:
        """The core of every strategy: keep the `num_keep` tokens with the lowest noise; the rest are targets.

        Args:
            noise: (B, N) float scores.
            num_keep: K, tokens kept per sequence.
        """
        if noise.dim() != 2:
            raise ValueError(f"mask noise must be (B, N), got shape {tuple(noise.shape)}")
        n = noise.shape[1]
        if not 1 <= num_keep <= n:
            raise ValueError(f"num_keep must be in [1, {n}], got {num_keep}")
        ids_shuffle = torch.argsort(noise, dim=1, stable=True)  # (B, N): ascending noise, kept first
        ids_restore = torch.argsort(ids_shuffle, dim=1)  # (B, N)
        hidden = torch.ones_like(noise, dtype=torch.bool)
        hidden[:, :num_keep] = False
        hidden = torch.gather(hidden, 1, ids_restore)  # (B, N) in original order
        return cls(ids_shuffle[:, :num_keep], ids_restore, hidden, hidden)

    @classmethod
    def from_hidden(cls, hidden: Tensor, target: Tensor | None = None) -> Mask:
        """A mask from a caller's boolean map (True = not an input), e.g. the "unknown" tokens of a generation step.

        Inputs keep their sequence order in `ids_keep`.

        Args:
            hidden: (B, N) bool; every row must hide the same number of tokens (static shapes).
            target: (B, N) bool tokens to predict, a subset of `hidden`; None = every hidden token.

        Raises:
            ValueError: for a non-boolean or non-(B, N) map, rows hiding different counts or every token, or
                targets outside `hidden`.
        """
        if hidden.dim() != 2 or hidden.dtype != torch.bool:
            raise ValueError(f"Mask.from_hidden needs a (B, N) bool map, got {tuple(hidden.shape)} {hidden.dtype}")
        counts = hidden.sum(dim=1)  # (B,)
        if bool((counts != counts[0]).any()):
            raise ValueError(
                "Mask.from_hidden: every row must hide the same number of tokens (static shapes), got "
                f"{counts.tolist()}"
            )
        num_keep = hidden.shape[1] - int(counts[0])
        if num_keep < 1:
            raise ValueError("Mask.from_hidden: a row hides every token; keep at least one input per row")
        if target is None:
            target = hidden
        elif target.shape != hidden.shape or target.dtype != torch.bool:
            raise ValueError(f"Mask.from_hidden: target must be bool {tuple(hidden.shape)}, got {tuple(target.shape)}")
        elif bool((target & ~hidden).any()):
            raise ValueError("Mask.from_hidden: targets must be hidden (an input cannot also be predicted)")
        ids_shuffle = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)  # inputs first, in order
        return cls(ids_shuffle[:, :num_keep], torch.argsort(ids_shuffle, dim=1), hidden, target)

    @classmethod
    def concat(cls, masks: Sequence[Mask]) -> Mask:
        """The mask of a concatenated sequence (modalities side by side) from one mask per part, in order.

        Inputs of every part come first (part by part, each in its own order), then every hidden token.
        """
        if len(masks) == 1:
            return masks[0]
        keep, rest, offset = [], [], 0
        for mask in masks:
            shuffle = torch.argsort(mask.ids_restore, dim=1) + offset  # (B, N_m): inputs first
            keep.append(shuffle[:, : mask.num_keep])
            rest.append(shuffle[:, mask.num_keep :])
            offset += mask.num_tokens
        ids_shuffle = torch.cat(keep + rest, dim=1)  # (B, ΣN_m)
        ids_keep = torch.cat(keep, dim=1)
        hidden = torch.cat([m.hidden for m in masks], dim=1)
        target = torch.cat([m.target for m in masks], dim=1)
        return cls(ids_keep, torch.argsort(ids_shuffle, dim=1), hidden, target)

    def part(self, where: slice) -> Tensor:
        """The `target` map of one part of the sequence (e.g. one modality's `TokenBatch.slices()` entry)."""
        return self.target[:, where]

    def to(self, device: torch.device | str) -> Mask:
        """The mask on another device."""
        return Mask(*(t.to(device) for t in (self.ids_keep, self.ids_restore, self.hidden, self.target)))


def num_kept(num_tokens: int, ratio: float) -> int:
    """Tokens kept when masking `ratio` of N: at least 1 kept and at least 1 masked (for N > 1)."""
    keep = round(num_tokens * (1.0 - ratio))
    return max(1, min(num_tokens - 1, keep)) if num_tokens > 1 else 1


def mask_from_noise(noise: Tensor, num_keep: int) -> Mask:
    """Alias of :meth:`Mask.from_noise` for strategy code."""
    return Mask.from_noise(noise, num_keep)


def unshuffle(visible: Tensor, fill: Tensor, ids_restore: Tensor) -> Tensor:
    """Appends `fill` tokens after the visible ones and restores the original order.

    Args:
        visible: (B, K, D) encoded visible tokens.
        fill: (D,) token placed at every hidden position (e.g. a learned mask token).
        ids_restore: (B, N) from the mask.

    Returns:
        (B, N, D).
    """
    b, k, d = visible.shape
    n = ids_restore.shape[1]
    full = torch.cat([visible, fill.to(visible.dtype).expand(b, n - k, d)], dim=1)  # (B, N, D) shuffled order
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
