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
still produces NaN or Inf raises instead of returning them. The value checks live in :mod:`mmsdk.export.validation`.

`run(..., batch_size=n)` runs long inputs n rows at a time and concatenates the outputs; `outputs=[...]` computes
only the outputs named; a list of per-sample arrays of different lengths is NaN-padded to one batch for an input
whose padding is NaN ("nan_as_padding"). A file that does not load (empty, truncated, corrupted, or missing its
external data) raises ValueError naming the file and the problem.
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

from mmsdk.export.sessions import choose_providers, load_session
from mmsdk.export.validation import (
    Dim,
    _check_output,
    _check_values,
    _to_array,
    format_shape,
    stack_samples,
)

logger = logging.getLogger(__name__)

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
            depend on which onnxruntime build is installed. "auto" takes the fastest ones installed: TensorRT, then
            CUDA, then CPU (`mmsdk.export.sessions.AUTO_PROVIDERS`).
        threads: intra-op threads (ONNX Runtime's default, all cores, when None).
        check_outputs: raise when an output holds NaN or Inf instead of returning it.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if a requested provider is not available in the installed onnxruntime, or the file is not a
            loadable ONNX model (empty, truncated or corrupted, or missing its external data), naming the file and
            the problem (ONNX Runtime's own error is the cause).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | str | None = None,
        threads: int | None = None,
        check_outputs: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        providers = choose_providers(providers, ort.get_available_providers())
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ValueError(f"execution providers {missing} are not available; have {ort.get_available_providers()}")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
        self.session = load_session(self.path, options, providers)
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
    def quantile_levels(self) -> list[float] | None:
        """The levels of a forecaster's "quantiles" output (B, H, C, Q), in order (`HeadConfig.quantiles` in
        `mmsdk.head`); None for a model without quantiles."""
        head = self.metadata.get("head")
        levels = head.get("quantiles") if isinstance(head, dict) else None
        return None if levels is None else [float(q) for q in levels]

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

    def __call__(
        self, inputs: np.ndarray | Sequence[Any], sample_rate: int | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Runs a single-input model on one array (e.g. a (B, L, C) series or a (B, T) waveform) and returns its
        first output (a forecaster with quantiles: the point forecast; :meth:`run` returns them all).

        Args:
            inputs: the array (or a list of per-sample arrays, see :meth:`run`).
            sample_rate: the rate of a waveform input, checked against the model's (see :meth:`run`).
            batch_size: when given, run at most this many rows at a time (see :meth:`run`).
        """
        if len(self._inputs) != 1:
            raise ValueError(
                f"calling the model needs one input; it has inputs {self.input_names}: use run() with a dict"
            )
        first = self.output_names[0]
        return self.run({self.input_name: inputs}, sample_rate=sample_rate, batch_size=batch_size, outputs=first)[first]

    def run(
        self,
        inputs: Mapping[str, np.ndarray | Sequence[Any]],
        sample_rate: int | None = None,
        *,
        batch_size: int | None = None,
        outputs: Sequence[str] | str | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the model on named inputs and returns its outputs by name.

        Args:
            inputs: input name → array. For an input whose NaN policy is "nan_as_padding" (e.g. a waveform), a list
                of per-sample arrays of different lengths is padded with trailing NaN along the last axis to the
                longest; a list of equal-shape arrays is stacked for any input.
            sample_rate: when given, the sample rate of the caller's audio; it must equal the rate stored in the
                model (resample first, e.g. with `torchaudio.functional.resample` or `soxr`).
            batch_size: when given, the inputs (which must share their size along axis 0) are run in chunks of at
                most this many rows and the outputs concatenated along axis 0, so a long list of samples does not
                need one huge session call; every row is validated first, as without it.
            outputs: the names of the outputs to compute and return (every output when None), e.g. a forecaster's
                point forecast without its quantiles.

        Raises:
            TypeError: if `inputs` is not a mapping.
            ValueError: for a missing or unknown input name; an input of the wrong rank, size or dtype, empty, or
                shorter than the model's minimum along an axis; NaN where the input's policy forbids it, any Inf,
                float64 values too large for float32 or values beyond the input's `max_abs` (each naming the input,
                the count and the first index); samples of different shapes where the input has no NaN padding; a
                sample rate that differs from the model's (or a rate passed to a model without one); an unknown
                output name; a `batch_size` below 1 or inputs of different batch sizes with one; an input ONNX
                Runtime refuses; or, with `check_outputs`, an output holding NaN or Inf.
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
        names = self._output_selection(outputs)
        feed = {name: self._validate(name, value) for name, value in inputs.items()}
        if batch_size is None:
            results = dict(zip(names, self._session_run(feed, names)))
        else:
            results = self._run_in_chunks(feed, names, batch_size)
        if self.check_outputs:
            for name, output in results.items():
                _check_output(self.path.name, name, output, feed)
        return results

    def _output_selection(self, outputs: Sequence[str] | str | None) -> list[str]:
        """The requested output names, in the order asked for (every output when None)."""
        if outputs is None:
            return list(self.output_names)
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        unknown = [name for name in names if name not in self.output_names]
        if unknown or not names:
            raise ValueError(
                f"{self.path.name} has outputs {self.output_names}; got unknown {unknown}"
                if unknown
                else f"outputs must name at least one of {self.output_names} (or be None for all)"
            )
        return list(dict.fromkeys(names))

    def _run_in_chunks(
        self, feed: Mapping[str, np.ndarray], names: Sequence[str], batch_size: int
    ) -> dict[str, np.ndarray]:
        """The outputs of the validated `feed` run `batch_size` rows at a time, concatenated along axis 0."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        sizes = {name: int(value.shape[0]) for name, value in feed.items()}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
            raise ValueError(f"batch_size needs inputs of one batch size (axis 0), got {listed}")
        total = next(iter(sizes.values()))
        chunks: list[list[np.ndarray]] = []
        for start in range(0, total, int(batch_size)):
            chunk = {name: value[start : start + int(batch_size)] for name, value in feed.items()}
            chunks.append(self._session_run(chunk, names))
        logger.debug("%s: ran %d rows in %d chunk(s) of at most %d", self.path.name, total, len(chunks), batch_size)
        results = {}
        for i, name in enumerate(names):
            parts = [outputs[i] for outputs in chunks]
            try:
                results[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            except ValueError as error:
                shapes = ", ".join(format_shape(part.shape) for part in parts)
                raise ValueError(
                    f"{self.path.name}: output {name} cannot be concatenated along axis 0 across chunks of "
                    f"batch_size {batch_size} (chunk shapes {shapes}); run without batch_size"
                ) from error
        return results

    def _session_run(self, feed: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The session's outputs `names` (all by default), with ONNX Runtime's own errors re-raised as ValueError
        naming the input shapes."""
        try:
            return self.session.run(list(names or self.output_names), dict(feed))
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
        array = _to_array(name, stack_samples(name, value, expected_dtype, self.nonfinite[name]), expected_dtype)
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
