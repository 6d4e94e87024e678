"""Calibration and held-out arrays for :mod:`mmsdk.export.quantization`, drawn from mmsdk datasets.

The datasets are the ones the recipe data builders return (:func:`mmsdk.contracts.data.build_data`): items are raw
inputs alone or `(inputs, targets, ...)` tuples, and inputs are one tensor (a single-modality model) or modality →
tensor (a multimodal one; entries that are not arrays, such as a `present` map, are dropped). Items are batched with
the collate function the training loaders use: the dataset's `collate_fn` attribute (looked up through wrappers
such as `Subset` or `InputsOnly` as well), else PyTorch's `default_collate`.

- :func:`calibration_batches`: raw-input batches for `quantize(..., mode="static", calibration=...)`.
- :func:`heldout_arrays`: (inputs, targets) for :func:`~mmsdk.export.quantization.precision_report`.

Items are taken evenly spaced over the dataset (deterministic, no random state), so that a dataset ordered by time
or class is covered from end to end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

__all__ = ["calibration_batches", "find_collate", "heldout_arrays"]

logger = logging.getLogger(__name__)

Arrays = np.ndarray | dict[str, np.ndarray]
"""One array (a single-input model) or input name → array."""
Collate = Callable[[list[Any]], Any]


def find_collate(dataset: Any) -> Collate:
    """The collate function the training loaders would use for `dataset`.

    Args:
        dataset: a dataset, possibly wrapped (`Subset`, `InputsOnly`: anything with a `dataset` attribute).

    Returns:
        The first `collate_fn` attribute found on the dataset or the datasets it wraps, else `default_collate`.
    """
    seen: set[int] = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        collate = getattr(dataset, "collate_fn", None)
        if callable(collate):
            return collate
        dataset = getattr(dataset, "dataset", None)
    return default_collate


def calibration_batches(
    dataset: Any,
    num_batches: int = 16,
    batch_size: int = 8,
    collate: Collate | None = None,
    input_names: Sequence[str] | None = None,
) -> list[np.ndarray] | list[dict[str, np.ndarray]]:
    """Batches of a dataset's raw inputs, as numpy (floating ones float32), for static quantization.

    Args:
        dataset: an mmsdk dataset (items: inputs, or `(inputs, targets, ...)`); a `Sized` one has its items taken
            evenly spaced, an iterable one its first items.
        num_batches: how many batches (fewer when the dataset is small).
        batch_size: items per batch.
        collate: how items become a batch; None = :func:`find_collate`.
        input_names: the exported graph's input names: batches are then dicts of exactly these names (a
            single-input model's tensor inputs are named by its one name). None = arrays for tensor inputs, dicts
            for mapping inputs.

    Returns:
        `num_batches` (or fewer) batches, each an array or input name → array, float32.

    Raises:
        ValueError: for `num_batches` or `batch_size` < 1, an empty dataset, inputs that are not arrays (e.g.
            packed batches), or inputs that lack a name of `input_names`.
    """
    _check_positive(num_batches=num_batches, batch_size=batch_size)
    items = _take(dataset, num_batches * batch_size)
    collate = collate or find_collate(dataset)
    batches = []
    for start in range(0, len(items), batch_size):
        inputs, _ = _split(collate(items[start : start + batch_size]))
        batches.append(_arrays(inputs, input_names))
    logger.debug("%d calibration batches of up to %d items", len(batches), batch_size)
    return batches


def heldout_arrays(
    dataset: Any,
    max_items: int = 64,
    collate: Collate | None = None,
    input_names: Sequence[str] | None = None,
    batch_size: int = 32,
) -> tuple[Arrays, np.ndarray | None]:
    """Held-out raw inputs and their targets, as numpy, for a precision report.

    Args:
        dataset: an mmsdk dataset (items: inputs, or `(inputs, targets, ...)`).
        max_items: at most this many items, evenly spaced over a `Sized` dataset.
        collate: how items become a batch; None = :func:`find_collate`.
        input_names: as for :func:`calibration_batches`.
        batch_size: items collated at once (the results are concatenated).

    Returns:
        (inputs, targets): inputs float32 (one array, or input name → array); targets with their own dtype (class
        indices stay integers), or None when the items have no targets.

    Raises:
        ValueError: for `max_items` < 1, an empty dataset, or inputs that are not arrays.
    """
    _check_positive(max_items=max_items, batch_size=batch_size)
    items = _take(dataset, max_items)
    collate = collate or find_collate(dataset)
    inputs, targets = [], []
    for start in range(0, len(items), batch_size):
        batch_inputs, batch_targets = _split(collate(items[start : start + batch_size]))
        inputs.append(_arrays(batch_inputs, input_names))
        targets.append(None if batch_targets is None else _numpy(batch_targets, "targets", float32=False))
    joined: Arrays
    if isinstance(inputs[0], dict):
        joined = {name: np.concatenate([part[name] for part in inputs]) for name in inputs[0]}
    else:
        joined = np.concatenate(inputs)
    return joined, None if any(t is None for t in targets) else np.concatenate(targets)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _take(dataset: Any, count: int) -> list[Any]:
    """Up to `count` items: evenly spaced over a sized dataset, else the first ones."""
    if hasattr(dataset, "__len__"):
        size = len(dataset)
        if size == 0:
            raise ValueError(f"the calibration dataset ({type(dataset).__name__}) is empty")
        indices = np.unique(np.linspace(0, size - 1, min(size, count)).round().astype(int))
        return [dataset[int(i)] for i in indices]
    items = list(islice(_iterate(dataset), count))
    if not items:
        raise ValueError(f"the calibration dataset ({type(dataset).__name__}) is empty")
    return items


def _iterate(dataset: Any) -> Iterator[Any]:
    try:
        return iter(dataset)
    except TypeError:
        raise ValueError(
            f"{type(dataset).__name__} is not a dataset: it has neither a length nor an iterator"
        ) from None


def _split(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets or None) of a collated batch; a tuple/list batch is (inputs, targets, ...)."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("the collate function returned an empty batch")
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def _arrays(inputs: Any, names: Sequence[str] | None) -> Arrays:
    """A collated input batch as float32 numpy: one array, or name → array (only the graph's `names` when given)."""
    if isinstance(inputs, Mapping):
        if names is not None:
            missing = [name for name in names if name not in inputs]
            if missing:
                raise ValueError(f"the dataset's inputs {sorted(map(str, inputs))} lack the model's inputs {missing}")
            return {name: _numpy(inputs[name], name) for name in names}
        return {str(k): _numpy(v, str(k)) for k, v in inputs.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    array = _numpy(inputs, "inputs")
    if names is None:
        return array
    if len(names) != 1:
        raise ValueError(f"the model takes inputs {list(names)} but the dataset yields one array per item")
    return {names[0]: array}


def _numpy(value: Any, what: str, float32: bool = True) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif not isinstance(value, (np.ndarray, int, float, list)):
        raise ValueError(
            f"{what}: batches of {type(value).__name__} cannot calibrate an exported graph, which reads raw arrays"
        )
    array = np.asarray(value)
    return array.astype(np.float32) if float32 and array.dtype.kind == "f" else array
