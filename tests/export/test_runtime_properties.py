"""Property-based tests of the torch-free runtime (`OnnxModel`) against hostile input, one tiny model per family.

One task model per family (time series, point cloud, audio, video), built from the adapter contract suite's tiny
configs, is exported once per module. Hypothesis feeds the runtimes random shapes, dtypes (float16/32/64,
integers, bool, nested lists), NaN and Inf, empty and huge-valued arrays. The only failures allowed are
ValueError or TypeError naming the input, and whatever validation lets through gives finite outputs: the runtimes
here run with `check_outputs=False`, so a NaN output is a failure rather than the runtime's last-resort error.
Valid inputs (finite values within the input's `mmsdk.max_abs`, NaN only where its `mmsdk.nonfinite` policy
allows) always run, in eager PyTorch and in ONNX Runtime, to finite outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import support
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import NONFINITE_POLICIES, OnnxModel
from mmsdk.models import TaskModel, build_task_model

CONTRACT = support.contract_suite()
FAMILIES = {"timeseries": "patchtst", "pointcloud": "pointmae", "audio": "audiomae", "video": "videomae"}
NAMES = list(FAMILIES.values())
EXPECTED_POLICIES = {
    "patchtst": "nan_as_missing",
    "pointmae": "reject",
    "audiomae": "nan_as_padding",
    "videomae": "nan_as_missing",
}
NUMPY_DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]
SCALES = [0.0, 1e-30, 1.0, 1e3, 1e10, 1e15, 1e20, 1e30, 3e38, 1e300]
PROPERTY_SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


class Exported:
    """Each family's tiny task model and its runtime, exported on first use (once per module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models: dict[str, TaskModel] = {}
        self.paths: dict[str, Path] = {}

    def model(self, name: str) -> TaskModel:
        if name not in self.models:
            task = get_adapter_class(name).tasks[0]
            torch.manual_seed(0)
            model = build_task_model(CONTRACT._config(name), {"task": task, "num_outputs": CONTRACT.NUM_OUTPUTS})
            self.paths[name] = to_onnx(model.eval(), self.root / f"{name}.onnx", verify=False).path
            self.models[name] = model
        return self.models[name]

    def path(self, name: str) -> Path:
        self.model(name)
        return self.paths[name]

    def runtime(self, name: str, check_outputs: bool = False) -> OnnxModel:
        return OnnxModel(self.path(name), threads=1, check_outputs=check_outputs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny graphs: waiting for threads on a busy machine costs more than they give
    yield Exported(tmp_path_factory.mktemp("runtime_properties"))
    torch.set_num_threads(threads)


def example(exported: Exported, name: str, batch_size: int, seed: int) -> np.ndarray:
    adapter = exported.model(name).backbone.adapter
    return adapter.example_input(batch_size, torch.Generator().manual_seed(seed)).numpy().astype(np.float64)


def resized(draw: st.DrawFn, exported: Exported, name: str, rng: np.random.Generator) -> np.ndarray:
    """A valid-shaped input: the example at a random batch size, its other dynamic axes at random valid sizes."""
    x = example(exported, name, draw(st.integers(1, 3)), draw(st.integers(0, 2**16)))
    spec = exported.model(name).backbone.adapter.export_spec()
    shape = list(x.shape)
    for axis in spec.dynamic_axes:
        if axis > 0:
            shape[axis] = draw(st.integers(spec.min_sizes.get(axis, 1), max(spec.min_sizes.get(axis, 1), shape[axis])))
    if shape == list(x.shape):
        return x
    return x.mean() + x.std() * rng.standard_normal(shape)


def strip_value_metadata(path: Path, target: Path) -> Path:
    """A copy of an exported file without the value entries, as files exported before them were."""
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in ("mmsdk.nonfinite", "mmsdk.max_abs", "mmsdk.min_sizes")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, str(target))
    return target


