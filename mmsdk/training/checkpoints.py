"""Training checkpoints that a crash cannot corrupt and a hostile file cannot use to run code.

- :class:`SafeCheckpointIO` is the Lightning checkpoint I/O of every mmsdk Trainer: it refuses to write weights that
  hold NaN or Inf, writes each checkpoint atomically in its own directory (temporary file, fsync, rename, fsync of
  the directory) with a `<name>.sha256` sidecar, and loads with `weights_only=True` and an explicit allow-list, so
  neither `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` nor a crafted pickle can execute anything.
- :func:`load_checkpoint` checks the sidecar, the unpickling and the contents, and names the file in every error.
- :func:`resolve_resume` turns `--resume` into a checkpoint: a file as given, or a run directory's newest good
  checkpoint (corrupt or truncated ones are skipped with a warning naming them).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from mmsdk.hub.integrity import (
    atomic_write,
    checksum_path,
    first_nonfinite,
    nonfinite_summary,
    read_checksum,
    sha256_of,
    write_checksum,
)
from mmsdk.training.guards import NonFiniteGuard

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".ckpt"
# Non-tensor, non-container types that mmsdk's own checkpoints may hold (everything else is refused on load).
ALLOWED_GLOBALS: tuple[Any, ...] = ()


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: missing checksum match, unreadable, unsafe or non-finite."""


def check_finite(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raises CheckpointError when the checkpoint's weights hold NaN or Inf."""
    state = checkpoint.get("state_dict", {})
    bad = first_nonfinite(state)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path}: the weights are not finite ({nonfinite_summary(bad, state[bad])})")


def load_checkpoint(path: str | Path, map_location: Any = None) -> dict[str, Any]:
    """Loads a training checkpoint (or a bare state dict of tensors) safely.

    Raises:
        FileNotFoundError: when `path` does not exist.
        CheckpointError: for an empty, truncated or corrupted file (checksum mismatch or unreadable archive), a file
            that needs code to unpickle (refused: only tensors, containers and plain values load), one that is not a
            Lightning checkpoint, or non-finite weights. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was interrupted")
    expected = read_checksum(path)
    if expected is not None and sha256_of(path) != expected:
        raise CheckpointError(
            f"checkpoint {path} does not match its checksum ({checksum_path(path).name}): truncated or corrupted"
        )
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # garbage bytes ("Unsupported operand"), not a refused object
            raise CheckpointError(f"checkpoint {path} cannot be read ({size} bytes): not a valid archive") from error
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects that need code to load ({reason}); mmsdk loads only "
            "tensors and plain values from checkpoints"
        ) from error
    except Exception as error:  # damaged bytes make the unpickler fail in many ways (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} cannot be read ({size} bytes): {type(error).__name__}") from error
    if isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        check_finite({"state_dict": checkpoint}, path)  # bare weights: how ddp_spawn hands them back to the parent
        return checkpoint
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no 'state_dict' entry)")
    check_finite(checkpoint, path)
    return checkpoint


def verify_checkpoint(path: str | Path) -> str | None:
    """None when `path` is a good checkpoint, else why not (one line)."""
    try:
        expected = read_checksum(path)
        if expected is not None:  # the sidecar proves the bytes; unpickling is checked again when resuming
            if sha256_of(path) == expected:
                return None
            return f"{path} does not match its checksum: truncated or corrupted"
        load_checkpoint(path, map_location="cpu")
    except (CheckpointError, FileNotFoundError, OSError) as error:
        return str(error)
    return None


def resolve_resume(path: str | Path, stage: str | None = None) -> str:
    """The checkpoint to resume from: `path` itself when it is a file, or the newest good checkpoint of a run
    directory (searched recursively; newest by modification time, `last.ckpt` winning ties). With a `stage`, a run
    directory's `checkpoints/<stage>` folder is searched when it has one (pretraining and fine-tuning runs that
    share a root keep their checkpoints apart).

    Raises:
        FileNotFoundError: when `path` does not exist, or a directory holds no checkpoint.
        CheckpointError: when every checkpoint of the directory is bad (each is named).
    """
    path = Path(path)
    if path.is_file():
        return str(path)
    if not path.is_dir():
        raise FileNotFoundError(f"resume: no checkpoint file or run directory at {path}")
    if stage is not None and (path / "checkpoints" / stage).is_dir():
        path = path / "checkpoints" / stage
    found = [p for p in path.rglob(f"*{CHECKPOINT_SUFFIX}") if p.is_file() and not p.name.startswith(".")]
    if not found:
        raise FileNotFoundError(f"resume: the directory {path} holds no {CHECKPOINT_SUFFIX} checkpoint")
    found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)
    problems = []
    for candidate in found:
        problem = verify_checkpoint(candidate)
        if problem is None:
            for skipped in problems:
                logger.warning("resume: skipping a bad checkpoint: %s", skipped)
            logger.info("resuming from %s", candidate)
            return str(candidate)
        problems.append(problem)
    raise CheckpointError(f"resume: no good checkpoint in {path}: " + "; ".join(problems))


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O: finite weights only, atomic durable writes with a checksum, safe loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"SafeCheckpointIO takes no storage_options, got {storage_options!r}")
        check_finite(checkpoint, path)
        path = Path(path)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
        write_checksum(path, sha256_of(path))  # read back from the disk: the sidecar vouches for what is there

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        if weights_only is False:
            logger.warning("weights_only=False was asked for %s; mmsdk loads checkpoints with weights_only=True", path)
        return load_checkpoint(path, map_location=map_location)

    def remove_checkpoint(self, path: Any) -> None:
        path = Path(path)
        path.unlink(missing_ok=True)
        checksum_path(path).unlink(missing_ok=True)
        logger.debug("removed checkpoint %s", path)


class GoodCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that writes nothing while the run is in a streak of skipped non-finite steps, so the
    checkpoints it keeps (and rotates) are always ones taken after a good step."""

    def _should_skip_saving_checkpoint(self, trainer: L.Trainer) -> bool:
        diverging = any(isinstance(c, NonFiniteGuard) and c.consecutive > 0 for c in trainer.callbacks)
        return diverging or super()._should_skip_saving_checkpoint(trainer)
