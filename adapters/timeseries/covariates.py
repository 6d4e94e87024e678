"""Covariate inputs of the forecasters: past-only and known-future covariates beside the target series.

A model configured with covariates (`past_covariates` / `known_covariates` counts in its adapter config) takes a
mapping instead of one tensor, the same in Python, in training batches and as the ONNX graph's inputs:

    {"series": (B, L, C) targets,                   # NaN = missing
     "past_covariates": (B, L, Kp),                 # observed in the context only (e.g. a measured load)
     "known_covariates": (B, L + H, Kk),            # known over the horizon too (calendar, planned load, prices)
     "static_categoricals": (B, S) int64}           # per-item categories (store, region), ids 1..n, 0 = unknown

The known covariates' rows after the context are the values over the forecast horizon: they must be finite
(a known-future value that is not known is an error naming the column), while NaN inside the context is a missing
value like anywhere else. A mapping entry with zero columns counts as absent. Moirai and Timer-XL consume the
covariates as extra variates and forecast the targets only; PatchTST is channel-independent and refuses them.

Static categoricals are ids into each feature's category list in the adapter config (`static_categoricals`:
feature name → categories; category i has id i + 1): the model adds a learned embedding of each id to every token
of the sample. Id 0 is the unknown category, for categories the model never saw (the data layer maps them to 0 and
warns); its embedding is trained on nothing and stays at its zero initialization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmsdk.adapters.timeseries.patchtst import example_series
from mmsdk.config import Config, require
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.tracing import is_tracing

SERIES, PAST, KNOWN, STATIC = "series", "past_covariates", "known_covariates", "static_categoricals"
INPUT_NAMES = (SERIES, PAST, KNOWN, STATIC)
"""The keys of a covariate model's input mapping (and its ONNX graph inputs), in this order."""