@st.composite
def hostile(draw: st.DrawFn, exported: Exported, name: str) -> Any:
    """An array (or nested list) with a mangled shape, dtype and values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = resized(draw, exported, name, rng)
    shape = list(x.shape)
    kind = draw(st.sampled_from(["keep", "resize", "rank"]))
    if kind == "resize":
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(0, 2 * shape[axis] + 2))
    elif kind == "rank":
        shape = shape[: draw(st.integers(0, len(shape) - 1))] if draw(st.booleans()) else [*shape, 2]
    if shape != list(x.shape):
        x = rng.standard_normal(shape)
    x = x * draw(st.sampled_from(SCALES))
    if x.size and draw(st.booleans()):
        flat = x.reshape(-1).copy()
        index = rng.choice(flat.size, size=draw(st.integers(1, min(8, flat.size))), replace=False)
        flat[index] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        x = flat.reshape(x.shape)
    if x.ndim >= 2 and x.size and draw(st.booleans()):  # a trailing NaN run (audio padding)
        x = x.copy()
        x[0, ..., draw(st.integers(0, x.shape[-1] - 1)) :] = np.nan
    dtype = draw(st.sampled_from(NUMPY_DTYPES))
    with np.errstate(over="ignore", invalid="ignore"):
        if np.dtype(dtype).kind != "f":
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).clip(-100, 100)
        x = x.astype(dtype)
    return x.tolist() if x.size < 2000 and draw(st.integers(0, 9)) == 0 else x


@st.composite
def valid(draw: st.DrawFn, exported: Exported, name: str) -> np.ndarray:
    """A valid input: right shape, finite values within the declared range, NaN only where the policy allows."""
    adapter = exported.model(name).backbone.adapter
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = resized(draw, exported, name, rng)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    limit = min(adapter.max_abs_input, 1e4 if dtype == np.float16 else adapter.max_abs_input)
    scale = min(draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e6, 1e10, 1e15])), 0.5 * limit / np.abs(x).max())
    x = x * scale + np.clip(draw(st.sampled_from([0.0, 1.0, -1e6, 1e12])), -0.4 * limit, 0.4 * limit)
    policy = adapter.nonfinite_policy
    if policy == "nan_as_missing" and draw(st.booleans()):
        missing = rng.random(x.shape) < draw(st.sampled_from([0.01, 0.3, 0.9]))
        missing.reshape(x.shape[0], -1)[:, 0] = False  # one real value per sample
        x = np.where(missing, np.nan, x)
    elif policy == "nan_as_padding" and draw(st.booleans()):
        shortest = adapter.export_spec().min_sizes.get(x.ndim - 1, 1)
        x[-1, ..., draw(st.integers(shortest, x.shape[-1])) :] = np.nan
    return x.astype(dtype)


def test_metadata_declares_each_inputs_values(exported: Exported) -> None:
    for name in NAMES:
        runtime = exported.runtime(name)
        assert runtime.nonfinite == {runtime.input_name: EXPECTED_POLICIES[name]}
        assert set(runtime.nonfinite.values()) <= set(NONFINITE_POLICIES)
        assert runtime.max_abs == {runtime.input_name: get_adapter_class(name).max_abs_input}
    audio = exported.runtime("audiomae")
    assert audio.min_sizes == {"waveform": {1: exported.model("audiomae").backbone.adapter.config.min_samples}}


@pytest.mark.parametrize("name", NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_hostile_inputs_fail_only_with_errors_naming_the_input(
    exported: Exported, name: str, data: st.DataObject
) -> None:
    runtime = exported.runtime(name)
    x = data.draw(hostile(exported, name))
    try:
        out = runtime(x)
    except (ValueError, TypeError) as error:
        assert runtime.input_name in str(error), str(error)
        return
    assert np.isfinite(out).all(), f"non-finite outputs for an input that passed validation: {np.asarray(x).dtype}"


@pytest.mark.parametrize("name", NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_valid_inputs_give_finite_outputs_in_eager_and_runtime(
    exported: Exported, name: str, data: st.DataObject
) -> None:
    x = data.draw(valid(exported, name))
    out = exported.runtime(name)(x)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    with torch.no_grad():
        eager = exported.model(name)(torch.from_numpy(x))
    assert eager.shape == out.shape and torch.isfinite(eager).all()


def test_inf_is_rejected_naming_the_input_count_and_index(exported: Exported) -> None:
    runtime = exported.runtime("patchtst")
    x = example(exported, "patchtst", 2, 0).astype(np.float32)
    x[0, 3, 1] = np.inf
    x[1, 5, 0] = -np.inf
    with pytest.raises(ValueError, match=r"series holds 2 Inf value\(s\) .*first at index \(0, 3, 1\)"):
        runtime(x)


def test_nan_is_rejected_where_the_model_takes_no_missing_values(exported: Exported) -> None:
    x = example(exported, "pointmae", 2, 0).astype(np.float32)
    x[1, 7, :2] = np.nan
    with pytest.raises(ValueError, match=r"points holds 2 NaN value\(s\) .*index \(1, 7, 0\).*reject"):
        exported.runtime("pointmae")(x)


def test_nan_marks_missing_values_where_the_model_handles_them(exported: Exported) -> None:
    for name in ("patchtst", "videomae"):
        x = example(exported, name, 2, 0).astype(np.float32)
        x.reshape(2, -1)[:, ::3] = np.nan
        assert np.isfinite(exported.runtime(name)(x)).all()


def test_float64_values_too_large_for_float32_are_an_error(exported: Exported) -> None:
    runtime = exported.runtime("patchtst")
    x = example(exported, "patchtst", 2, 0)
    x[1, 2, 0] = 1e300
    with pytest.raises(ValueError, match=r"series holds 1 finite value\(s\) too large for float32.*\(1, 2, 0\)"):
        runtime(x)
    with pytest.raises(ValueError, match="too large for float32"):
        runtime(x.tolist())  # lists are converted with the same check


def test_values_beyond_the_declared_range_are_an_error(exported: Exported) -> None:
    x = example(exported, "patchtst", 2, 0).astype(np.float32) * np.float32(1e20)  # squares overflow float32
    with pytest.raises(ValueError, match=r"series holds \d+ value\(s\) beyond ±1e\+15"):
        exported.runtime("patchtst")(x)


def test_audio_nan_is_padding_only_at_the_end_of_a_long_enough_clip(exported: Exported) -> None:
    runtime = exported.runtime("audiomae")
    shortest = runtime.min_sizes["waveform"][1]
    x = example(exported, "audiomae", 2, 0).astype(np.float32)
    padded = x.copy()
    padded[1, shortest + 10 :] = np.nan
    assert np.isfinite(runtime(padded)).all()
    inner = x.copy()
    inner[0, 100] = np.nan
    with pytest.raises(ValueError, match=r"waveform holds 1 NaN value\(s\) before the end .*\(0, 100\)"):
        runtime(inner)
    short_tail = x.copy()
    short_tail[1, shortest - 1 :] = np.nan
    with pytest.raises(ValueError, match=rf"waveform sample \(1,\) has {shortest - 1} real value"):
        runtime(short_tail)
    with pytest.raises(ValueError, match=rf"waveform needs at least {shortest} along axis 1"):
        runtime(x[:, : shortest - 1])


def test_audio_clips_of_different_lengths_run_as_one_padded_batch(exported: Exported) -> None:
    """A list of waveforms of different lengths is NaN-padded to the longest; each clip's output is the one it gets
    alone, in one call or in chunks."""
    runtime = exported.runtime("audiomae")
    x = example(exported, "audiomae", 3, 1).astype(np.float32)
    shortest = runtime.min_sizes["waveform"][1]
    clips = [x[0], x[1, : shortest + 40], x[2, : shortest + 7]]
    alone = np.concatenate([runtime(clip[None]) for clip in clips])
    np.testing.assert_allclose(runtime(clips), alone, atol=1e-4, rtol=0)
    np.testing.assert_allclose(runtime(clips, batch_size=2), alone, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=rf"waveform sample \(1,\) has {shortest - 1} real value"):
        runtime([x[0], x[1, : shortest - 1]])


def test_empty_axes_are_an_error(exported: Exported) -> None:
    x = example(exported, "videomae", 1, 0).astype(np.float32)[:, :, :, :0]
    with pytest.raises(ValueError, match=r"frames is empty: shape \(1, 4, 4, 0, 24\)"):
        exported.runtime("videomae")(x)


def test_files_without_value_metadata_let_nan_through_and_reject_inf(exported: Exported, tmp_path: Path) -> None:
    legacy = OnnxModel(strip_value_metadata(exported.path("pointmae"), tmp_path / "legacy.onnx"), threads=1)
    assert legacy.nonfinite == {"points": "nan_as_missing"} and legacy.max_abs == {} and legacy.min_sizes == {}
    x = example(exported, "pointmae", 2, 0).astype(np.float32)
    x[0, 3, 1] = np.inf
    with pytest.raises(ValueError, match="points holds 1 Inf"):
        legacy(x)
    x[0] = np.nan  # a cloud of NaN: the graph gives NaN logits, which the runtime refuses to return
    with pytest.raises(ValueError, match=r"output logits holds 3 NaN or Inf value\(s\).*points\(2, 64, 3\)"):
        legacy(x)
    unchecked = OnnxModel(legacy.path, threads=1, check_outputs=False)
    assert np.isnan(unchecked(x)).any()


def test_onnx_runtime_errors_become_value_errors_naming_the_inputs(exported: Exported, tmp_path: Path) -> None:
    legacy = OnnxModel(strip_value_metadata(exported.path("audiomae"), tmp_path / "legacy.onnx"), threads=1)
    with pytest.raises(ValueError, match=r"ONNX Runtime could not run legacy\.onnx on waveform\(2, 100\)"):
        legacy(np.zeros((2, 100), np.float32))


def test_run_takes_a_mapping(exported: Exported) -> None:
    with pytest.raises(TypeError, match="mapping of input name"):
        exported.runtime("patchtst").run(example(exported, "patchtst", 1, 0))  # type: ignore[arg-type]
