"""Checking an exported ONNX file against eager PyTorch, and refusing models that cannot give finite outputs.

:func:`verify_onnx` runs the eager model and ONNX Runtime on the same inputs and raises
:class:`ExportVerificationError` when their outputs differ beyond the tolerance, in shape, or in where they are
non-finite, and when finite inputs give non-finite outputs at all (NaN equal to NaN is no agreement).
:func:`check_finite_state` refuses a model whose parameters or buffers hold NaN or Inf before it is exported.
:func:`~mmsdk.export.onnx.to_onnx` uses both; they are importable from `mmsdk.export.onnx` as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
_VERIFY_SEED = 0


class ExportVerificationError(ValueError):
    """ONNX Runtime's output differs from eager PyTorch beyond the tolerance (or in shape), or finite inputs gave
    non-finite outputs.

    Attributes:
        input_shape: the input shape whose outputs differ.
        max_abs_error: the largest absolute difference (inf for a shape or NaN-pattern mismatch and for
            non-finite outputs of finite inputs).
        tolerance: the tolerance that was exceeded.
    """

    def __init__(self, message: str, input_shape: tuple[int, ...], max_abs_error: float, tolerance: float) -> None:
        super().__init__(message)
        self.input_shape, self.max_abs_error, self.tolerance = input_shape, max_abs_error, tolerance


def verify_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    inputs_list: Sequence[Tensor | Sequence[Tensor]],
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[tuple[int, ...], float]:
    """Compares eager PyTorch (eval mode) with ONNX Runtime (CPU) on each input.

    Args:
        model: the eager model the file was exported from, called with one positional tensor per graph input.
        path: the `.onnx` file (every output compared, in graph order).
        inputs_list: inputs of possibly different batch sizes: a tensor (one graph input) or a sequence of
            tensors in graph-input order.
        tolerance: max absolute error allowed.

    Returns:
        First input's shape → max absolute error.

    Raises:
        ExportVerificationError: naming the input shape, the error and the tolerance, on the first input whose
            outputs differ beyond the tolerance, in shape, or in where they are NaN; and, naming who produced them
            and where, on the first finite input for which eager PyTorch or ONNX Runtime gives NaN or Inf.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_names = [arg.name for arg in session.get_inputs()]
    device = _device_of(model)
    errors: dict[tuple[int, ...], float] = {}
    with _eval_mode(model), torch.no_grad():
        for inputs in inputs_list:
            tensors = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            shape = tuple(tensors[0].shape)
            outputs = _output_list(model(*(t.to(device) for t in tensors)))
            feed = {name: t.detach().cpu().numpy() for name, t in zip(input_names, tensors)}
            results = session.run(None, feed)
            errors[shape] = max(
                _compare(path, shape, tensors, out.detach().float().cpu().numpy(), actual, tolerance)
                for out, actual in zip(outputs, results)
            )
    return errors


def _compare(
    path: str | os.PathLike[str],
    shape: tuple[int, ...],
    tensors: Sequence[Tensor],
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: float,
) -> float:
    """Max abs error of one graph output against eager, raising ExportVerificationError beyond the tolerance."""
    if actual.shape != expected.shape:
        raise ExportVerificationError(
            f"{path}: for input shape {shape}, ONNX Runtime output has shape {actual.shape} but eager "
            f"PyTorch gives {expected.shape}",
            shape,
            float("inf"),
            tolerance,
        )
    if all(_all_finite(t) for t in tensors):
        for who, output in (("eager PyTorch", expected), ("ONNX Runtime", actual)):
            _check_finite_output(path, shape, who, output, tolerance)
    error = _max_abs_error(expected, actual)
    logger.debug("verify %s input %s: max abs error %.3e", path, shape, error)
    if not error <= tolerance:
        raise ExportVerificationError(
            f"{path}: for input shape {shape}, ONNX Runtime differs from eager PyTorch by max abs error "
            f"{error:.3e} > tolerance {tolerance:.1e}",
            shape,
            error,
            tolerance,
        )
    return error


def check_finite_state(model: nn.Module) -> None:
    """Raises ValueError naming the first parameter or floating-point buffer of `model` that holds NaN or Inf.

    Such a model (diverged training, a corrupt checkpoint) gives NaN for every input, and NaN compared with NaN
    would "verify" with no error; it is refused before export instead.
    """
    tensors = [("parameter", name, t) for name, t in model.named_parameters()]
    tensors += [("buffer", name, t) for name, t in model.named_buffers() if t.is_floating_point()]
    for kind, name, tensor in tensors:
        bad = ~torch.isfinite(tensor.detach())
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            nan = int(torch.isnan(tensor.detach()).sum())
            raise ValueError(
                f"cannot export {type(model).__name__}: {kind} {name!r} of shape {tuple(tensor.shape)} holds "
                f"{int(bad.sum())} non-finite value(s) ({nan} NaN, {int(bad.sum()) - nan} Inf), the first at index "
                f"{first}; the model gives NaN for every input (diverged training or a corrupt checkpoint?)"
            )


