"""Quantiles of a :class:`~mmsdk.adapters.timeseries.distributions.Mixture` that trace into ONNX: fixed points.

`Mixture.quantiles` samples with a random generator (Gamma and Poisson draws), which an exported graph cannot
reproduce. Here each component is represented by a fixed, weighted set of points, deterministic and differentiable
functions of its parameters: S stratified standard-normal values `z_i = Φ⁻¹((i + ½) / S)`, each of weight 1 / S, are
mapped through the component's quantile transform, and every point carries the component's mixture weight. The
mixture's quantiles are read off the weighted points' CDF (midpoint rule, linear interpolation between neighbouring
points), the same in eager PyTorch, in a compiled graph and in ONNX Runtime.

Per family, a point from the standard normals:

- normal: `loc + scale z`; log-normal: `exp(loc + scale z)` (exact quantile transforms);
- Student-t: `loc + scale z / sqrt(V / df)` on the product of the S values z and J Gauss–Hermite nodes u (weights
  from the rule), with `V / df = (1 - 2 / (9 df) + u sqrt(2 / (9 df)))³`, the Wilson–Hilferty form of a chi-square
  over its degrees of freedom (T = Z / sqrt(V / df) with V independent of Z);
- negative binomial: the normal approximation of its Gamma-Poisson counts (mean `r e^logits`, variance
  `mean + mean² / r`), clipped at 0.

With the defaults (S = 64, J = 5) the estimate of a normal or log-normal component is within ~1 % of a standard
deviation of the exact quantile at the 10 %–90 % levels (tests hold it to the exact quantiles, and a mixture to its
Monte-Carlo quantiles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mmsdk.adapters.timeseries.distributions import Mixture

POINTS = 64
"""S: stratified normal values per component."""
NODES = 5
"""J: Gauss–Hermite nodes over the Student-t's chi-square."""


class QuantilePoints(nn.Module):
    """The fixed tables (S stratified normal values, J Gauss–Hermite nodes and weights) as non-persistent buffers
    (rebuilt identically at construction, never saved), and the quantile estimate of a mixture from them."""

    def __init__(self, points: int = POINTS, nodes: int = NODES) -> None:
        super().__init__()
        bands = (torch.arange(points, dtype=torch.float64) + 0.5) / points
        self.register_buffer("z", torch.special.ndtri(bands).float(), persistent=False)  # (S,)
        u, w = np.polynomial.hermite_e.hermegauss(nodes)  # for the weight exp(-u² / 2)
        self.register_buffer("nodes", torch.tensor(u, dtype=torch.float32), persistent=False)  # (J,)
        self.register_buffer("node_weights", torch.tensor(w / w.sum(), dtype=torch.float32), persistent=False)

    def forward(self, mixture: Mixture, levels: Sequence[float]) -> Tensor:
        """(Q, *batch_shape) quantile estimates of the mixture at `levels`."""
        values, weights = self.points(mixture)
        return weighted_quantiles(values, weights, levels)

    def points(self, mixture: Mixture) -> tuple[Tensor, Tensor]:
        """The mixture's weighted points: values (M, *batch_shape) and weights (M, *batch_shape) summing to 1."""
        dtype = mixture.compute_dtype
        lead = (1,) * len(mixture.batch_shape)
        z = self.z.to(dtype).view(-1, *lead)  # (S, 1, ..., 1)
        s = z.shape[0]
        mix = mixture.weights.to(dtype)  # (..., K)
        values, weights = [], []
        for k, (name, comp) in enumerate(zip(mixture.components, mixture.params)):
            p = {key: v.to(dtype) for key, v in comp.items()}
            if name == "student_t":
                u = self.nodes.to(dtype).view(-1, 1, *lead)  # (J, 1, 1, ..., 1)
                c = 2.0 / (9.0 * p["df"])
                chi = (1.0 - c + u * c.sqrt()).clamp_min(1e-2) ** 3  # (J, 1, ...) V / df at each node
                v = (p["loc"] + p["scale"] * z * chi.rsqrt()).flatten(0, 1)  # (J·S, ...)
                w = (self.node_weights.to(dtype).view(-1, 1, *lead) / s).expand(-1, s, *lead).flatten(0, 1)
            else:
                v = _normal_transform(name, p, z)  # (S, ...)
                w = torch.full_like(z, 1.0 / s)
            values.append(v)
            weights.append(w * mix[..., k])  # (M_k, ...)
        return torch.cat(values), torch.cat(weights)


def _normal_transform(name: str, p: dict[str, Tensor], z: Tensor) -> Tensor:
    """(S, ...) points of a normal, log-normal or negative-binomial component at standard-normal values z."""
    if name == "normal":
        return p["loc"] + p["scale"] * z
    if name == "log_normal":
        log_max = math.log(torch.finfo(p["loc"].dtype).max)
        return (p["loc"] + p["scale"] * z).clamp_max(log_max).exp()
    if name == "negative_binomial":
        mean = p["total_count"] * p["logits"].exp()
        return (mean + (mean + mean**2 / p["total_count"]).sqrt() * z).clamp_min(0.0)
    raise ValueError(f"quantile points: unknown component {name!r}")


def weighted_quantiles(values: Tensor, weights: Tensor, levels: Sequence[float]) -> Tensor:
    """Quantiles (Q, ...) of weighted points (M, ...) along axis 0: the midpoint CDF `F_j = Σ_{i<j} w_i + w_j / 2`
    of the sorted points, linearly interpolated at each level (flat outside the first and last midpoints)."""
    order = values.argsort(dim=0)
    values, weights = values.gather(0, order), weights.gather(0, order)
    cdf = weights.cumsum(dim=0) - 0.5 * weights  # (M, ...)
    last = values.shape[0] - 1
    out = []
    for q in levels:
        hi = (cdf < q).sum(dim=0, keepdim=True).clamp(1, last)  # (1, ...) first midpoint at or above q
        lo = hi - 1
        v_lo, v_hi = values.gather(0, lo), values.gather(0, hi)
        f_lo, f_hi = cdf.gather(0, lo), cdf.gather(0, hi)
        t = ((q - f_lo) / (f_hi - f_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
        out.append((v_lo + t * (v_hi - v_lo)).squeeze(0))
    return torch.stack(out)
