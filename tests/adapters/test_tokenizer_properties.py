"""Property-based tests of every registered adapter's tokenizer against hostile raw input.

Each adapter is built from the contract suite's tiny config (its `example_config()` and the shared encoder width)
and fed random shapes, dtypes (float16/32/64, integers, bool), NaN and Inf, empty and huge-valued inputs derived
from its own `example_input`. The only failures allowed are ValueError or TypeError; a tokenization that succeeds
gives finite tokens and targets. Valid inputs (the right shape, finite values within the adapter's
`max_abs_input`, NaN only where its `nonfinite_policy` allows) always tokenize.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import support
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmsdk
from mmsdk.contracts.adapter import NONFINITE_POLICIES, Adapter, get_adapter_class
from mmsdk.contracts.tokens import TokenBatch

ENCODER = support.contract_suite().ENCODER
NAMES = mmsdk.available_adapters()
EXPECTED_POLICIES = {  # what each built-in modality does with NaN
    "patchtst": "nan_as_missing",
    "timerxl": "nan_as_missing",
    "moirai": "nan_as_missing",
    "pointmae": "reject",
    "ssast": "nan_as_padding",
    "audiomae": "nan_as_padding",
    "videomae": "nan_as_missing",
}
DTYPES = [torch.float16, torch.float32, torch.float64, torch.int32, torch.int64, torch.uint8, torch.bool]
SCALES = [0.0, 1e-30, 1.0, 1e3, 1e10, 1e15, 1e20, 1e30, 3e38]
PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
_ADAPTERS: dict[str, Adapter] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine waiting for them dominates."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def adapter(name: str) -> Adapter:
    """The adapter `name` built from the contract suite's tiny config, in eval mode (built once)."""
    if name not in _ADAPTERS:
        cls = get_adapter_class(name)
        _ADAPTERS[name] = cls(cls.config_class.from_dict(cls.example_config()), ENCODER["dim"]).eval()
    return _ADAPTERS[name]


def example(name: str, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    return adapter(name).example_input(batch_size, torch.Generator().manual_seed(seed))


def tokenize(name: str, inputs: Any) -> TokenBatch:
    with torch.no_grad():
        return adapter(name).tokenize(inputs)


def assert_finite(batch: TokenBatch) -> None:
    batch.validate()  # shapes, dtypes and finite tokens
    assert torch.isfinite(batch.tokens).all()
    for field in ("targets", "positions"):
        value = getattr(batch, field)
        if value is not None and value.is_floating_point():
            assert torch.isfinite(value).all(), field


def min_length(name: str) -> int:
    """The shortest real length of a sample along the last axis (one token of audio; 1 otherwise)."""
    return adapter(name).export_spec().min_sizes.get(example(name).dim() - 1, 1)


@st.composite
def hostile(draw: st.DrawFn, name: str) -> torch.Tensor:
    """The adapter's example input with its shape, dtype and values mangled."""
    x = example(name, draw(st.integers(1, 3)), draw(st.integers(0, 2**16))).double()
    shape = list(x.shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["keep", "resize", "rank"]))
    if kind == "resize":  # one axis zero, shorter or longer
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(0, 2 * shape[axis] + 2))
    elif kind == "rank":
        shape = shape[: draw(st.integers(0, len(shape) - 1))] if draw(st.booleans()) else [*shape, 2]
    if shape != list(x.shape):
        x = torch.from_numpy(rng.standard_normal(shape))
    x = x * draw(st.sampled_from(SCALES))
    if x.numel() and draw(st.booleans()):
        flat = x.reshape(-1).clone()
        count = draw(st.integers(1, min(8, flat.numel())))
        index = torch.from_numpy(rng.choice(flat.numel(), size=count, replace=False))
        flat[index] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        x = flat.reshape(x.shape)
    if x.dim() >= 2 and x.numel() and draw(st.booleans()):  # a trailing NaN run (audio padding)
        x = x.clone()
        x[0, ..., draw(st.integers(0, x.shape[-1] - 1)) :] = float("nan")
    dtype = draw(st.sampled_from(DTYPES))
    if not dtype.is_floating_point:
        x = x.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100)  # integer casts of NaN/Inf are undefined
    return x.to(dtype)


