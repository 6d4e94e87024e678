"""Moirai adapter: a universal masked-encoder forecaster over flattened multivariate patch tokens.

A series (B, L, C) with NaN at missing points is cut into N = L / P patches per variate and all C·N patches form ONE
token sequence: token c·N + n is patch n of variate c, with `time_ids` = n and `variate_ids` = c (the layout of
Timer-XL). There is no variate embedding: with `encoder.rope="1d"` (rotary over time ids) and
`encoder.variate_bias=True` (a learned same/other-variate attention bias) attention is equivariant to the order of
the variates, and C is read from the input shape, so one model serves any 1 <= C <= `max_variates`.

Patch sizes. Every size in `patch_sizes` has its own input projection Linear(P, D) and its own output
:class:`~mmsdk.adapters.timeseries.distributions.MixtureHead` (D → P values), so one checkpoint holds all of them.
A raw tensor carries no frequency, so a model instance tokenizes with its configured `patch_size`; pick it for a
dataset with :func:`patch_size_for_freq` (Moirai's rule: low frequencies get small patches, high ones large).

Normalization and leakage. Each variate is normalized with the mean and std of its observed values in the first
S = max(1, floor(N · stat_ratio)) patches only (counted from its first patch with an observed value, so a short
series left-padded with NaN is normalized by its own values). Tokenization runs before the pretraining mask is
drawn, so full-window statistics would leak the hidden tail into every visible token; with tail masking of ratio r the
statistics are leak-free whenever round(N · r) <= N - S (always for r <= 1 - stat_ratio, e.g. Moirai's r <= 0.5
with the default stat_ratio = 0.5). Moirai draws r ~ U(0.15, 0.5) per batch: `masking: {strategy: tail, ratio:
0.15, ratio_max: 0.5}`. Patches without any observed value are embedded as the mask token (they carry no content),
which is also how forecast slots are represented.

Packing. :meth:`MoiraiAdapter.pack` (and :meth:`MoiraiAdapter.tokenize` of a
:class:`~mmsdk.adapters.timeseries.packing.PackedInputs` batch) tokenizes every series on its own (own statistics,
time ids from 0) and places them first-fit in rows of `max_tokens` tokens with `sample_ids`, so attention is
block-diagonal and the core's tail masking hides the tail of every packed sample. The core keeps one count of
hidden tokens per row, so a row with less padding also hides its latest visible tokens; any of those inside its
sample's statistics patches is left out of the loss (`context["stat_tokens"]`), keeping packed pretraining
leak-free.

Pretraining (objective "bert"): :meth:`MoiraiAdapter.build_pretrain_head` makes the pretraining model's head
predict the raw mixture parameters of every token, and :meth:`MoiraiAdapter.reconstruction_loss` is the mixture
negative log-likelihood of the hidden, observed values. The mixture heads and the mask token are adapter
parameters, so they live under `backbone.` and a pretrained checkpoint's `load_backbone` carries everything a
zero-shot forecaster needs.

Forecasting (task "forecast", H = `num_outputs`): the context is extended by ceil(H / P) all-NaN patches per
variate, i.e. a masked tail, the backbone runs once over the extended window and the mixture of every tail token
gives the forecast; the task model returns the de-normalized mixture mean (B, H, C), and
:meth:`MoiraiAdapter.forecast_distribution` returns samples and quantiles (the head lives in `moirai_forecast.py`).

Covariates (`past_covariates`, `known_covariates`; the input is then a mapping, see
`mmsdk.adapters.timeseries.covariates`) are variates after the targets, as in Moirai's any-variate attention: past
ones get NaN (mask-token) forecast slots like the targets, known ones their horizon values, so their slot tokens
stay visible while the targets' are hidden; only the targets are forecast and scored in fine-tuning. With
`covariate_dropout` p > 0, training hides each covariate of each sample with probability p (all its tokens become
mask tokens, as if it were missing), so that an uninformative covariate is not leaned on.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.adapters.timeseries.covariates import (
    CovariateConfig,
    CovariateExamples,
    StaticEmbedding,
    drop_covariates,
)
from mmsdk.adapters.timeseries.distributions import (
    ComponentName,
    Mixture,
    MixtureConfig,
    MixtureHead,
    MixtureParameterHead,
    mixture_from_parameters,
)
from mmsdk.adapters.timeseries.moirai_forecast import ForecastDistribution, MoiraiForecastHead, forecast_distribution
from mmsdk.adapters.timeseries.packing import PackedInputs
from mmsdk.adapters.timeseries.patchtst import InstanceNorm, check_series
from mmsdk.config import require
from mmsdk.contracts.adapter import Adapter, ExportSpec, LossTerms
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tokens import TokenBatch

logger = logging.getLogger(__name__)

FREQ_PATCH_SIZES: dict[str, int] = {
    "Y": 8,
    "A": 8,
    "Q": 8,
    "M": 8,
    "W": 16,
    "D": 16,
    "B": 16,
    "H": 32,
    "T": 64,
    "MIN": 64,
    "S": 64,
}
"""Preferred patch size per frequency unit (pandas aliases; Moirai's mapping, coarsened): yearly/quarterly/monthly
8, weekly/daily/business-daily 16, hourly 32, minutely and secondly 64."""


def patch_size_for_freq(freq: str, patch_sizes: Sequence[int] = (8, 16, 32)) -> int:
    """The patch size for a series of frequency `freq`: the largest of `patch_sizes` <= its preferred size.

    Args:
        freq: a pandas-style frequency string such as "H", "15min", "D", "W-SUN", "MS", "QE".
        patch_sizes: the sizes a model has projections for.

    Returns:
        The chosen size; the smallest of `patch_sizes` when none is small enough.

    Raises:
        ValueError: for an unrecognized frequency or no patch sizes.
    """
    if not patch_sizes:
        raise ValueError("patch_size_for_freq needs at least one patch size")
    match = re.fullmatch(r"\s*\d*\s*([A-Za-z]+)(?:-\w+)?\s*", freq)
    raw = match.group(1) if match else ""
    unit = "S" if raw in ("ms", "us", "ns", "L", "U", "N") else raw.upper()  # sub-second; "MS" is month start
    preferred = FREQ_PATCH_SIZES.get(unit) or FREQ_PATCH_SIZES.get(unit[:3]) or FREQ_PATCH_SIZES.get(unit[:1])
    if preferred is None:
        raise ValueError(f"unknown frequency {freq!r}; expected a pandas alias such as {sorted(FREQ_PATCH_SIZES)}")
    fitting = [p for p in patch_sizes if p <= preferred]
    return max(fitting) if fitting else min(patch_sizes)


@dataclass
class MoiraiConfig(CovariateConfig):
    """Moirai tokenization of a (B, L, C) series with any number of variates C."""

    context_length: int = 512
    """Length of `example_input` (tracing, export, contract tests). Inputs may have any length that is a positive
    multiple of `patch_size`."""
    num_channels: int = 1
    """Variates of `example_input` only; the model accepts 1..max_variates variates."""
    max_variates: int = 128
    """Largest number of variates C accepted (C·N tokens per sequence)."""
    patch_sizes: tuple[int, ...] = (8, 16, 32)
    """Patch sizes with an input projection and a distribution head each (one checkpoint serves all)."""
    patch_size: int = 16
    """The patch size this instance tokenizes with (one of `patch_sizes`; see `patch_size_for_freq`)."""
    stat_ratio: float = 0.5
    """Normalization statistics come from the first max(1, floor(N · stat_ratio)) patches; leak-free under tail
    masking of ratio r <= 1 - stat_ratio (see the module docstring)."""
    components: tuple[ComponentName, ...] = ("student_t", "normal", "negative_binomial", "log_normal")
    """Mixture component families of the output distribution (Moirai's four by default)."""
    covariate_dropout: float = 0.0
    """Training only: the probability that each covariate (past or known) of each sample is hidden for a step, all
    its tokens (context and forecast slots) replaced by the mask token, so that the model also learns to forecast
    without it and leans less on a covariate that carries nothing. Evaluation, forecasting and export never drop."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.patch_sizes = tuple(int(p) for p in self.patch_sizes)
        self.components = MixtureConfig(components=tuple(self.components)).components
        require(len(self.patch_sizes) > 0, self, "patch_sizes", "needs at least one size")
        require(all(p >= 1 for p in self.patch_sizes), self, "patch_sizes", f"must be >= 1, got {self.patch_sizes}")
        require(
            self.patch_size in self.patch_sizes,
            self,
            "patch_size",
            f"must be one of patch_sizes={self.patch_sizes}, got {self.patch_size}",
        )
        require(self.max_variates >= 1, self, "max_variates", f"must be >= 1, got {self.max_variates}")
        require(
            1 <= self.num_channels <= self.max_variates,
            self,
            "num_channels",
            f"must be in [1, max_variates={self.max_variates}], got {self.num_channels}",
        )
        require(0.0 < self.stat_ratio <= 1.0, self, "stat_ratio", f"must be in (0, 1], got {self.stat_ratio}")
        require(
            0.0 <= self.covariate_dropout < 1.0,
            self,
            "covariate_dropout",
            f"must be in [0, 1), got {self.covariate_dropout}",
        )
        require(
            self.num_channels + self.past_covariates + self.known_covariates <= self.max_variates,
            self,
            "max_variates",
            f"must hold the targets and covariates ({self.num_channels} + {self.past_covariates} + "
            f"{self.known_covariates}), got {self.max_variates}",
        )
        require(
            self.context_length >= self.patch_size and self.context_length % self.patch_size == 0,
            self,
            "context_length",
            f"must be a positive multiple of patch_size={self.patch_size}, got {self.context_length}",
        )


@dataclass
class PackedSpan:
    """Where one series lies in a packed batch: tokens `start:stop` of row `row`, and its normalization."""

    row: int
    start: int
    stop: int
    num_variates: int
    loc: Tensor
    scale: Tensor


@dataclass
class PackedSeries:
    """Several series packed into rows of `max_tokens` tokens, kept apart by `batch.sample_ids`."""

    batch: TokenBatch
    spans: list[PackedSpan]


class MoiraiAdapter(CovariateExamples, Adapter):
    """Variate-order-invariant flattened patch tokens (B, C·N, D) for masked-encoder probabilistic forecasting.

    Targets: the normalized patches (B, C·N, P); target_mask: their observed values. Context: `loc` and `scale`
    (B, 1, C) to undo the normalization, and the raw `inputs` (B, L, C) that the forecast head extends.
    """

    name = "moirai"
    config_class = MoiraiConfig
    tasks = ("forecast",)
    free_fields = (
        "context_length",
        "num_channels",
        "max_variates",
        "patch_size",
        "past_covariates",
        "known_covariates",
        "static_categoricals",
        "covariate_dropout",
    )
    fresh_parameters = ("static_embedding",)
    nonfinite_policy = "nan_as_missing"
    config: MoiraiConfig

    def __init__(self, config: MoiraiConfig, dim: int) -> None:
        super().__init__(config, dim)
        self.norm = InstanceNorm(1, affine=False)
        mixture = MixtureConfig(components=config.components)
        self.input_projections = nn.ModuleDict({str(p): nn.Linear(p, dim) for p in config.patch_sizes})
        self.distribution_heads = nn.ModuleDict({str(p): MixtureHead(dim, p, mixture) for p in config.patch_sizes})
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        statics = config.static_categoricals
        self.static_embedding = StaticEmbedding(statics, dim) if statics else None

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"context_length": 32, "num_channels": 2, "patch_sizes": [4, 8], "patch_size": 8, "max_variates": 4}

    @property
    def target_dim(self) -> int:
        return self.config.patch_size

    @property
    def distribution_head(self) -> MixtureHead:
        """The mixture head of the configured patch size (shared by pretraining and forecasting)."""
        return self.distribution_heads[str(self.config.patch_size)]  # type: ignore[return-value]

    def check_input(self, x: Tensor) -> None:
        """Raises ValueError for inputs that are not (B, k·patch_size, 1..max_variates) finite-or-NaN floats."""
        cfg = self.config
        check_series(x, "Moirai", max_abs=self.max_abs_input)
        if x.shape[1] < cfg.patch_size or x.shape[1] % cfg.patch_size != 0:
            raise ValueError(
                f"Moirai expects a length that is a positive multiple of patch_size={cfg.patch_size}, got "
                f"{x.shape[1]} (input shape {tuple(x.shape)}); left-pad the series with NaN"
            )
        if not 1 <= x.shape[2] <= cfg.max_variates:
            raise ValueError(f"Moirai accepts 1..max_variates={cfg.max_variates} variates, got {x.shape[2]}")

    def stat_patches(self, num_patches: int) -> int:
        """S: how many leading patches give the normalization statistics of an N-patch window."""
        return max(1, math.floor(num_patches * self.config.stat_ratio))

    def stat_window(self, observed: Tensor) -> tuple[Tensor, Tensor]:
        """The patches [first, end) (B, 1, C) each whose observed values give a variate's normalization statistics:
        the first S = max(1, floor(N' · stat_ratio)) of its N' patches from its first patch with an observed value.

        A series shorter than the window, left-padded with NaN, is so normalized as if the window started where it
        starts, instead of falling back to raw values; a full window (first = 0) uses S = `stat_patches(N)`.
        """
        p, n = self.config.patch_size, observed.shape[1] // self.config.patch_size
        patches = observed[:, : n * p].reshape(observed.shape[0], n, p, observed.shape[2]).any(dim=2)  # (B, N, C)
        first = (patches.cumsum(dim=1) == 0).sum(dim=1, keepdim=True)  # (B, 1, C) leading patches with nothing
        count = ((n - first).float() * self.config.stat_ratio).floor().clamp_min(1).long()  # (B, 1, C)
        return first, first + count

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(normalized x with 0 at missing points, observed mask, loc, scale) for x (B, L, C).

        loc and scale (B, 1, C) come from the observed values of the statistics patches only (:meth:`stat_window`);
        a variate with nothing observed there keeps its values (loc 0, scale 1).
        """
        return self._normalize(x)[:4]

    def _normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`normalize`'s outputs, then the end (B, 1, C) of each variate's statistics patches."""
        observed = ~torch.isnan(x)  # (B, L, C)
        first, end = self.stat_window(observed)
        patch_of_step = (torch.arange(x.shape[1], device=x.device) // self.config.patch_size).view(1, -1, 1)
        in_stats = observed & (patch_of_step >= first) & (patch_of_step < end)  # (B, L, C)
        _, loc, scale = self.norm(x, in_stats)  # (B, 1, C) each
        scale = torch.where(in_stats.any(dim=1, keepdim=True), scale, torch.ones_like(scale))
        filled = torch.where(observed, x, torch.zeros_like(x))
        return (filled - loc) / scale * observed.to(x.dtype), observed, loc, scale, end

    def patchify(self, z: Tensor) -> Tensor:
        """(B, L, C) → (B, C·N, P) patches in variate-major order (token c·N + n is patch n of variate c)."""
        b = z.shape[0]
        return z.transpose(1, 2).reshape(b, -1, self.config.patch_size)

    def tokenize(self, inputs: Tensor | Mapping[str, Tensor] | PackedInputs) -> TokenBatch:
        """Tokens of a (B, L, C) series, of a covariate mapping (targets, then past, then known covariates as
        variates; the known ones' rows after the context go to `context["known"]`), or of a :class:`PackedInputs`
        batch packed into rows (see :meth:`pack`)."""
        if isinstance(inputs, PackedInputs):
            return self.pack(inputs.series, inputs.max_tokens).batch
        cfg = self.config
        if isinstance(inputs, Mapping) or cfg.has_covariates:
            parts = self.covariate_parts(inputs, "Moirai")
            batch = self._tokenize_series(parts.context())
            if self.training and cfg.covariate_dropout > 0 and cfg.past_covariates + cfg.known_covariates > 0:
                drop_covariates(batch, int(parts.series.shape[-1]), cfg.covariate_dropout, self.mask_token)
            if parts.known is not None:
                batch.context["known"] = parts.known.to(batch.tokens.dtype)  # (B, L + F, Kk)
            if parts.static is not None and self.static_embedding is not None:  # every token of the sample
                batch.tokens = batch.tokens + self.static_embedding(parts.static.long()).unsqueeze(1)
                batch.context["static"] = parts.static  # (B, S)
            return batch
        return self._tokenize_series(inputs)

    def _tokenize_series(self, inputs: Tensor) -> TokenBatch:
        """Tokens of a (B, L, V) series of any number of variates."""
        if not torch.compiler.is_compiling():
            self.check_input(inputs)
        projection = self.input_projections[str(self.config.patch_size)]
        inputs = inputs.to(projection.weight.dtype)  # float16/64 series in a float32 model
        b, length, c = inputs.shape
        n = length // self.config.patch_size
        z, observed, loc, scale, stat_end = self._normalize(inputs)  # (B, L, C); stat_end (B, 1, C)
        patches = self.patchify(z)  # (B, C·N, P)
        target_mask = self.patchify(observed.to(z.dtype)) > 0.5  # (B, C·N, P)
        tokens = projection(patches)  # (B, C·N, D)
        empty = ~target_mask.any(dim=-1, keepdim=True)  # (B, C·N, 1): no content, e.g. a forecast slot
        tokens = torch.where(empty, self.mask_token.to(tokens.dtype), tokens)
        time_ids = torch.arange(n, device=inputs.device).repeat(c).unsqueeze(0).expand(b, -1)  # (B, C·N)
        variate_ids = torch.arange(c, device=inputs.device).repeat_interleave(n).unsqueeze(0).expand(b, -1)
        stat_tokens = time_ids < stat_end.transpose(1, 2).expand(-1, -1, n).reshape(b, c * n)  # (B, C·N)
        return TokenBatch(
            tokens=tokens,
            positions=time_ids.unsqueeze(-1),  # (B, C·N, 1)
            variate_ids=variate_ids,
            time_ids=time_ids,
            targets=patches,
            target_mask=target_mask,
            context={"loc": loc, "scale": scale, "inputs": inputs, "stat_tokens": stat_tokens},
        )

    def mask_embedding(self) -> Tensor | None:
        return self.mask_token

    def build_pretrain_head(self, dim: int) -> nn.Module | None:
        """Raw mixture parameters per token. At the encoder width the head shares the adapter's distribution head
        (so pretraining trains what zero-shot forecasting uses); an MAE decoder width gets a head of its own."""
        if dim == self.dim:
            return MixtureParameterHead(self.distribution_head)
        return MixtureParameterHead(MixtureHead(dim, self.config.patch_size, MixtureConfig(self.config.components)))

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Patch values (B, C·N, P) in normalized units (e.g. `mixture(raw).mean`) → the (B, L, C) series in data
        units. Packed rows have no single layout (their `PackedSeries.spans` say where each series lies): they
        raise."""
        if "loc" not in batch.context:
            raise ValueError("Moirai.decode needs an unpacked batch (one series per row)")
        b, c = pred.shape[0], batch.context["loc"].shape[-1]
        z = pred.float().reshape(b, c, -1).transpose(1, 2)  # (B, L, C)
        return z * batch.context["scale"] + batch.context["loc"]

    def mixture(self, raw: Tensor) -> Mixture:
        """The mixture over the P values of every token from raw parameters (..., K)."""
        return mixture_from_parameters(raw, self.config.components, self.config.patch_size)

    def reconstruction_loss(self, pred: Tensor, batch: TokenBatch, target: Tensor) -> LossTerms:
        """Mixture NLL of the observed values of target (and real) tokens; pred holds raw parameters (B, N, K)."""
        if batch.targets is None:
            raise ValueError("MoiraiAdapter.reconstruction_loss needs batch.targets (from MoiraiAdapter.tokenize)")
        if batch.padding_mask is not None:
            target = target & batch.padding_mask
        stat_tokens = batch.context.get("stat_tokens")  # packed rows: tokens whose values set the statistics
        if stat_tokens is not None:
            target = target & ~stat_tokens
        observed = target.unsqueeze(-1)  # (B, N, 1)
        if batch.target_mask is not None:
            observed = observed & batch.target_mask  # (B, N, P)
        return {"nll": self.mixture(pred).nll(batch.targets, observed)}

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> LossTerms:
        """Mixture NLL of patch n + 1 of a variate from the prediction at its patch n (causal objective).

        Pairs whose source patch precedes the last statistics patch (its input depends on statistics of its
        future), pairs crossing a variate or packed sample, and unobserved values are excluded.
        """
        if batch.targets is None or batch.time_ids is None or batch.variate_ids is None:
            raise ValueError("MoiraiAdapter.next_token_loss needs targets, time_ids and variate_ids from tokenize")
        t, v = batch.time_ids, batch.variate_ids
        stat_tokens = batch.context["stat_tokens"]  # each series' (each packed sample's) statistics patches
        # a source at patch n >= S - 1 predicts a target outside the statistics patches
        valid = (v[:, 1:] == v[:, :-1]) & (t[:, 1:] == t[:, :-1] + 1) & ~stat_tokens[:, 1:]
        if batch.sample_ids is not None:
            valid = valid & (batch.sample_ids[:, 1:] == batch.sample_ids[:, :-1])
        if batch.padding_mask is not None:
            valid = valid & batch.padding_mask[:, 1:] & batch.padding_mask[:, :-1]
        observed = valid.unsqueeze(-1)
        if batch.target_mask is not None:
            observed = observed & batch.target_mask[:, 1:]
        return {"nll": self.mixture(pred[:, :-1]).nll(batch.targets[:, 1:], observed)}

    def pack(self, series: Sequence[Tensor], max_tokens: int) -> PackedSeries:
        """Packs series of different lengths and variate counts into rows of `max_tokens` tokens (first fit).

        Each series (L_i, C_i) is tokenized on its own (own statistics, time ids from 0) and its C_i·N_i tokens are
        placed contiguously; `sample_ids` keep series apart in attention and padding fills the rows. The batch's
        `context["stat_tokens"]` (R, max_tokens) marks the tokens inside their series' first S_i statistics patches.

        Raises:
            ValueError: for an empty list, or a series with more than `max_tokens` tokens.
        """
        if not series:
            raise ValueError("Moirai.pack needs at least one series")
        parts = [self.tokenize(s.unsqueeze(0)) for s in series]
        rows: list[list[int]] = []
        used: list[int] = []
        for i, part in enumerate(parts):
            if part.num_tokens > max_tokens:
                raise ValueError(f"series {i} has {part.num_tokens} tokens, more than max_tokens={max_tokens}")
            row = next((r for r, u in enumerate(used) if u + part.num_tokens <= max_tokens), len(rows))
            if row == len(rows):
                rows.append([])
                used.append(0)
            rows[row].append(i)
            used[row] += part.num_tokens
        fields = ("tokens", "targets", "target_mask", "time_ids", "variate_ids")
        out: dict[str, list[Tensor]] = {name: [] for name in (*fields, "sample_ids", "padding_mask", "stat_tokens")}
        spans: dict[int, PackedSpan] = {}
        for r, members in enumerate(rows):
            start = 0
            row_fields: dict[str, list[Tensor]] = {name: [] for name in out}
            for k, i in enumerate(members):
                part, n = parts[i], parts[i].num_tokens
                for name in fields:
                    row_fields[name].append(getattr(part, name)[0])
                row_fields["sample_ids"].append(torch.full((n,), k, dtype=torch.long, device=part.tokens.device))
                row_fields["padding_mask"].append(torch.ones(n, dtype=torch.bool, device=part.tokens.device))
                row_fields["stat_tokens"].append(part.context["stat_tokens"][0])
                spans[i] = PackedSpan(
                    r, start, start + n, series[i].shape[-1], part.context["loc"], part.context["scale"]
                )
                start += n
            for name, values in row_fields.items():
                value = torch.cat(values)
                pad = value.new_zeros((max_tokens - start, *value.shape[1:]))
                if name == "sample_ids":
                    pad = pad + len(members)
                out[name].append(torch.cat([value, pad]))
        stacked = {name: torch.stack(values) for name, values in out.items()}
        stat_tokens = stacked.pop("stat_tokens")  # (R, max_tokens)
        batch = TokenBatch(**stacked, context={"stat_tokens": stat_tokens})
        batch.positions = batch.time_ids.unsqueeze(-1)  # (R, max_tokens, 1)
        return PackedSeries(batch.validate(), [spans[i] for i in range(len(parts))])

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task != "forecast":
            raise ValueError(f"Moirai supports the forecast task only, got {head.task!r}")
        return MoiraiForecastHead(self, head, dim)

    def forecast_distribution(
        self,
        model: nn.Module,
        x: Tensor | Mapping[str, Tensor],
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        generator: torch.Generator | None = None,
    ) -> ForecastDistribution:
        """Probabilistic forecast of a Moirai forecast :class:`~mmsdk.models.TaskModel` for raw inputs x (B, L, C)
        (or a covariate mapping); see :func:`~mmsdk.adapters.timeseries.moirai_forecast.forecast_distribution`."""
        return forecast_distribution(model, x, num_samples, quantiles, generator)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(input_name="series", output_names=("outputs",), tolerance=1e-4)
