"""Mixture distribution output for probabilistic forecasting (Moirai-style), trained with negative log-likelihood.

A :class:`MixtureHead` maps token features (..., D) to a :class:`Mixture` over `out_dim` values per token (a patch of
P time steps): every output element gets its own mixture weights and its own parameters for each component family.
Families (the default mixture is Moirai's: Student-t, normal, negative binomial, log-normal):

==================  ==================================  =====================  ==================================
family              parameters (constraint)             support                log-probability
==================  ==================================  =====================  ==================================
student_t           df = 2 + softplus, loc, scale > 0   real                   torch.distributions.StudentT
normal              loc, scale > 0                      real                   torch.distributions.Normal
negative_binomial   total_count > 0, logits             y >= 0 (real-valued)   NegativeBinomial's formula, real y
log_normal          loc, scale > 0                      y > 0                  torch.distributions.LogNormal
==================  ==================================  =====================  ==================================

Scales and `total_count` are `softplus(raw) + MIN_SCALE`, so they stay positive (and the log-probability finite) for
any network output; `df > 2` keeps the Student-t mean and variance finite, as in Moirai.

Support handling. Targets of a time-series forecaster are scaled reals, so a target can lie outside a component's
support (a negative value for the negative binomial, y <= 0 for the log-normal). That component then contributes
probability zero (log-probability `LOG_PROB_FLOOR`, below any realistic in-support value) and the mixture explains
the target with its other components; the component is evaluated at a placeholder in-support value first so that
no NaN reaches the gradient through `torch.where`. The negative binomial is used as a continuous relaxation, like
uni2ts (Moirai's library): its log-PMF `lgamma(y + r) - lgamma(y + 1) - lgamma(r) + r log(1 - p) + y log p` is
evaluated at real y >= 0 without rounding. It is not a normalized density on the reals, but it is smooth in y and the
parameters and equals the true PMF at integers. Its samples are integers.

Every component log-probability is clamped below at `LOG_PROB_FLOOR` (-1e30), so the mixture log-probability, the
NLL and their gradients stay finite even when a target is outside every component's support or so far from all of
them that a log-density underflows to -inf (such an element then gives no gradient). Half-precision parameters are
evaluated and sampled in float32 (`Mixture.compute_dtype`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, LogNormal, NegativeBinomial, Normal, StudentT

from mmsdk.config import Config, require

logger = logging.getLogger(__name__)

ComponentName = Literal["student_t", "normal", "negative_binomial", "log_normal"]
COMPONENT_NAMES: tuple[str, ...] = get_args(ComponentName)
MIN_SCALE = 1e-6
"""Added to every softplus-constrained parameter (scales, `total_count`) so it never reaches 0."""
LOG_PROB_FLOOR = -1e30
"""Lower clamp of component log-probabilities: out-of-support values get exactly this."""
_POISSON_EXACT_MAX = 1e12
"""Poisson rates above this are sampled as the rate itself (relative noise < 1e-6; torch.poisson breaks near 1e18)."""


@dataclass
class MixtureConfig(Config):
    """Which component families make up the mixture output."""

    components: tuple[ComponentName, ...] = ("student_t", "normal", "negative_binomial", "log_normal")
    """Component families, one mixture component each; a family may repeat (e.g. two normals)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            isinstance(self.components, (tuple, list)), self, "components", f"must be a tuple, got {self.components!r}"
        )
        self.components = tuple(self.components)
        require(len(self.components) > 0, self, "components", "needs at least one component")
        unknown = [name for name in self.components if name not in COMPONENT_NAMES]
        require(not unknown, self, "components", f"unknown component(s) {unknown}; choose from {list(COMPONENT_NAMES)}")


