"""Moirai's forecast head: masked forecast slots after the context, read through the pretrained mixture head.

Split from `moirai.py` (the adapter): the head extends the raw context by ceil(H / P) NaN patches per variate
(known covariates get their horizon values instead), re-encodes the extended window through the task model, and
turns the targets' slot features into mixture distributions: their mean is the point forecast and
:func:`forecast_distribution` draws samples and quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mmsdk.adapters.timeseries.covariates import KNOWN, PAST, SERIES, STATIC, future_rows
from mmsdk.adapters.timeseries.distributions import Mixture
from mmsdk.adapters.timeseries.mixture_quantiles import QuantilePoints
from mmsdk.contracts.heads import Encode, HeadConfig, RolloutHead
from mmsdk.contracts.tasks import FORECAST, QUANTILES, Outputs
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.tracing import is_tracing

if TYPE_CHECKING:
    from mmsdk.adapters.timeseries.moirai import MoiraiAdapter


@dataclass
class ForecastDistribution:
    """Probabilistic forecast in data units: mean (B, H, C), samples (S, B, H, C), quantiles (Q, B, H, C)."""

    mean: Tensor
    samples: Tensor
    quantiles: Tensor
    levels: tuple[float, ...]


class MoiraiForecastHead(RolloutHead):
    """Masked-tail forecasting: (B, L, C) → the de-normalized mixture mean (B, H, C).

    The raw context is extended by ceil(H / P) NaN patches per variate (embedded as the mask token), the task
    model's `encode` runs the backbone over the extended window, and the adapter's mixture head (shared, so
    pretrained weights forecast zero-shot) maps the tail tokens' features to distributions over their values.
    The plain context is never encoded on its own (`uses_context_features` is False).

    Covariates are variates after the targets: past ones get NaN slots like the targets, known ones their given
    horizon values (so their slot tokens carry content), and only the C target variates are forecast.

    With `HeadConfig.quantiles` the head returns {"forecast": the mean, "quantiles": (B, H, C, Q)}, the quantiles
    estimated from fixed points of the mixture (:mod:`~mmsdk.adapters.timeseries.mixture_quantiles`), so they export.
    """

    uses_context_features = False

    def __init__(self, adapter: MoiraiAdapter, head: HeadConfig, dim: int) -> None:
        super().__init__()
        if dim != adapter.dim:
            raise ValueError(f"Moirai forecast head needs the encoder width {adapter.dim}, got {dim}")
        self.patch_size = adapter.config.patch_size
        self.horizon = head.num_outputs
        self.steps = math.ceil(head.num_outputs / self.patch_size)
        self.dropout = nn.Dropout(head.dropout)
        self.mixture = adapter.distribution_head  # shared with the adapter (loaded with the backbone)
        self.past, self.known = adapter.config.past_covariates, adapter.config.known_covariates
        self.mapping = adapter.config.has_covariates  # the model's input is a mapping
        self.levels = head.quantiles
        self.quantile_points = QuantilePoints() if head.quantiles is not None else None

    def probe_parameters(self) -> Iterator[nn.Parameter]:
        """What a linear probe trains: the shared mixture head (it lives in the frozen backbone's adapter)."""
        return self.mixture.parameters()

    def extend(
        self, x: Tensor, known_future: Tensor | None = None, static: Tensor | None = None
    ) -> Tensor | dict[str, Tensor]:
        """The context (B, L, V) followed by steps·P forecast slots: NaN for the targets and past covariates, the
        given values (B, steps·P, Kk) for the known covariates. A model with covariates gets its input mapping
        back (every block over the extended window); one without gets the (B, L + steps·P, C) tensor."""
        slots = torch.full_like(x[:, :1], float("nan")).expand(-1, self.steps * self.patch_size, -1)
        if known_future is not None:
            slots = torch.cat([slots[..., : x.shape[-1] - self.known], known_future.to(x.dtype)], dim=-1)
        window = torch.cat([x, slots], dim=1)  # (B, L + steps·P, V)
        if not self.mapping:
            return window
        c = window.shape[-1] - self.past - self.known
        blocks = {SERIES: window[..., :c], PAST: window[..., c : c + self.past], KNOWN: window[..., c + self.past :]}
        blocks = {name: value for name, value in blocks.items() if value.shape[-1] or name == SERIES}
        return blocks | ({STATIC: static} if static is not None else {})

    def targets(self, batch: TokenBatch) -> int:
        """C: the target variates of a batch (its variates less the covariates)."""
        return batch.context["loc"].shape[-1] - self.past - self.known

    def distribution(self, hidden: Tensor, batch: TokenBatch) -> Mixture:
        """The mixture over the targets' forecast slots of an extended window's features: batch shape
        (B, C, steps, P)."""
        b, v = hidden.shape[0], batch.context["loc"].shape[-1]
        tail = hidden.reshape(b, v, -1, hidden.shape[-1])[:, : self.targets(batch), -self.steps :]  # (B, C, steps, D)
        return self.mixture(self.dropout(tail))

    def denormalize(self, z: Tensor, batch: TokenBatch) -> Tensor:
        """Normalized slot values (..., B, C, steps, P) → data units (..., B, H, C)."""
        c = self.targets(batch)
        z = z.flatten(-2)[..., : self.horizon].transpose(-1, -2)  # (..., B, H, C)
        return z * batch.context["scale"][..., :c] + batch.context["loc"][..., :c]

    def extended_inputs(self, batch: TokenBatch) -> Tensor | dict[str, Tensor]:
        """The raw inputs of the extended window from a tokenized context: its (B, L, V) variates, the raw known
        covariates (B, L + F, Kk) and static ids (B, S) of a covariate model; rows after the horizon are never read.

        Raises:
            ValueError: when the known covariates do not cover the horizon (eager only).
        """
        window, known, static = batch.context["inputs"], batch.context.get("known"), batch.context.get("static")
        length = window.shape[1]
        if known is None:
            return self.extend(window, None, static)
        if not is_tracing() and known.shape[1] < length + self.horizon:
            raise ValueError(
                f"Moirai inputs: 'known_covariates' gives {known.shape[1] - length} rows after the context; the "
                f"forecast needs the known values of all {self.horizon} horizon steps"
            )
        future = future_rows(known[:, : length + self.horizon].to(window.dtype), length, self.steps * self.patch_size)
        return self.extend(window, future, static)

    def forward(self, hidden: Tensor | None, batch: TokenBatch, encode: Encode) -> Outputs:
        hidden, batch = encode(self.extended_inputs(batch))  # (B, V·(N + steps), D)
        mixture = self.distribution(hidden, batch)
        mean = self.denormalize(mixture.mean, batch)  # (B, H, C)
        if self.quantile_points is None:
            return mean
        quantiles = self.denormalize(self.quantile_points(mixture, self.levels or ()), batch)  # (Q, B, H, C)
        return {FORECAST: mean, QUANTILES: quantiles.permute(1, 2, 3, 0)}


@torch.no_grad()
def forecast_distribution(
    model: nn.Module,
    x: Tensor | Mapping[str, Tensor],
    num_samples: int = 100,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    generator: torch.Generator | None = None,
) -> ForecastDistribution:
    """Probabilistic forecast of a Moirai forecast :class:`~mmsdk.models.TaskModel` for raw inputs x (B, L, C) or
    a covariate mapping.

    Quantiles are empirical quantiles of the returned samples, so they are non-decreasing in the level.

    Raises:
        ValueError: for a model without a Moirai forecast head, or bad inputs.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, MoiraiForecastHead):
        raise ValueError(f"forecast_distribution needs a Moirai forecast TaskModel, got head {type(head).__name__}")
    batch = model.backbone.tokenize(x)  # type: ignore[union-attr, operator]
    hidden, batch = model.encode(head.extended_inputs(batch))  # type: ignore[operator]
    mixture = head.distribution(hidden, batch)  # batch shape (B, C, steps, P)
    samples = head.denormalize(mixture.sample(num_samples, generator), batch)  # (S, B, H, C)
    levels = torch.tensor(list(quantiles), dtype=samples.dtype, device=samples.device)
    return ForecastDistribution(
        mean=head.denormalize(mixture.mean, batch),
        samples=samples,
        quantiles=torch.quantile(samples, levels, dim=0),  # (Q, B, H, C)
        levels=tuple(float(q) for q in quantiles),
    )