@dataclass(kw_only=True)
class CovariateConfig(Config):
    """The covariate fields of a forecaster's adapter config (Moirai, Timer-XL); keyword-only, so the adapter's own
    fields keep their positions."""

    past_covariates: int = 0
    """Past-only covariates Kp: variates after the targets, observed in the context only. With any covariate the
    model takes an input mapping (see the module docstring) and forecasts the target variates only."""
    known_covariates: int = 0
    """Known-future covariates Kk: variates whose values over the horizon the forecast input gives."""
    static_categoricals: dict[str, list[str]] = field(default_factory=dict)
    """Static (per-item) categorical covariates: feature name → its categories; category i has id i + 1 in the
    input's `static_categoricals` column of that feature, 0 is unknown."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("past_covariates", "known_covariates"):
            require(getattr(self, name) >= 0, self, name, f"must be >= 0, got {getattr(self, name)}")
        for name, categories in self.static_categoricals.items():
            require(
                len(categories) > 0 and len(set(categories)) == len(categories),
                self,
                "static_categoricals",
                f"feature {name!r} needs distinct categories, got {categories}",
            )

    @property
    def has_covariates(self) -> bool:
        """Whether the model takes an input mapping (any past, known or static covariate)."""
        return bool(self.past_covariates or self.known_covariates or self.static_categoricals)


@dataclass
class CovariateInputs:
    """A validated covariate mapping: the targets, and each covariate block (None when the model has none)."""

    series: Tensor
    """(B, L, C) target values."""
    past: Tensor | None
    """(B, L, Kp) past-only covariates."""
    known: Tensor | None
    """(B, L + F, Kk) known covariates over the context and F >= 0 future steps."""
    static: Tensor | None = None
    """(B, S) int64 category ids of the static categoricals."""

    @property
    def context_length(self) -> int:
        return int(self.series.shape[1])

    def context(self) -> Tensor:
        """Every variate over the context: (B, L, C + Kp + Kk), targets first, then past, then known."""
        length = self.context_length
        blocks = [self.series] + [x[:, :length] for x in (self.past, self.known) if x is not None]
        return torch.cat([x.to(self.series.dtype) for x in blocks], dim=-1)


def future_rows(known: Tensor, context_length: int, steps: int) -> Tensor:
    """Rows `context_length : context_length + steps` of known covariates (B, T, Kk), NaN-padded to `steps` rows
    when fewer are given (slots past the horizon)."""
    future = known[:, context_length : context_length + steps]
    missing = steps - future.shape[1]
    if missing > 0:
        pad = future.new_full((future.shape[0], missing, future.shape[2]), float("nan"))
        future = torch.cat([future, pad], dim=1)
    return future


def example_covariates(
    series: Tensor,
    past: int,
    known: int,
    horizon: int,
    generator: torch.Generator | None = None,
    static: Mapping[str, list[str]] | None = None,
) -> dict[str, Tensor]:
    """An example covariate mapping around `series` (B, L, C): `past` random past columns, `known` smooth known
    columns over L + `horizon` steps and random ids of the `static` categoricals (tracing, export, tests)."""
    b, length = series.shape[:2]
    inputs = {SERIES: series}
    if past:
        inputs[PAST] = torch.randn(b, length, past, generator=generator)
    if known:
        steps = torch.arange(length + horizon, dtype=torch.float32)
        phase = torch.rand(b, 1, known, generator=generator) * 6.28
        inputs[KNOWN] = torch.sin(steps[None, :, None] * 0.3 + phase)  # (B, L + horizon, Kk)
    if static:
        columns = [torch.randint(0, len(c) + 1, (b, 1), generator=generator) for c in static.values()]
        inputs[STATIC] = torch.cat(columns, dim=1)  # (B, S)
    return inputs


class StaticEmbedding(torch.nn.Module):
    """Sum of one learned embedding per static categorical: ids (B, S) → (B, D), zero-initialized (a model gains
    static covariates without changing what it computed before; id 0, unknown, stays at zero)."""

    def __init__(self, static: Mapping[str, list[str]], dim: int) -> None:
        super().__init__()
        self.tables = torch.nn.ModuleList(torch.nn.Embedding(len(c) + 1, dim) for c in static.values())
        for table in self.tables:
            torch.nn.init.zeros_(table.weight)

    def forward(self, ids: Tensor) -> Tensor:
        out = self.tables[0](ids[:, 0])
        for column in range(1, len(self.tables)):
            out = out + self.tables[column](ids[:, column])
        return out  # (B, D)


def drop_covariates(batch: TokenBatch, targets: int, rate: float, mask_token: Tensor) -> None:
    """Covariate dropout (training only), in place: each covariate variate of each sample of a variate-major token
    batch (token c·N + n is patch n of variate c; the first `targets` variates are the targets) is hidden with
    probability `rate`, every token of it becoming `mask_token` (D,) and leaving the loss."""
    b, tokens = batch.tokens.shape[:2]
    variates = batch.context["loc"].shape[-1]  # C + Kp + Kk
    hidden = torch.rand(b, variates, device=batch.tokens.device) < rate  # (B, V)
    hidden[:, :targets] = False  # the targets are never dropped
    hidden = hidden.repeat_interleave(tokens // variates, dim=1).unsqueeze(-1)  # (B, V·N, 1)
    batch.tokens = torch.where(hidden, mask_token.to(batch.tokens.dtype), batch.tokens)
    if batch.target_mask is not None:
        batch.target_mask = batch.target_mask & ~hidden  # (B, V·N, P)


def covariate_inputs(
    inputs: Any,
    model: str,
    past: int,
    known: int,
    check: bool = True,
    static: Mapping[str, list[str]] | None = None,
) -> CovariateInputs:
    """Validates a forecaster's raw input against its covariate counts.

    Args:
        inputs: a (B, L, C) tensor (models without covariates only) or a mapping with the keys of `INPUT_NAMES`.
        model: the model name for messages.
        past: past-only covariates the model was configured with (Kp).
        known: known-future covariates the model was configured with (Kk).
        check: run the shape and value checks (NaN in the known future); False while tracing or compiling.
        static: the model's static categoricals (feature name → its categories), in input column order.

    Raises:
        ValueError: for covariates given to a model without them, a covariate model fed a bare tensor or missing a
            block, unknown keys, wrong ranks, batch sizes, lengths or column counts, or NaN in the known future
            (naming the column and step).
    """
    static = dict(static or {})
    if not isinstance(inputs, Mapping):
        if past or known or static:
            raise ValueError(
                f"{model} was configured with {past} past and {known} known-future covariates; pass a mapping "
                f"{{'series': (B, L, C), 'past_covariates': (B, L, {past}), 'known_covariates': (B, L + H, {known})"
                + (f", 'static_categoricals': (B, {len(static)}) ids of {list(static)}" if static else "")
                + "} instead of one tensor"
            )
        return CovariateInputs(inputs, None, None)
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if unknown:
        raise ValueError(f"{model} inputs: unknown keys {unknown}; expected {list(INPUT_NAMES)}")
    if SERIES not in inputs:
        raise ValueError(f"{model} inputs: the mapping needs the target values under 'series' (B, L, C)")
    series = inputs[SERIES]
    blocks = {PAST: (inputs.get(PAST), past), KNOWN: (inputs.get(KNOWN), known)}
    given: dict[str, Tensor | None] = {}
    for name, (value, count) in blocks.items():
        if value is not None and (not isinstance(value, Tensor) or value.dim() == 0):
            raise ValueError(f"{model} inputs: {name!r} must be a (batch, time, columns) tensor")
        columns = 0 if value is None else int(value.shape[-1])
        if columns != count:
            hint = f"set {name}: {columns} in the adapter config" if count == 0 else f"pass all {count} columns"
            raise ValueError(
                f"{model} was configured with {name}={count}, got {columns} column(s) under {name!r}; {hint}"
            )
        given[name] = value if count else None
    ids = inputs.get(STATIC)
    if (ids is not None and ids.shape[-1] > 0) != bool(static):
        shape = None if ids is None else tuple(ids.shape)
        raise ValueError(
            f"{model} was configured with static_categoricals {list(static)}; got 'static_categoricals' of shape "
            f"{shape}: pass (batch, {len(static)}) category ids" + ("" if static else ", or none")
        )
    result = CovariateInputs(series, given[PAST], given[KNOWN], ids if static else None)
    if check:  # reading sizes as ints would fix them in a traced graph
        _check_shapes(result, model)
        if result.known is not None:
            _check_known_future(result, model)
        if result.static is not None:
            _check_static(result, model, static)
    return result


def _check_static(inputs: CovariateInputs, model: str, static: Mapping[str, list[str]]) -> None:
    """Static ids: (B, S) integers, each in 0..n of its feature."""
    ids = inputs.static
    assert ids is not None
    if ids.shape != (inputs.series.shape[0], len(static)) or ids.is_floating_point() or ids.is_complex():
        raise ValueError(
            f"{model} inputs: 'static_categoricals' must be (batch={inputs.series.shape[0]}, {len(static)}) integer "
            f"ids of {list(static)}, got {tuple(ids.shape)} {ids.dtype}"
        )
    for column, (name, categories) in enumerate(static.items()):
        values = ids[:, column]
        bad = (values < 0) | (values > len(categories))
        if bool(bad.any()):
            raise ValueError(
                f"{model} inputs: static_categoricals {name!r} has id {int(values[bad][0])}; ids run 0 (unknown) to "
                f"{len(categories)} ({len(categories)} categories)"
            )


def _check_shapes(inputs: CovariateInputs, model: str) -> None:
    """Ranks, batch sizes and lengths of the covariate blocks against the series."""
    series = inputs.series
    if not isinstance(series, Tensor) or series.dim() != 3:
        shape = tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__
        raise ValueError(f"{model} inputs: 'series' must be (batch, time, channels), got {shape}")
    b, length = int(series.shape[0]), int(series.shape[1])
    for name, value in ((PAST, inputs.past), (KNOWN, inputs.known)):
        if value is None:
            continue
        if value.dim() != 3 or int(value.shape[0]) != b:
            raise ValueError(f"{model} inputs: {name!r} must be (batch={b}, time, columns), got {tuple(value.shape)}")
        if not value.is_floating_point():
            raise ValueError(f"{model} inputs: {name!r} must be floating point, got dtype {value.dtype}")
    if inputs.past is not None and int(inputs.past.shape[1]) != length:
        raise ValueError(
            f"{model} inputs: 'past_covariates' covers {inputs.past.shape[1]} steps, the series {length}; past "
            "covariates are observed over the context only"
        )
    if inputs.known is not None and int(inputs.known.shape[1]) < length:
        raise ValueError(
            f"{model} inputs: 'known_covariates' covers {inputs.known.shape[1]} steps; it needs the context "
            f"({length}) and then the forecast steps (their known-future values)"
        )


def _check_known_future(inputs: CovariateInputs, model: str) -> None:
    """Known-future values must be known: NaN after the context is an error naming the first column and step."""
    future = inputs.known[:, inputs.context_length :]  # type: ignore[index]
    bad = torch.isnan(future)
    if bool(bad.any()):
        sample, step, column = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{model} inputs: known_covariates column {column} is NaN at forecast step {step} (sample {sample}): "
            "known-future values must be known; give the value, or make the column a past covariate"
        )


class CovariateExamples:
    """Adapter mixin of the covariate forecasters (config with `context_length`, `num_channels` and the
    :class:`CovariateConfig` fields): input parsing, and example inputs (a mapping when the model has covariates)."""

    config: Any

    def covariate_parts(self, inputs: Any, model: str) -> CovariateInputs:
        """The validated blocks of raw inputs against the config's covariates (checks skipped while tracing)."""
        cfg = self.config
        return covariate_inputs(
            inputs, model, cfg.past_covariates, cfg.known_covariates, not is_tracing(), cfg.static_categoricals
        )

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> Tensor | dict[str, Tensor]:
        """A (B, L, C) series, or a covariate mapping whose known covariates cover the context only."""
        return self.covariate_example(batch_size, 0, generator)

    def example_task_input(
        self, head: Any, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> Tensor | dict[str, Tensor]:
        """A forecast input: with covariates, the known ones cover the context and the head's horizon."""
        return self.covariate_example(batch_size, head.num_outputs, generator)

    def covariate_example(
        self, batch_size: int, horizon: int, generator: torch.Generator | None
    ) -> Tensor | dict[str, Tensor]:
        cfg = self.config
        series = example_series(batch_size, cfg.context_length, cfg.num_channels, generator)
        if not cfg.has_covariates:
            return series
        return example_covariates(
            series, cfg.past_covariates, cfg.known_covariates, horizon, generator, cfg.static_categoricals
        )
