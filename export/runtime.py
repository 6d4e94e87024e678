"""Running exported models with ONNX Runtime: numpy in, numpy out, no torch.

This module imports only numpy and onnxruntime (and the standard library), so a deployment that serves an
exported model needs neither torch nor the rest of mmsdk's training stack. Inputs are validated against the
graph's declared shape and dtype before they reach the session, so a wrong series length fails with a message
that names the input and the expected shape instead of an opaque runtime error.

Values are validated too, by what the file's metadata says each input may hold (written at export from the
adapter): `mmsdk.nonfinite` says where NaN may appear ("nan_as_missing": anywhere, "nan_as_padding": only as a
trailing run along the last axis, "reject": nowhere), `mmsdk.max_abs` bounds |value| and `mmsdk.min_sizes` the
axis sizes. Inf is never accepted, and neither are float64 values that do not fit in the graph's float32. Files
exported before these entries existed let NaN through and reject Inf. Outputs are checked as well: a model that
still produces NaN or Inf raises instead of returning them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)

Dim = int | str | None

# ONNX Runtime type strings -> numpy dtypes of the inputs mmsdk models take.
_ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
}
# Metadata entries holding JSON, and the key their decoded value is exposed under.
_JSON_METADATA = {
    "mmsdk.config": "config",
    "mmsdk.head": "head",
    "mmsdk.nonfinite": "nonfinite",
    "mmsdk.max_abs": "max_abs",
    "mmsdk.min_sizes": "min_sizes",
}
NONFINITE_POLICIES = ("reject", "nan_as_missing", "nan_as_padding")
"""Where an input may hold NaN (`mmsdk.nonfinite`): nowhere, anywhere (missing values), or only as a trailing run
along the last axis of each sample (padding after a clip's end). Inf is never valid."""
LEGACY_POLICY = "nan_as_missing"
"""The policy of inputs the metadata says nothing about (files exported before `mmsdk.nonfinite`): NaN passes
through as before, Inf is rejected."""
_ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in ("Fail", "InvalidArgument", "RuntimeException")
    if hasattr(ort.capi.onnxruntime_pybind11_state, name)
)


