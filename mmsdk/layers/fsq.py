"""Finite scalar quantization (FSQ, Mentzer et al. 2023) and a small FSQ autoencoder that turns continuous
per-token targets into discrete ids and back.

FSQ replaces a learned VQ codebook with a fixed grid: each of the `d = len(levels)` latent dimensions is squashed
into a bounded interval and rounded to one of `levels[i]` values, so the implicit codebook has `prod(levels)`
entries, no codebook collapse and no commitment loss. Gradients pass the rounding with the straight-through
estimator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# The reference implementation widens each interval by this factor so that the even-level shift atanh(offset /
# half) stays finite: without it, levels = 2 gives atanh(1) = inf and a constant code.
_BOUND_EPS = 1e-3


class FiniteScalarQuantizer(nn.Module):
    """Finite scalar quantization of (..., d) latents, d = len(levels), with a straight-through gradient.

    For a dimension with level count L, let `half = (L - 1) (1 + 1e-3) / 2`, `offset = 0.5` if L is even else 0,
    `shift = atanh(offset / half)` and `half_width = L // 2`. The latent is bounded, rounded and normalized:

        bounded = tanh(z + shift) · half - offset
        code    = round(bounded) / half_width        (straight-through: the gradient is that of bounded / half_width)

    (the 1e-3 widening is the reference implementation's; it keeps the shift finite for L = 2; the rounded value
    is capped at the top of the grid, which only L > 1000 can overshoot). The rounded values are the L integers
    `k - half_width`, k = 0 … L - 1, so the codes of a dimension lie on the grid

        {(k - L // 2) / (L // 2) : k = 0, …, L - 1}

    e.g. L = 5: {-1, -0.5, 0, 0.5, 1}; L = 4: {-1, -0.5, 0, 0.5}; L = 8: {-1, -0.75, …, 0.75}. Every code is in
    [-1, 1]; for even L the grid stops one step short of 1. `k` is the digit of the dimension in the mixed-radix id
    `sum_i k_i · prod(levels[:i])`, in [0, codebook_size).

    The bound is a squashing, not a projection: `forward(forward(z))` generally differs from `forward(z)`. Mapping
    codes to ids and back (:meth:`codes_to_ids`, :meth:`ids_to_codes`) is exact.

    Everything is tensor arithmetic over the static `levels` (no data-dependent control flow), so the module
    traces with torch.onnx and compiles with `torch.compile(fullgraph=True)`. The math runs in float32 and the
    codes come back in the input's dtype.

    Args:
        levels: the number of values of each code dimension, each >= 2 (the reference suggests e.g. [8, 5, 5, 5]
            for 1000 codes or [8, 8, 8, 5, 5, 5] for 64000).

    Raises:
        ValueError: `levels` is empty or has an entry below 2.
    """

    levels: Tensor
    basis: Tensor

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"levels must be a non-empty sequence of integers >= 2, got {levels}")
        self.level_list: tuple[int, ...] = tuple(levels)
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        basis = [math.prod(levels[:i]) for i in range(len(levels))]  # mixed radix: 1, L0, L0·L1, …
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return f"levels={list(self.level_list)}, codebook_size={self.codebook_size}"

    def _half_width(self) -> Tensor:
        return (self.levels // 2).float()  # (d,)

    def forward(self, z: Tensor) -> Tensor:
        """Quantizes (..., d) unbounded latents to (..., d) codes on the grid (straight-through gradient)."""
        self._check_last_dim(z, "z")
        levels = self.levels.float()  # (d,)
        half = (levels - 1) * (1 + _BOUND_EPS) / 2
        offset = (self.levels % 2 == 0).float() * 0.5
        shift = torch.atanh(offset / half)
        bounded = torch.tanh(z.float() + shift) * half - offset  # (..., d), in (-half - offset, half - offset)
        # straight-through: the value is exactly round(bounded), the gradient is that of bounded
        top = (self.levels - 1 - self.levels // 2).float()  # (d,) top integer of each grid
        rounded = (bounded - bounded.detach()) + torch.minimum(torch.round(bounded), top)
        return (rounded / self._half_width()).to(z.dtype)  # (..., d)

    def codes_to_ids(self, codes: Tensor) -> Tensor:
        """(..., d) codes on the grid → (...) int64 ids in [0, codebook_size); values are rounded to the nearest
        grid point first, so float error in the codes is harmless."""
        self._check_last_dim(codes, "codes")
        half_width = self._half_width()
        digits = torch.round(codes.float() * half_width + half_width).long()  # (..., d), in [0, L)
        digits = torch.minimum(digits.clamp_min(0), self.levels - 1)
        return (digits * self.basis).sum(dim=-1)  # (...)

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """(...) integer ids in [0, codebook_size) → (..., d) float32 codes; the exact inverse of
        :meth:`codes_to_ids`."""
        digits = torch.remainder(torch.div(ids.long().unsqueeze(-1), self.basis, rounding_mode="floor"), self.levels)
        half_width = self._half_width()
        return (digits.float() - half_width) / half_width  # (..., d)

    def quantize_ids(self, z: Tensor) -> Tensor:
        """(..., d) latents → (...) int64 ids: `codes_to_ids(forward(z))`."""
        return self.codes_to_ids(self(z))

    def _check_last_dim(self, x: Tensor, name: str) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"{name} must end in the {self.dim} code dimensions, got shape {tuple(x.shape)}")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(nn.GELU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class PatchTokenizer(nn.Module):
    """A small FSQ autoencoder: continuous per-token targets (..., dim) ↔ discrete ids (...) in
    [0, codebook_size).

    encoder MLP dim → hidden → … → d (`depth` linear layers, GELU between) → :class:`FiniteScalarQuantizer` →
    decoder MLP d → hidden → … → dim (also `depth` linear layers). There is no input standardization: inputs are
    assumed roughly unit-scale (standardize them first, e.g. the adapter's normalized patches). Pre-train it with
    :meth:`fit` (or any loop on :meth:`loss`) before using its ids as targets.

    Args:
        dim: width of a token's target (e.g. the patch length P).
        levels: FSQ levels, one per code dimension (see :class:`FiniteScalarQuantizer`).
        hidden: width of the hidden layers.
        depth: linear layers in each of the encoder and the decoder, >= 1 (1 = a linear map to and from the codes).

    Raises:
        ValueError: bad `levels`, or `dim`, `hidden` or `depth` below 1.
    """

    def __init__(self, dim: int, levels: Sequence[int], hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.dim = dim
        self.quantizer = FiniteScalarQuantizer(levels)
        inner = [hidden] * (depth - 1)
        self.encoder = _mlp([dim, *inner, self.quantizer.dim])
        self.decoder = _mlp([self.quantizer.dim, *inner, dim])

    @property
    def codebook_size(self) -> int:
        """The number of distinct ids, prod(levels)."""
        return self.quantizer.codebook_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(..., dim) targets → (reconstruction (..., dim), ids (...)); the reconstruction goes through the
        straight-through path, so an MSE on it trains encoder and decoder together."""
        self._check_input(x)
        codes = self.quantizer(self.encoder(x))  # (..., d)
        return self.decoder(codes), self.quantizer.codes_to_ids(codes)

    def encode(self, x: Tensor) -> Tensor:
        """(..., dim) targets → (...) int64 ids."""
        self._check_input(x)
        return self.quantizer.quantize_ids(self.encoder(x))

    def decode(self, ids: Tensor) -> Tensor:
        """(...) ids → (..., dim) reconstructions."""
        codes = self.quantizer.ids_to_codes(ids)  # (..., d), float32
        return self.decoder(codes.to(self.decoder[0].weight.dtype))

    def loss(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean squared reconstruction error of the (..., dim) targets over the tokens where `mask` (...) is True
        (None = every token); 0, with a gradient, when the mask selects nothing."""
        reconstruction, _ = self(x)
        error = (reconstruction.float() - x.float()).square().mean(dim=-1)  # (...)
        if mask is None:
            return error.mean()
        weight = mask.to(error.dtype)  # (...)
        return (error * weight).sum() / weight.sum().clamp_min(1.0)

    def fit(
        self,
        data: Tensor,
        steps: int = 500,
        lr: float = 1e-2,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
    ) -> list[float]:
        """Trains the autoencoder on rows of `data` (N, dim): AdamW with a cosine-decayed learning rate on random
        mini-batches (drawn with `generator`, a CPU generator), minimizing :meth:`loss`.

        Args:
            data: (N, dim) training targets, roughly unit-scale.
            steps: optimizer steps.
            lr: peak learning rate (decayed to 0 along a cosine).
            batch_size: rows per step (sampled with replacement).
            generator: CPU generator for the batch indices; None = torch's global one.

        Returns:
            The training loss of each step.
        """
        if data.ndim != 2 or data.shape[1] != self.dim or data.shape[0] == 0:
            raise ValueError(f"data must have shape (N >= 1, {self.dim}), got {tuple(data.shape)}")
        if steps < 0 or batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got steps={steps}, batch_size={batch_size}")
        weight = self.decoder[0].weight
        data = data.to(device=weight.device, dtype=weight.dtype)
        optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=0.0)
        losses: list[float] = []
        self.train()
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            index = torch.randint(data.shape[0], (batch_size,), generator=generator).to(data.device)
            loss = self.loss(data[index])  # (B, dim) rows
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        self.eval()
        return losses

    def _check_input(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must end in dim={self.dim} features, got shape {tuple(x.shape)}")


__all__ = ["FiniteScalarQuantizer", "PatchTokenizer"]