@dataclass(frozen=True)
class _Family:
    """How one component family is parameterized, evaluated and sampled."""

    params: tuple[str, ...]
    """Parameter names, in the order of the head's raw outputs."""
    constrain: Callable[[Tensor], dict[str, Tensor]]
    """Raw outputs (..., len(params)) -> constrained parameters, each (...)."""
    dist: Callable[[dict[str, Tensor]], Distribution]
    """Parameters -> torch distribution (argument validation off) used for `log_prob`."""
    in_support: Callable[[Tensor], Tensor]
    """Targets -> bool mask of values inside the support (NaN/inf are outside)."""
    placeholder: float
    """An in-support value substituted for out-of-support targets before `log_prob` (keeps gradients NaN-free)."""
    sample: Callable[[dict[str, Tensor], int, torch.Generator | None], Tensor]
    """(parameters, S, generator) -> (S, ...) samples."""
    mean: Callable[[dict[str, Tensor]], Tensor]
    """Parameters -> (...) mean."""


def _positive(raw: Tensor) -> Tensor:
    return F.softplus(raw) + MIN_SCALE


def _randn(p: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn((n, *p.shape), generator=generator, dtype=p.dtype, device=p.device)


def _gamma(concentration: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """(n, ...) draws of Gamma(concentration, rate=1)."""
    return torch._standard_gamma(concentration.expand(n, *concentration.shape).contiguous(), generator=generator)


def _sample_student_t(p: dict[str, Tensor], n: int, generator: torch.Generator | None) -> Tensor:
    # t = Z / sqrt(V / df) with V ~ chi2(df) = 2 Gamma(df / 2).
    chi2 = 2.0 * _gamma(0.5 * p["df"], n, generator)
    t = _randn(p["loc"], n, generator) * torch.rsqrt(chi2 / p["df"])
    return p["loc"] + p["scale"] * t


def _sample_negative_binomial(p: dict[str, Tensor], n: int, generator: torch.Generator | None) -> Tensor:
    # Gamma-Poisson mixture: rate ~ Gamma(total_count, rate=exp(-logits)), count ~ Poisson(rate).
    rate = _gamma(p["total_count"], n, generator) * p["logits"].exp()
    counts = torch.poisson(rate.clamp_max(_POISSON_EXACT_MAX), generator=generator)
    return torch.where(rate > _POISSON_EXACT_MAX, rate.floor(), counts)


def _sample_log_normal(p: dict[str, Tensor], n: int, generator: torch.Generator | None) -> Tensor:
    log_max = math.log(torch.finfo(p["loc"].dtype).max)
    return (p["loc"] + p["scale"] * _randn(p["loc"], n, generator)).clamp_max(log_max).exp()


def _loc_scale(raw: Tensor) -> dict[str, Tensor]:
    return {"loc": raw[..., 0], "scale": _positive(raw[..., 1])}


FAMILIES: dict[str, _Family] = {
    "student_t": _Family(
        params=("df", "loc", "scale"),
        constrain=lambda raw: {
            "df": 2.0 + F.softplus(raw[..., 0]),
            "loc": raw[..., 1],
            "scale": _positive(raw[..., 2]),
        },
        dist=lambda p: StudentT(p["df"], p["loc"], p["scale"], validate_args=False),
        in_support=torch.isfinite,
        placeholder=0.0,
        sample=_sample_student_t,
        mean=lambda p: p["loc"],
    ),
    "normal": _Family(
        params=("loc", "scale"),
        constrain=_loc_scale,
        dist=lambda p: Normal(p["loc"], p["scale"], validate_args=False),
        in_support=torch.isfinite,
        placeholder=0.0,
        sample=lambda p, n, g: p["loc"] + p["scale"] * _randn(p["loc"], n, g),
        mean=lambda p: p["loc"],
    ),
    "negative_binomial": _Family(
        params=("total_count", "logits"),
        constrain=lambda raw: {"total_count": _positive(raw[..., 0]), "logits": raw[..., 1]},
        dist=lambda p: NegativeBinomial(p["total_count"], logits=p["logits"], validate_args=False),
        in_support=lambda y: torch.isfinite(y) & (y >= 0),
        placeholder=0.0,
        sample=_sample_negative_binomial,
        mean=lambda p: p["total_count"] * p["logits"].exp(),
    ),
    "log_normal": _Family(
        params=("loc", "scale"),
        constrain=_loc_scale,
        dist=lambda p: LogNormal(p["loc"], p["scale"], validate_args=False),
        in_support=lambda y: torch.isfinite(y) & (y > 0),
        placeholder=1.0,
        sample=_sample_log_normal,
        mean=lambda p: (p["loc"] + 0.5 * p["scale"] ** 2).exp(),
    ),
}


class Mixture:
    """A mixture of (possibly different) distribution families, independently for every output element.

    Not a `torch.distributions.Distribution`: `MixtureSameFamily` cannot mix families, so component log-probabilities
    are combined by hand, `logsumexp_k(log_softmax(logits)_k + log p_k(y))`.

    Args:
        components: family name of each component, K names (see `COMPONENT_NAMES`).
        params: per component, its constrained parameters by name (see `FAMILIES[name].params`), each (..., P).
        logits: (..., P, K) unnormalized mixture weights.

    Raises:
        ValueError: for unknown families, missing parameters or mismatched shapes.
    """

    def __init__(self, components: Sequence[str], params: Sequence[dict[str, Tensor]], logits: Tensor) -> None:
        components = tuple(components)
        if not components or len(components) != len(params) or logits.shape[-1] != len(components):
            raise ValueError(
                f"Mixture: {len(components)} components, {len(params)} parameter sets and {logits.shape[-1]} "
                "logits must agree (and be > 0)"
            )
        batch_shape = logits.shape[:-1]
        for name, comp in zip(components, params):
            if name not in FAMILIES:
                raise ValueError(f"Mixture: unknown component {name!r}; choose from {list(COMPONENT_NAMES)}")
            if set(comp) != set(FAMILIES[name].params):
                raise ValueError(f"Mixture: {name} needs parameters {FAMILIES[name].params}, got {tuple(comp)}")
            for key, value in comp.items():
                if value.shape != batch_shape:
                    raise ValueError(
                        f"Mixture: {name}.{key} has shape {tuple(value.shape)}, expected {tuple(batch_shape)}"
                    )
        self.components = components
        self.params = [dict(comp) for comp in params]
        self.logits = logits

    @property
    def batch_shape(self) -> torch.Size:
        """(..., P): the shape of one draw."""
        return self.logits.shape[:-1]

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of log-probabilities and samples: the parameters' dtype, float32 at least."""
        return torch.promote_types(self.logits.dtype, torch.float32)

    @property
    def weights(self) -> Tensor:
        """(..., P, K) mixture weights (softmax of the logits)."""
        return self.logits.softmax(dim=-1)

    def component_log_probs(self, y: Tensor) -> Tensor:
        """Per-component log-probabilities, `LOG_PROB_FLOOR` outside a component's support.

        Args:
            y: (..., P) targets (broadcastable to `batch_shape`); may hold NaN/inf (outside every support).

        Returns:
            (..., P, K) log p_k(y), clamped below at `LOG_PROB_FLOOR`; finite everywhere.
        """
        dtype = self.compute_dtype
        y = y.to(dtype)
        out = []
        for name, comp in zip(self.components, self.params):
            family = FAMILIES[name]
            inside = family.in_support(y)
            # Evaluate at a placeholder where y is outside the support: where() alone would still let NaN gradients
            # of the unused branch through (0 * NaN).
            safe_y = torch.where(inside, y, torch.full_like(y, family.placeholder))
            log_prob = family.dist({k: v.to(dtype) for k, v in comp.items()}).log_prob(safe_y)
            log_prob = torch.nan_to_num(log_prob, nan=LOG_PROB_FLOOR).clamp_min(LOG_PROB_FLOOR)
            out.append(torch.where(inside, log_prob, torch.full_like(log_prob, LOG_PROB_FLOOR)))
        return torch.stack(out, dim=-1)

    def log_prob(self, y: Tensor) -> Tensor:
        """Mixture log-probability (log-density; log-PMF for the negative binomial's share).

        Args:
            y: (..., P) targets.

        Returns:
            (..., P) `logsumexp_k(log w_k + log p_k(y))`, finite (at least about `LOG_PROB_FLOOR`).
        """
        log_weights = self.logits.to(self.compute_dtype).log_softmax(dim=-1)
        return torch.logsumexp(log_weights + self.component_log_probs(y), dim=-1)

    def nll(self, y: Tensor, observed_mask: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood over the observed elements.

        Unobserved targets are replaced by a constant before evaluation, so their values (NaN included) change
        neither the loss nor its gradient.

        Args:
            y: (..., P) targets (broadcastable with `batch_shape`, e.g. (N, P) draws against one (1, P) mixture);
                NaN allowed where `observed_mask` is False.
            observed_mask: bool, broadcastable with `y`, True for elements that count; None = all elements (then NaN
                targets count as outside every support and get `-LOG_PROB_FLOOR`).

        Returns:
            Scalar; 0 with a gradient path when nothing is observed.
        """
        if observed_mask is None:
            return -self.log_prob(y).mean()
        shape = torch.broadcast_shapes(y.shape, observed_mask.shape, self.batch_shape)
        observed_mask = observed_mask.to(torch.bool).expand(shape)
        y = torch.where(observed_mask, y.expand(shape), torch.zeros_like(y))
        log_prob = self.log_prob(y)
        log_prob = torch.where(observed_mask, log_prob, torch.zeros_like(log_prob))
        return -log_prob.sum() / observed_mask.sum().clamp_min(1).to(log_prob.dtype)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draws samples: a component per draw and element from the weights, then a value from that component.

        Every component is sampled for every draw and the chosen one gathered (K times the work of sampling one,
        but a fixed number of generator calls, so a seeded `generator` gives reproducible draws).

        Args:
            num_samples: S >= 1.
            generator: torch generator on the parameters' device for reproducible draws; None = global RNG.

        Returns:
            (S, ..., P) samples in `compute_dtype`, no gradient; finite (overflow is clamped to the dtype's range).
        """
        if num_samples < 1:
            raise ValueError(f"Mixture.sample: num_samples must be >= 1, got {num_samples}")
        values = torch.stack(
            [
                FAMILIES[name].sample(
                    {k: v.detach().to(self.compute_dtype) for k, v in comp.items()}, num_samples, generator
                )
                for name, comp in zip(self.components, self.params)
            ],
            dim=-1,
        )  # (S, ..., P, K)
        cdf = self.weights.detach().to(values.dtype).cumsum(dim=-1)  # (..., P, K)
        u = torch.rand((num_samples, *self.batch_shape, 1), generator=generator, dtype=cdf.dtype, device=cdf.device)
        choice = (u >= cdf[..., :-1]).sum(dim=-1, keepdim=True)  # (S, ..., P, 1) inverse-CDF component index
        return values.gather(-1, choice).squeeze(-1).nan_to_num(nan=0.0)  # +-inf -> the dtype's largest finite

    @property
    def mean(self) -> Tensor:
        """(..., P) analytic mean, `sum_k w_k mean_k` (differentiable)."""
        means = torch.stack([FAMILIES[name].mean(comp) for name, comp in zip(self.components, self.params)], dim=-1)
        return (self.weights * means).sum(dim=-1)

    def quantiles(
        self, q: Sequence[float], num_samples: int = 1000, generator: torch.Generator | None = None
    ) -> Tensor:
        """Monte-Carlo quantiles: empirical quantiles of `num_samples` draws.

        The mixture has no closed-form quantile function, so quantiles come from sorted samples with linear
        interpolation between order statistics (`torch.quantile`'s "linear" rule, without its input-size limit).
        All levels use the same draws, so the result is non-decreasing in q. The Monte-Carlo error of a level q is
        about `sqrt(q (1 - q) / num_samples) / density(quantile)`.

        Args:
            q: levels in [0, 1], Q of them, in any order.
            num_samples: draws to estimate from.
            generator: as in :meth:`sample`.

        Returns:
            (Q, ..., P) quantiles, in the order of `q`.
        """
        levels = torch.as_tensor(list(q), dtype=torch.float64)
        if levels.numel() == 0 or not bool(((levels >= 0) & (levels <= 1)).all()):
            raise ValueError(f"Mixture.quantiles: levels must be a non-empty sequence in [0, 1], got {list(q)}")
        ordered = self.sample(num_samples, generator).sort(dim=0).values  # (S, ..., P)
        position = levels * (num_samples - 1)
        low = position.floor().long()
        high = position.ceil().long()
        frac = (position - low).to(ordered.dtype).to(ordered.device).view(-1, *([1] * (ordered.dim() - 1)))
        lower, upper = ordered[low.to(ordered.device)], ordered[high.to(ordered.device)]  # (Q, ..., P)
        return lower + frac * (upper - lower)


class MixtureHead(nn.Module):
    """Projects features to a :class:`Mixture` over `out_dim` values per token.

    One linear layer per component maps (..., D) to its raw parameters (..., out_dim, n_params), constrained as in
    the module docstring, and one maps to the mixture logits (..., out_dim, K).

    Args:
        in_dim: feature size D.
        out_dim: values per token P (e.g. the patch length).
        config: the component families; None = the default (Moirai's four).
    """

    def __init__(self, in_dim: int, out_dim: int, config: MixtureConfig | None = None) -> None:
        super().__init__()
        require(in_dim >= 1, "MixtureHead", "in_dim", f"must be >= 1, got {in_dim}")
        require(out_dim >= 1, "MixtureHead", "out_dim", f"must be >= 1, got {out_dim}")
        self.config = MixtureConfig.from_dict(config)
        self.out_dim = out_dim
        self.components = self.config.components
        self.projections = nn.ModuleList(
            nn.Linear(in_dim, out_dim * len(FAMILIES[name].params)) for name in self.components
        )
        self.logits = nn.Linear(in_dim, out_dim * len(self.components))
        logger.debug("MixtureHead: %d -> %d values x components %s", in_dim, out_dim, self.components)

    def forward(self, features: Tensor) -> Mixture:
        """Maps (..., D) features to a mixture with batch shape (..., P)."""
        lead = features.shape[:-1]
        params = []
        for name, projection in zip(self.components, self.projections):
            family = FAMILIES[name]
            raw = projection(features).view(*lead, self.out_dim, len(family.params))  # (..., P, n_params)
            params.append(family.constrain(raw))
        logits = self.logits(features).view(*lead, self.out_dim, len(self.components))  # (..., P, K)
        return Mixture(self.components, params, logits)


def mixture_parameters(head: MixtureHead, features: Tensor) -> Tensor:
    """The raw outputs of a mixture head, concatenated: (..., D) → (..., K) with K = P · (sum of params + comps).

    Layout: every component's projection output (P · n_params, in the head's order), then the logits (P · comps).
    """
    return torch.cat([projection(features) for projection in head.projections] + [head.logits(features)], dim=-1)


def mixture_from_parameters(raw: Tensor, components: Sequence[str], out_dim: int) -> Mixture:
    """Inverse of :func:`mixture_parameters`: raw (..., K) → the :class:`Mixture` a MixtureHead would return."""
    widths = [out_dim * len(FAMILIES[name].params) for name in components] + [out_dim * len(components)]
    if raw.shape[-1] != sum(widths):
        raise ValueError(f"expected {sum(widths)} raw mixture parameters per token, got {raw.shape[-1]}")
    chunks = raw.split(widths, dim=-1)
    lead = raw.shape[:-1]
    params = [
        FAMILIES[name].constrain(chunk.reshape(*lead, out_dim, len(FAMILIES[name].params)))
        for name, chunk in zip(components, chunks)
    ]
    return Mixture(components, params, chunks[-1].reshape(*lead, out_dim, len(components)))


class MixtureParameterHead(nn.Module):
    """Pretraining head: features (B, N, D) → raw mixture parameters (B, N, K) of a (possibly shared) MixtureHead."""

    def __init__(self, mixture: MixtureHead) -> None:
        super().__init__()
        self.mixture = mixture

    def forward(self, features: Tensor) -> Tensor:
        return mixture_parameters(self.mixture, features)
