"""The manifest of a shard directory: what it records, how it is read and checked, and the checks of a split's files
(see :mod:`mmsdk.contracts.shards`)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmsdk.contracts.splits import Stage

logger = logging.getLogger("mmsdk.contracts.shards")
if logging.getLogger("litdata").level == logging.NOTSET:  # its INFO lines (cache sizes, mmap modes) are not news
    logging.getLogger("litdata").setLevel(logging.WARNING)
# litdata wraps each chunk's bytes without a copy (PyTorch warns once per process); `owned` copies every item
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)
# Lightning's caution about `__len__` on iterable datasets: litdata gives each rank and worker its own items
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined", category=UserWarning)

MANIFEST = "mmsdk-shards.json"
SHARD_FORMAT = 1
"""Bumped when the layout or the manifest changes incompatibly; a reader refuses any other value."""
SPLITS = ("train", "val", "test")
_SCALARS = (bool, int, float, str)


def _litdata() -> Any:
    try:
        import litdata
    except ImportError:  # pragma: no cover - the streaming extra is part of dev
        raise ImportError("shards need litdata: pip install 'mmsdk[streaming]'") from None
    return litdata


def _mmsdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmsdk")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "unknown"


# --- what the manifest records --------------------------------------------------------------------------------------


def _adapters(model_config: Any) -> dict[str, dict[str, Any]]:
    """{modality: {"adapter": name, "config": the adapter config's fields}} of a ModelConfig."""
    return {
        name: {"adapter": m.adapter, "config": _jsonable(dict(m.adapter_config or {}), f"adapter_config of {name}")}
        for name, m in sorted(model_config.modalities.items())
    }


def _jsonable(value: Any, where: str) -> Any:
    """`value` as plain JSON (tuples → lists, numpy and 0-d tensors → Python scalars, arrays → lists)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"shards: {where} holds a {type(value).__name__}, which the manifest (JSON) cannot record")


def _rebuildable(target: Any) -> bool:
    """Whether a manifest may name `target`: an mmsdk function or class marked `shard_rebuildable` (a manifest from
    elsewhere must not be able to call anything else)."""
    module = getattr(target, "__module__", "") or ""
    return module.startswith("mmsdk.") and getattr(target, "shard_rebuildable", False) is True


def _collate_spec(dataset: Dataset, split: str) -> dict[str, Any] | None:
    """How to rebuild a dataset's `collate_fn` when reading: an mmsdk function, or an mmsdk class and its fields."""
    collate = getattr(dataset, "collate_fn", None)
    if collate is None:
        return None
    target = collate if callable(collate) and hasattr(collate, "__qualname__") else type(collate)
    module, name = target.__module__, target.__qualname__
    if not _rebuildable(target):
        raise ValueError(
            f"shards: the {split} dataset collates with {module}.{name}, which is not one of mmsdk's shard-rebuildable "
            "collate functions (stream the items and collate them in your own DataLoader instead)"
        )
    fields = {} if target is collate else _jsonable(vars(collate), f"{split} collate_fn")
    return {"name": f"{module}:{name}", "fields": fields}


def _resolve(spec: dict[str, Any], what: str) -> Any:
    module, _, name = spec["name"].partition(":")
    if not module.startswith("mmsdk."):
        raise ValueError(f"shards: the manifest names {what} {spec['name']!r}, outside mmsdk; refused")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part, None)
    if not _rebuildable(target):
        raise ValueError(f"shards: the manifest names {what} {spec['name']!r}, which shards may not rebuild; refused")
    return target


def _collate_from(spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return None
    target = _resolve(spec, "collate function")
    if not spec.get("fields") and not isinstance(target, type):
        return target
    collate = target.__new__(target)
    collate.__dict__.update(spec["fields"])
    return collate


def _augment_spec(augment: Any, split: str) -> dict[str, Any]:
    """The manifest record of a read-time augmentation: an mmsdk class and the fields of its `spec()`."""
    target = type(augment)
    if not _rebuildable(target) or not callable(getattr(augment, "spec", None)):
        raise ValueError(f"shards: the {split} augmentation {target.__qualname__} is not an mmsdk augmentation")
    return {"name": f"{target.__module__}:{target.__qualname__}", "fields": _jsonable(augment.spec(), "augment")}


def _augment_from(spec: dict[str, Any] | None) -> Any:
    return None if spec is None else _resolve(spec, "augmentation")(**spec["fields"])


@dataclass(frozen=True)
class ShardManifest:
    """The parsed manifest of a shard directory (see the module docstring for the fields)."""

    directory: Path
    raw: dict[str, Any]

    @property
    def stage(self) -> str:
        return self.raw["stage"]

    def samples(self, split: str) -> int:
        return int(self.raw["splits"][split]["samples"])


def read_manifest(directory: str | os.PathLike) -> ShardManifest:
    """The manifest of a shard directory, with its format checked.

    Raises:
        FileNotFoundError: no such directory.
        ValueError: no manifest (not mmsdk shards, or an unfinished write), an unreadable one, or another format.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"shards: no such directory: {directory}")
    path = directory / MANIFEST
    if not path.is_file():
        found = "litdata shards without mmsdk's manifest" if (directory / "index.json").is_file() else "no shards"
        raise ValueError(
            f"shards: {directory} has no {MANIFEST} ({found}); write shards with `mmsdk shard` (a write that was "
            "interrupted leaves no manifest)"
        )
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"shards: {path} is not a readable manifest ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != SHARD_FORMAT:
        version = raw.get("mmsdk_version", "unknown") if isinstance(raw, dict) else "unknown"
        found = raw.get("format") if isinstance(raw, dict) else None
        raise ValueError(
            f"shards: {directory} is shard format {found!r} (written by mmsdk {version}); this mmsdk "
            f"({_mmsdk_version()}) reads format {SHARD_FORMAT}: write the shards again with this version"
        )
    if raw.get("mmsdk_version") != _mmsdk_version():
        logger.info(
            "shards in %s were written by mmsdk %s (format %d, readable)",
            directory,
            raw.get("mmsdk_version"),
            SHARD_FORMAT,
        )
    return ShardManifest(directory, raw)


def check_split_files(directory: Path) -> None:
    """Refuses a split directory whose files are not exactly litdata's index and its complete chunks.

    Raises:
        ValueError: a missing or unreadable index, an index of another layout, a chunk missing or of another size
            than the index records (cut short), or files of another format beside the chunks.
    """
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise ValueError(f"shards: {directory} has no index.json; the split was not written by `mmsdk shard`")
    try:
        index = json.loads(index_path.read_text())
        chunks = {c["filename"]: int(c["chunk_bytes"]) for c in index["chunks"]}
        loader = index["config"]["item_loader"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"shards: {index_path} is not a litdata index ({type(err).__name__}: {err})") from None
    if loader != "PyTreeLoader":
        raise ValueError(f"shards: {index_path} indexes {loader} chunks; mmsdk writes PyTreeLoader chunks")
    for name, size in chunks.items():
        path = directory / name
        if not path.is_file():
            raise ValueError(f"shards: chunk {path} is missing (the index lists it)")
        actual = path.stat().st_size
        if actual != size:
            raise ValueError(
                f"shards: chunk {path} is {actual} bytes but its index records {size}: the file was cut short or "
                "changed; copy it again or write the shards again"
            )
    strangers = sorted(
        p.name
        for p in directory.iterdir()
        if p.name not in chunks and p.name != "index.json" and not p.name.startswith(".")
    )
    if strangers:
        raise ValueError(
            f"shards: {directory} mixes other files with its chunks ({', '.join(strangers[:5])}"
            f"{', ...' if len(strangers) > 5 else ''}); one split directory holds one shard set of one format"
        )


def _check_model(manifest: ShardManifest, model_config: Any, stage: Stage) -> None:
    written = manifest.raw["modalities"]
    expected = _adapters(model_config)

    def adapters(record: dict[str, Any]) -> str:
        return ", ".join(v["adapter"] if k == v["adapter"] else f"{k}: {v['adapter']}" for k, v in record.items())

    if adapters(written) != adapters(expected):
        raise ValueError(
            f"shards: {manifest.directory} was written for a model of {adapters(written)}, this model has "
            f"{adapters(expected)}: write shards for this model"
        )
    for name, record in expected.items():
        theirs, ours = written[name]["config"], record["config"]
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in differ)
            raise ValueError(
                f"shards: {manifest.directory} was written for another {record['adapter']} configuration of "
                f"{name!r} ({detail}); the items would not fit this model: write the shards again"
            )
    if stage == "finetune" and manifest.stage != "finetune":
        raise ValueError(
            f"shards: {manifest.directory} holds pretraining items (inputs only); fine-tuning needs shards written "
            "with --stage finetune"
        )