@st.composite
def valid(draw: st.DrawFn, name: str) -> torch.Tensor:
    """A valid input: the example's shape, rescaled within `max_abs_input`, NaN where the policy allows."""
    a = adapter(name)
    x = example(name, draw(st.integers(1, 3)), draw(st.integers(0, 2**16))).double()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    limit = min(a.max_abs_input, 1e4 if dtype == torch.float16 else a.max_abs_input)
    peak = float(x.abs().max())
    scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e6, 1e10, 1e15])) * 0.5
    scale = min(scale, 0.5 * limit / peak)
    x = x * scale
    if draw(st.booleans()):  # a constant offset (zero-variance windows, badly centred data)
        offset = draw(st.sampled_from([0.0, 1.0, -1e6, 1e12]))
        x = x + float(np.clip(offset, -0.4 * limit, 0.4 * limit))
    policy = a.nonfinite_policy
    if policy == "nan_as_missing" and draw(st.booleans()):
        missing = torch.from_numpy(rng.random(x.shape) < draw(st.sampled_from([0.01, 0.3, 0.9])))
        missing.view(x.shape[0], -1)[:, 0] = False  # one real value per sample
        x = x.masked_fill(missing, float("nan"))
    elif policy == "nan_as_padding" and draw(st.booleans()):
        keep = draw(st.integers(min_length(name), x.shape[-1]))
        x = x.clone()
        x[-1, ..., keep:] = float("nan")
    return x.to(dtype)


def test_every_adapter_declares_its_nonfinite_policy_and_range() -> None:
    assert set(EXPECTED_POLICIES) <= set(NAMES)
    for name in NAMES:
        cls = get_adapter_class(name)
        assert cls.nonfinite_policy in NONFINITE_POLICIES, name
        assert 0 < cls.max_abs_input < float(torch.finfo(torch.float32).max) ** 0.5, name
        if name in EXPECTED_POLICIES:
            assert cls.nonfinite_policy == EXPECTED_POLICIES[name], name


@pytest.mark.parametrize("name", NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_hostile_inputs_fail_only_with_named_errors(name: str, data: st.DataObject) -> None:
    x = data.draw(hostile(name))
    try:
        batch = tokenize(name, x)
    except (ValueError, TypeError) as error:
        assert str(error), f"{type(error).__name__} without a message for {tuple(x.shape)} {x.dtype}"
        return
    assert_finite(batch)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_valid_inputs_always_tokenize_to_finite_tokens(name: str, data: st.DataObject) -> None:
    x = data.draw(valid(name))
    assert_finite(tokenize(name, x))


@pytest.mark.parametrize("name", NAMES)
def test_inf_is_rejected_naming_the_count(name: str) -> None:
    x = example(name)
    x.view(-1)[1] = float("inf")
    with pytest.raises(ValueError, match=r"Inf.*1 |1 .*Inf"):
        tokenize(name, x)


@pytest.mark.parametrize("name", NAMES)
def test_values_beyond_the_declared_range_are_rejected(name: str) -> None:
    x = example(name)
    x.view(-1)[3] = 10 * get_adapter_class(name).max_abs_input
    with pytest.raises(ValueError, match=r"beyond ±1e\+\d+ .*index"):
        tokenize(name, x)


@pytest.mark.parametrize("name", NAMES)
def test_nan_follows_the_declared_policy(name: str) -> None:
    policy = get_adapter_class(name).nonfinite_policy
    inner = example(name)
    inner.view(inner.shape[0], -1)[0, 1] = float("nan")  # an early value of the first sample
    if policy == "nan_as_missing":
        assert_finite(tokenize(name, inner))
    else:
        with pytest.raises(ValueError, match="NaN"):
            tokenize(name, inner)
    tail = example(name)
    tail[-1, ..., min_length(name) :] = float("nan")
    if policy == "reject":
        with pytest.raises(ValueError, match="NaN"):
            tokenize(name, tail)
    else:
        assert_finite(tokenize(name, tail))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_other_float_widths_tokenize(name: str, dtype: torch.dtype) -> None:
    """float16/64 input to a float32 model is cast, not a RuntimeError from inside a matmul."""
    batch = tokenize(name, example(name).to(dtype))
    assert_finite(batch)
    assert batch.tokens.dtype == torch.float32


def test_audio_without_samples_is_a_named_error() -> None:
    name = next(n for n in NAMES if get_adapter_class(n).nonfinite_policy == "nan_as_padding")
    with pytest.raises(ValueError, match=r"no samples \(shape \(2, 0\)\)"):
        tokenize(name, torch.zeros(2, 0))


@pytest.mark.parametrize("name", NAMES)
def test_non_tensor_input_is_a_named_error(name: str) -> None:
    with pytest.raises((ValueError, TypeError), match="Tensor"):
        tokenize(name, example(name).numpy())
