"""Covariate inputs of the forecasters: past-only and known-future covariates beside the target series.

A model configured with covariates (`past_covariates` / `known_covariates` counts in its adapter config) takes a
mapping instead of one tensor, the same in Python, in training batches and as the ONNX graph's inputs:

    {"series": (B, L, C) targets,                   # NaN = missing
     "past_covariates": (B, L, Kp),                 # observed in the context only (e.g. a measured load)
     "known_covariates": (B, L + H, Kk)}            # known over the horizon too (calendar, planned load, prices)

The known covariates' rows after the context are the values over the forecast horizon: they must be finite
(a known-future value that is not known is an error naming the column), while NaN inside the context is a missing
value like anywhere else. A mapping entry with zero columns counts as absent. Moirai and Timer-XL consume the
covariates as extra variates and forecast the targets only; PatchTST is channel-independent and refuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

SERIES, PAST, KNOWN = "series", "past_covariates", "known_covariates"
INPUT_NAMES = (SERIES, PAST, KNOWN)
"""The keys of a covariate model's input mapping (and its ONNX graph inputs), in this order."""


@dataclass
class CovariateInputs:
    """A validated covariate mapping: the targets, and each covariate block (None when the model has none)."""

    series: Tensor
    """(B, L, C) target values."""
    past: Tensor | None
    """(B, L, Kp) past-only covariates."""
    known: Tensor | None
    """(B, L + F, Kk) known covariates over the context and F >= 0 future steps."""

    @property
    def context_length(self) -> int:
        return int(self.series.shape[1])

    def context(self) -> Tensor:
        """Every variate over the context: (B, L, C + Kp + Kk), targets first, then past, then known."""
        length = self.context_length
        blocks = [self.series] + [x[:, :length] for x in (self.past, self.known) if x is not None]
        return torch.cat([x.to(self.series.dtype) for x in blocks], dim=-1)

    def future_known(self, steps: int) -> Tensor | None:
        """The known covariates' first `steps` future rows (B, steps, Kk), NaN-padded past the given ones."""
        if self.known is None:
            return None
        return future_rows(self.known.to(self.series.dtype), self.context_length, steps)


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
    series: Tensor, past: int, known: int, horizon: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """An example covariate mapping around `series` (B, L, C): `past` random past columns and `known` smooth
    known columns over L + `horizon` steps (tracing, export and the contract tests)."""
    b, length = series.shape[:2]
    inputs = {SERIES: series}
    if past:
        inputs[PAST] = torch.randn(b, length, past, generator=generator)
    if known:
        steps = torch.arange(length + horizon, dtype=torch.float32)
        phase = torch.rand(b, 1, known, generator=generator) * 6.28
        inputs[KNOWN] = torch.sin(steps[None, :, None] * 0.3 + phase)  # (B, L + horizon, Kk)
    return inputs


def covariate_inputs(
    inputs: Any, model: str, past: int, known: int, min_future: int = 0, check: bool = True
) -> CovariateInputs:
    """Validates a forecaster's raw input against its covariate counts.

    Args:
        inputs: a (B, L, C) tensor (models without covariates only) or a mapping with the keys of `INPUT_NAMES`.
        model: the model name for messages.
        past: past-only covariates the model was configured with (Kp).
        known: known-future covariates the model was configured with (Kk).
        min_future: the known covariates must cover at least this many rows after the context.
        check: run the shape and value checks (NaN in the known future); False while tracing or compiling.

    Raises:
        ValueError: for covariates given to a model without them, a covariate model fed a bare tensor or missing a
            block, unknown keys, wrong ranks, batch sizes, lengths or column counts, or NaN in the known future
            (naming the column and step).
    """
    if not isinstance(inputs, Mapping):
        if past or known:
            raise ValueError(
                f"{model} was configured with {past} past and {known} known-future covariates; pass a mapping "
                f"{{'series': (B, L, C), 'past_covariates': (B, L, {past}), 'known_covariates': (B, L + H, {known})}}"
                " instead of one tensor"
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
    result = CovariateInputs(series, given[PAST], given[KNOWN])
    if check:  # reading sizes as ints would fix them in a traced graph
        _check_shapes(result, model, min_future)
        if result.known is not None:
            _check_known_future(result, model)
    return result


def _check_shapes(inputs: CovariateInputs, model: str, min_future: int) -> None:
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
    if inputs.known is not None and int(inputs.known.shape[1]) < length + min_future:
        raise ValueError(
            f"{model} inputs: 'known_covariates' covers {inputs.known.shape[1]} steps; it needs the context "
            f"({length}) and the {min_future} forecast steps (their known-future values)"
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
