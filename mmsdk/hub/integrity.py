"""Files that are whole or absent, and weights that are finite: the integrity rules every mmsdk writer follows.

- :func:`atomic_write` (and `atomic_write_bytes` / `atomic_write_text`) writes a temporary file in the destination
  directory, fsyncs it, renames it over the destination and fsyncs the directory, so a crash at any moment leaves
  either the old file or the new one, never a truncated mix (a rename is atomic only within one filesystem, which
  is why the temporary file is not in $TMPDIR).
- :func:`sha256_of` / :func:`write_checksum` / :func:`read_checksum`: a `<file>.sha256` sidecar in `sha256sum`
  format, checked before a checkpoint is trusted.
- :func:`first_nonfinite` names the first tensor of a state dict holding NaN or Inf: nothing non-finite is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

CHECKSUM_SUFFIX = ".sha256"
_CHUNK = 1 << 20


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Has `write(temporary_path)` write the file, then makes it `path` atomically and durably (fsync, rename,
    fsync of the directory); the temporary file lies beside `path` and is removed if anything fails.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of bytes."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_of(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_path(path: str | Path) -> Path:
    """The sidecar holding the checksum of `path` (`model.ckpt` -> `model.ckpt.sha256`)."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_checksum(path: str | Path, digest: str) -> Path:
    """Writes the `sha256sum`-format sidecar of `path` atomically."""
    path = Path(path)
    return atomic_write_text(checksum_path(path), f"{digest}  {path.name}\n")


def read_checksum(path: str | Path) -> str | None:
    """The digest recorded in the sidecar of `path`, or None when there is no (readable) sidecar."""
    sidecar = checksum_path(path)
    try:
        text = sidecar.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split(maxsplit=1)[0] if text else ""
    return digest if len(digest) == 64 else None


def first_nonfinite(state: Mapping[str, object] | Iterable[tuple[str, object]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or Inf, or None when all are finite."""
    items = state.items() if isinstance(state, Mapping) else state
    for name, value in items:
        finite = not (isinstance(value, Tensor) and value.is_floating_point()) or bool(torch.isfinite(value).all())
        if not finite:
            return name
    return None


def nonfinite_summary(name: str, tensor: Tensor) -> str:
    """`encoder.blocks.0.attn.qkv.weight (64, 16): 1024 NaN, 0 Inf` for error messages."""
    values = tensor.detach()
    nan = int(torch.isnan(values).sum())
    inf = int(torch.isinf(values).sum())
    return f"{name} {tuple(values.shape)}: {nan} NaN, {inf} Inf"