def format_shape(shape: Sequence[Dim]) -> str:
    """`(batch, 96, 3)`: symbolic dims by name, unknown dims as `?`."""
    parts = ["?" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """The raw metadata entries plus `config` and `head` decoded from their JSON entries when present."""
    metadata: dict[str, Any] = dict(raw)
    for key, name in _JSON_METADATA.items():
        if key in raw:
            try:
                metadata[name] = json.loads(raw[key])
            except json.JSONDecodeError:
                logger.warning("metadata entry %r is not valid JSON; left undecoded", key)
    return metadata


class OnnxModel:
    """An exported model served by ONNX Runtime.

    Args:
        path: the `.onnx` file (external-data files must lie next to it).
        providers: ONNX Runtime execution providers in priority order; CPU only by default, so results do not
            depend on which onnxruntime build is installed.
        threads: intra-op threads (ONNX Runtime's default, all cores, when None).
        check_outputs: raise when an output holds NaN or Inf instead of returning it.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if a requested provider is not available in the installed onnxruntime.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        check_outputs: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ValueError(f"execution providers {missing} are not available; have {ort.get_available_providers()}")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        self._inputs = {arg.name: arg for arg in self.session.get_inputs()}
        self.output_names: list[str] = [arg.name for arg in self.session.get_outputs()]
        self.metadata: dict[str, Any] = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.check_outputs = check_outputs
        self.nonfinite: dict[str, str] = self._policies()
        """Input name → where it may hold NaN (see :data:`NONFINITE_POLICIES`)."""
        self.max_abs: dict[str, float] = {
            name: float(value) for name, value in _entry(self.metadata, "max_abs").items() if name in self._inputs
        }
        """Input name → the largest |value| it may hold (inputs without an entry: any finite value)."""
        self.min_sizes: dict[str, dict[int, int]] = {
            name: {int(axis): int(size) for axis, size in sizes.items()}
            for name, sizes in _entry(self.metadata, "min_sizes").items()
            if name in self._inputs
        }
        """Input name → axis → the smallest size the input may have along it."""
        logger.debug("loaded %s: inputs %s, outputs %s", self.path, list(self._inputs), self.output_names)

    def _policies(self) -> dict[str, str]:
        """Each input's NaN policy from `mmsdk.nonfinite`; LEGACY_POLICY where the file has none or an unknown one."""
        stored = _entry(self.metadata, "nonfinite")
        if not stored:
            logger.debug("%s has no mmsdk.nonfinite entry: NaN passes through, Inf is rejected", self.path.name)
        policies = {}
        for name in self._inputs:
            policy = stored.get(name, LEGACY_POLICY)
            if policy not in NONFINITE_POLICIES:
                logger.warning(
                    "%s: unknown NaN policy %r for input %s (expected one of %s); NaN passes through, Inf is rejected",
                    self.path.name,
                    policy,
                    name,
                    NONFINITE_POLICIES,
                )
                policy = LEGACY_POLICY
            policies[name] = policy
        return policies

    @property
    def input_names(self) -> list[str]:
        """Names of every graph input."""
        return list(self._inputs)

    @property
    def input_name(self) -> str:
        """Name of the (first) graph input, e.g. "series"."""
        return next(iter(self._inputs))

    @property
    def input_shape(self) -> list[Dim]:
        """Declared shape of the first input: ints for fixed dims, names (e.g. "batch") for dynamic ones."""
        return list(self._inputs[self.input_name].shape)

    def __repr__(self) -> str:
        return (
            f"OnnxModel({str(self.path)!r}, input={self.input_name}{format_shape(self.input_shape)}, "
            f"outputs={self.output_names}, providers={self.session.get_providers()})"
        )

    @property
    def sample_rate(self) -> int | None:
        """The sample rate (Hz) an audio model's waveform input must have (`mmsdk.sample_rate`); None otherwise."""
        value = self.metadata.get("mmsdk.sample_rate")
        return None if value is None else int(value)

    @property
    def labels(self) -> list[str] | None:
        """Class or label names in output order (`mmsdk.labels`), when the model was saved with them."""
        value = self.metadata.get("mmsdk.labels")
        return None if value is None else list(json.loads(value))

    @property
    def task(self) -> str | None:
        """The head's task (`forecast`, `classification`, `multilabel`, `regression`), None for an embedding model."""
        head = self.metadata.get("head")
        task = head.get("task") if isinstance(head, dict) else None
        return None if task is None else str(task)

    @property
    def adapter_config(self) -> dict[str, Any]:
        """The adapter config of the model's single modality (from `mmsdk.config`): context length, channels, number
        of points, frames, ...

        Raises:
            ValueError: for a file without mmsdk config metadata or with several modalities.
        """
        config = self.metadata.get("config")
        modalities = config.get("modalities") if isinstance(config, dict) else None
        if not isinstance(modalities, dict) or len(modalities) != 1:
            raise ValueError(f"{self.path.name} has no single-modality mmsdk.config metadata")
        return dict(next(iter(modalities.values())).get("adapter_config") or {})

    def top_classes(self, logits: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
        """The `top` best (label, probability) pairs of one sample's logits (K,), best first: softmax for a
        classifier, a sigmoid per label for a multilabel model; labels from the metadata (`class<i>` without them).

        Raises:
            ValueError: for a model that is not a classifier, or logits that do not match its labels.
        """
        if self.task not in ("classification", "multilabel"):
            raise ValueError(f"{self.path.name} is not a classifier (task {self.task!r})")
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if self.task == "multilabel":
            probabilities = 1.0 / (1.0 + np.exp(-logits))
        else:
            shifted = np.exp(logits - logits.max())
            probabilities = shifted / shifted.sum()
        labels = self.labels or [f"class{i}" for i in range(len(probabilities))]
        if len(labels) != len(probabilities):
            raise ValueError(f"{self.path.name} stores {len(labels)} labels for {len(probabilities)} outputs")
        order = np.argsort(-probabilities, kind="stable")[:top]
        return [(labels[i], float(probabilities[i])) for i in order]

    def __call__(self, inputs: np.ndarray | Sequence[Any], sample_rate: int | None = None) -> np.ndarray:
        """Runs a single-input, single-output model on one array (e.g. a (B, L, C) series or a (B, T) waveform).

        Args:
            inputs: the array.
            sample_rate: the rate of a waveform input, checked against the model's (see :meth:`run`).
        """
        if len(self._inputs) != 1 or len(self.output_names) != 1:
            raise ValueError(
                f"calling the model needs one input and one output; it has inputs {self.input_names} and outputs "
                f"{self.output_names}: use run() with a dict"
            )
        return self.run({self.input_name: inputs}, sample_rate=sample_rate)[self.output_names[0]]

    def run(
        self, inputs: Mapping[str, np.ndarray | Sequence[Any]], sample_rate: int | None = None
    ) -> dict[str, np.ndarray]:
        """Runs the model on named inputs and returns every output by name.

        Args:
            inputs: input name → array.
            sample_rate: when given, the sample rate of the caller's audio; it must equal the rate stored in the
                model (resample first, e.g. with `torchaudio.functional.resample` or `soxr`).

        Raises:
            TypeError: if `inputs` is not a mapping.
            ValueError: for a missing or unknown input name; an input of the wrong rank, size or dtype, empty, or
                shorter than the model's minimum along an axis; NaN where the input's policy forbids it, any Inf,
                float64 values too large for float32 or values beyond the input's `max_abs` (each naming the input,
                the count and the first index); a sample rate that differs from the model's (or a rate passed to a
                model without one); an input ONNX Runtime refuses; or, with `check_outputs`, an output holding NaN
                or Inf.
        """
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"run() takes a mapping of input name → array (inputs {self.input_names}), got "
                f"{type(inputs).__name__}; call the model itself with one array"
            )
        if sample_rate is not None:
            self._check_sample_rate(sample_rate)
        unknown = sorted(set(inputs) - set(self._inputs))
        missing = sorted(set(self._inputs) - set(inputs))
        if unknown or missing:
            raise ValueError(f"model inputs are {self.input_names}; got unknown {unknown}, missing {missing}")
        feed = {name: self._validate(name, value) for name, value in inputs.items()}
        outputs = dict(zip(self.output_names, self._session_run(feed)))
        if self.check_outputs:
            for name, output in outputs.items():
                _check_output(self.path.name, name, output, feed)
        return outputs

    def _session_run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The session's outputs, with ONNX Runtime's own errors re-raised as ValueError naming the input shapes."""
        try:
            return self.session.run(self.output_names, dict(feed))
        except _ORT_ERRORS as error:
            shapes = ", ".join(f"{name}{format_shape(value.shape)}" for name, value in feed.items())
            raise ValueError(f"ONNX Runtime could not run {self.path.name} on {shapes}: {error}") from error

    def _check_sample_rate(self, sample_rate: int) -> None:
        expected = self.sample_rate
        if expected is None:
            raise ValueError(f"{self.path.name} stores no sample rate (mmsdk.sample_rate): it takes no audio input")
        if int(sample_rate) != expected:
            raise ValueError(
                f"{self.path.name} was trained on {expected} Hz audio but got {sample_rate} Hz; resample the waveform "
                f"to {expected} Hz first"
            )

    def _validate(self, name: str, value: np.ndarray | Sequence[Any]) -> np.ndarray:
        """Converts `value` to the input's dtype where that is lossless in kind, and checks its shape and values."""
        arg = self._inputs[name]
        expected_dtype = _ORT_DTYPES.get(arg.type)
        array = _to_array(name, value, expected_dtype)
        expected = list(arg.shape)
        if array.ndim != len(expected):
            raise ValueError(
                f"{name} expects {format_shape(expected)} (rank {len(expected)}), got {format_shape(array.shape)} "
                f"(rank {array.ndim})"
            )
        if array.ndim > 0 and array.shape[0] == 0:
            raise ValueError(f"{name} got an empty batch: shape {format_shape(array.shape)}")
        for want, got in zip(expected, array.shape):
            if isinstance(want, int) and want != got:
                raise ValueError(f"{name} expects {format_shape(expected)}, got {format_shape(array.shape)}")
        if array.size == 0:
            raise ValueError(f"{name} is empty: shape {format_shape(array.shape)} holds no values")
        min_sizes = self.min_sizes.get(name, {})
        for axis, size in sorted(min_sizes.items()):
            if axis < array.ndim and array.shape[axis] < size:
                raise ValueError(
                    f"{name} needs at least {size} along axis {axis} (declared {format_shape(expected)}), got "
                    f"{format_shape(array.shape)}"
                )
        if array.dtype.kind == "f":
            _check_values(name, array, self.nonfinite[name], self.max_abs.get(name), min_sizes.get(array.ndim - 1))
        return array

    def benchmark(
        self, inputs: np.ndarray | Mapping[str, np.ndarray], warmup: int = 5, repeats: int = 50
    ) -> dict[str, float]:
        """Latency of one call on `inputs`, measured with `time.perf_counter`.

        Args:
            inputs: one array (single-input models) or a dict of named inputs.
            warmup: untimed calls first (allocations, kernel selection).
            repeats: timed calls.

        Returns:
            `median_ms`, `p90_ms`, `mean_ms`, `min_ms`, `throughput` (samples per second at the median latency,
            counting the first dimension as the batch), `batch_size` and `repeats`.
        """
        if repeats < 1 or warmup < 0:
            raise ValueError(f"benchmark needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
        named = inputs if isinstance(inputs, Mapping) else {self.input_name: inputs}
        feed = {name: self._validate(name, value) for name, value in named.items()}
        for _ in range(warmup):
            self.session.run(self.output_names, feed)
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            self.session.run(self.output_names, feed)
            times[i] = time.perf_counter() - start
        batch_size = int(next(iter(feed.values())).shape[0]) if feed else 1
        median = float(np.median(times))
        stats = {
            "median_ms": median * 1e3,
            "p90_ms": float(np.percentile(times, 90)) * 1e3,
            "mean_ms": float(times.mean()) * 1e3,
            "min_ms": float(times.min()) * 1e3,
            "throughput": batch_size / median,
            "batch_size": float(batch_size),
            "repeats": float(repeats),
        }
        logger.info("benchmark %s batch %d: median %.3f ms", self.path.name, batch_size, stats["median_ms"])
        return stats


def _entry(metadata: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A decoded per-input metadata entry (`nonfinite`, `max_abs`, `min_sizes`); empty when absent or malformed."""
    value = metadata.get(key)
    return dict(value) if isinstance(value, dict) else {}


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
