"""Value checks of the torch-free runtime: conversion to the graph's dtype, NaN/Inf/magnitude policies, padding of
ragged sample lists, and the check of outputs.

Like :mod:`mmsdk.export.runtime`, which uses them, this module imports only numpy and the standard library.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger("mmsdk.export.runtime")  # the runtime's logger: its messages are the runtime's

Dim = int | str | None


def format_shape(shape: Sequence[Dim]) -> str:
    """`(batch, 96, 3)`: symbolic dims by name, unknown dims as `?`."""
    parts = ["?" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first True of a non-empty mask, in C order."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _to_array(name: str, value: np.ndarray | Sequence[Any], dtype: np.dtype | None) -> np.ndarray:
    """`value` as an array of `dtype`: lists and other float widths are converted, other kinds are an error.

    Raises:
        ValueError: for values that cannot be converted, an array of another kind, or finite values too large
            for `dtype` (they would become Inf), naming the count and the first index.
    """
    if not isinstance(value, np.ndarray):
        wide = np.dtype(np.float64) if dtype is not None and dtype.kind == "f" else dtype  # cast with checks below
        try:
            array = np.asarray(value, dtype=wide)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{name} could not be converted to a {dtype} array: {error}") from error
        logger.debug("%s: converted %s to a %s array", name, type(value).__name__, array.dtype)
        value = array
    if dtype is None or value.dtype == dtype:
        return value
    if dtype.kind == "f" and value.dtype.kind == "f":
        logger.debug("%s: casting %s to %s", name, value.dtype, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            cast = value.astype(dtype)
        if value.dtype.itemsize > dtype.itemsize:
            overflow = np.isinf(cast) & np.isfinite(value)
            if overflow.any():
                first = _first_index(overflow)
                raise ValueError(
                    f"{name} holds {int(overflow.sum())} finite value(s) too large for {dtype} (|x| > "
                    f"{float(np.finfo(dtype).max):.3g}), the first, {float(value[first]):.3g}, at index {first}: "
                    "they would become Inf; rescale the input"
                )
        return cast
    raise ValueError(f"{name} expects {dtype} values, got an array of dtype {value.dtype}")


def _sample_shapes(value: Any) -> list[tuple[int, ...]] | None:
    """The shapes of a list or tuple of per-sample arrays when they differ; None for anything else (an array, a
    list of equal-shape samples, scalars, or samples that are themselves ragged)."""
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        return None
    shapes = []
    for sample in value:
        if not isinstance(sample, (np.ndarray, list, tuple)):
            return None
        try:
            shapes.append(tuple(int(n) for n in np.shape(sample)))
        except ValueError:  # a ragged sample: left to the plain conversion's error
            return None
    return shapes if len(set(shapes)) > 1 else None


def _shapes(shapes: Sequence[Sequence[Dim]]) -> str:
    """`[(2, 3), (3,)]`."""
    return "[" + ", ".join(format_shape(shape) for shape in shapes) + "]"


def pad_samples(name: str, samples: Sequence[Any], dtype: np.dtype | None) -> np.ndarray:
    """Per-sample arrays of different lengths along their last axis as one batch, each padded with trailing NaN to
    the longest (for an input whose policy is "nan_as_padding").

    Raises:
        ValueError: for samples that differ in more than their last axis or that do not convert (each naming the
            input and the sample).
    """
    arrays = [_to_array(f"{name}[{i}]", sample, dtype) for i, sample in enumerate(samples)]
    shapes = [a.shape for a in arrays]
    if any(a.ndim == 0 for a in arrays) or len({(a.ndim, a.shape[:-1]) for a in arrays}) > 1:
        raise ValueError(
            f"{name} got samples of shapes {_shapes(shapes)}: samples may differ only in their last axis, which is "
            "padded with trailing NaN"
        )
    kind = np.result_type(*arrays)
    if kind.kind != "f":
        raise ValueError(f"{name} expects floating-point samples to pad with NaN, got dtype {kind}")
    longest = max(a.shape[-1] for a in arrays)
    batch = np.full((len(arrays), *arrays[0].shape[:-1], longest), np.nan, dtype=kind)
    for i, array in enumerate(arrays):
        batch[i, ..., : array.shape[-1]] = array
    shortest = min(a.shape[-1] for a in arrays)
    logger.debug("%s: padded %d samples of lengths %d to %d with trailing NaN", name, len(arrays), shortest, longest)
    return batch


def stack_samples(name: str, value: Any, dtype: np.dtype | None, policy: str) -> Any:
    """`value` itself, or, for a list of samples of different shapes, their NaN-padded batch (policy
    "nan_as_padding"; see :func:`pad_samples`).

    Raises:
        ValueError: for samples of different shapes where the policy has no padding.
    """
    shapes = _sample_shapes(value)
    if shapes is None:
        return value
    if policy != "nan_as_padding":
        raise ValueError(
            f"{name} got samples of different shapes {_shapes(shapes)}, but this input has no padding"
            f" (mmsdk.nonfinite: {policy}): give samples of one shape"
        )
    return pad_samples(name, value, dtype)


def _check_values(name: str, array: np.ndarray, policy: str, max_abs: float | None, min_real: int | None) -> None:
    """Raises ValueError for Inf anywhere, NaN where `policy` forbids it, |values| beyond `max_abs`, and (policy
    "nan_as_padding") samples whose real length along the last axis is below `min_real`."""
    infinite = np.isinf(array)
    if infinite.any():
        hint = "; use NaN for missing values" if policy == "nan_as_missing" else ""
        raise ValueError(
            f"{name} holds {int(infinite.sum())} Inf value(s) (shape {format_shape(array.shape)}, the first at index "
            f"{_first_index(infinite)}): Inf is never a valid input{hint}"
        )
    nan = np.isnan(array)
    if policy == "reject" and nan.any():
        raise ValueError(
            f"{name} holds {int(nan.sum())} NaN value(s) (shape {format_shape(array.shape)}, the first at index "
            f"{_first_index(nan)}): this model takes no missing values (mmsdk.nonfinite: reject); drop or repair them"
        )
    if policy == "nan_as_padding" and array.ndim >= 2:
        steps = np.arange(1, array.shape[-1] + 1)
        lengths = np.where(nan, 0, steps).max(axis=-1)  # (B, ...): one past each sample's last real value
        inner = nan & (steps - 1 < lengths[..., None])
        if inner.any():
            raise ValueError(
                f"{name} holds {int(inner.sum())} NaN value(s) before the end of their sample (shape "
                f"{format_shape(array.shape)}, the first at index {_first_index(inner)}): only a trailing run of NaN "
                "along the last axis is padding"
            )
        if min_real is not None and (lengths < min_real).any():
            short = _first_index(lengths < min_real)
            raise ValueError(
                f"{name} sample {short} has {int(lengths[short])} real value(s) along the last axis before its NaN "
                f"padding (shape {format_shape(array.shape)}); the model needs at least {min_real}"
            )
    if max_abs is not None:
        big = np.abs(array) > max_abs  # NaN compares False
        if big.any():
            first = _first_index(big)
            raise ValueError(
                f"{name} holds {int(big.sum())} value(s) beyond ±{max_abs:.0e} (shape {format_shape(array.shape)}), "
                f"the first, {float(array[first]):.3g}, at index {first}: the model computes in float32 and would "
                "overflow; rescale the input"
            )


def _check_output(model: str, name: str, output: np.ndarray, feed: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError when a floating-point output holds NaN or Inf, naming the count, the first index and the
    inputs' shapes."""
    if output.dtype.kind != "f":
        return
    bad = ~np.isfinite(output)
    if bad.any():
        shapes = ", ".join(f"{key}{format_shape(value.shape)}" for key, value in feed.items())
        raise ValueError(
            f"{model}: output {name} holds {int(bad.sum())} NaN or Inf value(s) of {output.size}, the first at index "
            f"{_first_index(bad)}, for inputs {shapes} that passed validation; the model is not usable on them"
        )