def _check_finite_output(
    path: str | os.PathLike[str], shape: tuple[int, ...], who: str, output: np.ndarray, tolerance: float
) -> None:
    """Raises ExportVerificationError when `output` (of a finite input of `shape`) holds NaN or Inf."""
    bad = ~np.isfinite(output)
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise ExportVerificationError(
            f"{path}: for finite input of shape {shape}, {who} gives {int(bad.sum())} non-finite output value(s) "
            f"of {output.size}, the first at index {first}; check the model's parameters and the input's range",
            shape,
            float("inf"),
            tolerance,
        )


def _all_finite(tensor: Tensor) -> bool:
    """Whether a tensor holds no NaN or Inf (integer and bool tensors always)."""
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def _verification_inputs(
    adapters: Mapping[str, Adapter],
    example: Mapping[str, Tensor],
    batch_sizes: Sequence[int],
    make: Callable[[int, torch.Generator], Any] | None = None,
) -> list[list[Tensor]]:
    """Seeded inputs of each batch size, in graph-input order: the model's own examples (`make`, e.g.
    `TaskModel.example_input`) or the adapters', else rows of the example cycled (with a little noise on floating
    inputs so that rows differ); plus a one-modality adapter's own `verification_inputs` (other clip or series
    lengths)."""
    generator = torch.Generator().manual_seed(_VERIFY_SEED + 1)
    inputs: list[list[Tensor]] = []
    if len(adapters) == 1:  # other lengths of the dynamic axes, padded inputs
        inputs += [_flat(x) for x in next(iter(adapters.values())).verification_inputs(generator)]
    for size in batch_sizes:
        if size < 1:
            raise ValueError(f"verify_batch_sizes must be positive, got {size}")
        if make is not None:
            inputs.append(_flat(make(size, generator)))
            continue
        if adapters:
            inputs.append([t for a in adapters.values() for t in _flat(a.example_input(size, generator))])
            continue
        rows = []
        for value in example.values():
            row = value.cpu()[torch.arange(size) % value.shape[0]]
            if row.is_floating_point():
                row = row + 0.01 * torch.randn(row.shape, generator=generator) * row.std().nan_to_num(1.0)
            rows.append(row)
        inputs.append(rows)
    return inputs


def _max_abs_error(expected: np.ndarray, actual: np.ndarray) -> float:
    """Max |expected − actual| over finite values; inf when NaN or Inf appear in different places."""
    expected, actual = expected.astype(np.float64), actual.astype(np.float64)
    if not np.array_equal(np.isnan(expected), np.isnan(actual)):
        return float("inf")
    infinite = np.isinf(expected)
    if not np.array_equal(infinite, np.isinf(actual)) or not np.array_equal(expected[infinite], actual[infinite]):
        return float("inf")
    finite = np.isfinite(expected)
    return float(np.abs(expected[finite] - actual[finite]).max()) if finite.any() else 0.0


def _device_of(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless module)."""
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))


def _flat(inputs: Tensor | Mapping[str, Tensor]) -> list[Tensor]:
    """One adapter's raw input as graph inputs in order: a tensor, or the entries of its input mapping."""
    values = list(inputs.values()) if isinstance(inputs, Mapping) else [inputs]
    return [_float32_input(value) for value in values]


def _float32_input(inputs: Tensor) -> Tensor:
    """Floating inputs as float32; other dtypes (ids, masks) unchanged."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"example_input must be a torch.Tensor (or a mapping of them), got {type(inputs).__name__}")
    return inputs.float() if inputs.is_floating_point() else inputs


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Puts every submodule in eval mode and restores each one's own mode afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _tensor_outputs(output: Any) -> dict[str, Tensor] | Tensor:
    """The output itself if it is one tensor or a dict of named tensors (several graph outputs, e.g. a forecast and
    its quantiles), else a TypeError naming what the model returned."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and output and all(isinstance(v, Tensor) for v in output.values()):
        return output
    raise TypeError(
        f"ONNX export needs a model returning a torch.Tensor or a dict of named tensors, but it returned "
        f"{type(output).__name__}; wrap it so that forward returns one of those"
    )


def _output_list(output: Any) -> list[Tensor]:
    """The model's outputs in graph order (a dict's values in its order)."""
    output = _tensor_outputs(output)
    return list(output.values()) if isinstance(output, dict) else [output]
