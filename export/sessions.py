"""Opening ONNX Runtime sessions for :class:`mmsdk.export.runtime.OnnxModel`: which execution providers to ask for,
and load failures (empty, truncated or corrupted files, missing external data) turned into errors naming the file.
numpy-free and torch-free: the standard library and onnxruntime only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

AUTO_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""What `providers="auto"` picks from, in this order, among the providers the installed onnxruntime has."""
_LOAD_ERRORS: tuple[type[Exception], ...] = tuple(
    error
    for error in vars(ort.capi.onnxruntime_pybind11_state).values()
    if isinstance(error, type) and issubclass(error, Exception)
)
_EXTERNAL_LOCATION = b"\n\x08location\x12"  # a serialized StringStringEntryProto key "location", then its value


def choose_providers(providers: Sequence[str] | str | None, available: Sequence[str]) -> list[str]:
    """The execution providers to ask for: CPU for None, :data:`AUTO_PROVIDERS` that are `available` for "auto",
    else `providers` as given (a single name is a list of one)."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if providers == "auto":
        return [p for p in AUTO_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    return [providers] if isinstance(providers, str) else list(providers)


def load_session(path: Path, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    """An ONNX Runtime session of `path`; a file that does not load raises ValueError saying what is wrong with it.

    Raises:
        ValueError: for an empty file, bytes that do not parse as an ONNX model (truncated or corrupted), missing
            external data, or any other load failure, with ONNX Runtime's error as the cause.
    """
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except _LOAD_ERRORS as error:
        size = path.stat().st_size
        detail = str(error).split("failed:", 1)[-1].strip()
        folder = path.absolute().parent
        missing = _missing_external_data(path) if "external" in str(error).lower() else []
        if size == 0:
            problem = "is empty (0 bytes), not an ONNX model"
        elif missing:
            problem = (
                f"needs its external data {missing}, which is missing from {folder}; the data files must lie next to "
                "the model"
            )
        elif type(error).__name__ == "InvalidProtobuf":
            problem = f"is not a valid ONNX model: its {size} bytes do not parse (a truncated or corrupted file?)"
        elif "external" in str(error).lower():
            problem = f"has external data that could not be read (they must lie next to the model in {folder})"
        else:
            problem = f"({size} bytes) could not be loaded by ONNX Runtime"
        raise ValueError(f"{path} {problem}; re-export or re-download it (ONNX Runtime: {detail})") from error


def _missing_external_data(path: Path) -> list[str]:
    """The external-data files the model names (its `location` entries) that do not exist next to it."""
    data = path.read_bytes()
    names: list[str] = []
    start = data.find(_EXTERNAL_LOCATION)
    while start >= 0:
        offset = start + len(_EXTERNAL_LOCATION)
        length = data[offset] if offset < len(data) else 0  # a file name under 128 bytes: a one-byte varint
        if length < 0x80:
            name = data[offset + 1 : offset + 1 + length].decode("utf-8", errors="replace")
            if name and name not in names:
                names.append(name)
        start = data.find(_EXTERNAL_LOCATION, offset)
    return [name for name in names if not (path.parent / name).is_file()]
