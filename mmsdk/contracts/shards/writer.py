"""Writing shards: any mmsdk dataset (every split of a job) to litdata chunks and a manifest, written last
(see :mod:`mmsdk.contracts.shards`)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from mmsdk.contracts.shards.manifest import (
    _SCALARS,
    MANIFEST,
    SHARD_FORMAT,
    SPLITS,
    _adapters,
    _augment_spec,
    _collate_spec,
    _jsonable,
    _litdata,
    _mmsdk_version,
    logger,
)
from mmsdk.contracts.splits import DataSplits, Stage


def _wrapped(dataset: Any, depth: int = 8) -> list[Any]:
    """The dataset and those it wraps (wrappers keep theirs in `.dataset`: subsets, inputs-only views), outermost
    first, down to the first one that can redo its augmentation (`shard_augmentation`)."""
    chain = [dataset]
    while len(chain) < depth and not hasattr(chain[-1], "shard_augmentation"):
        inner = getattr(chain[-1], "dataset", None)
        if inner is None:
            break
        chain.append(inner)
    return chain


def _drawn_per_read(dataset: Any) -> str | None:
    """What a dataset draws at random on every read: its own `per_read_randomness`, else an augmentation when it
    has an `augment`."""
    if hasattr(dataset, "per_read_randomness"):
        return dataset.per_read_randomness
    return "an augmentation" if getattr(dataset, "augment", None) is not None else None


def _plain(dataset: Dataset, split: str) -> tuple[Dataset, dict[str, Any] | None]:
    """The dataset to write and the record of the augmentation to redo when reading (`shard_augmentation()`), else
    (dataset, None), with a warning when a dataset augments items in a way the shards cannot redo."""
    chain = _wrapped(dataset)
    if hasattr(chain[-1], "shard_augmentation"):
        plain, augment = chain[-1].shard_augmentation()
        for wrapper in reversed(chain[:-1]):  # the same wrappers around the plain dataset
            plain, plain.dataset = copy.copy(wrapper), plain
        return plain, None if augment is None else _augment_spec(augment, split)
    random = [(type(d).__name__, _drawn_per_read(d)) for d in chain if _drawn_per_read(d)]
    if random:
        logger.warning(
            "shards: the %s split draws %s anew when an item is read (%s); the shards hold one draw, the same every "
            "epoch. To draw anew each epoch, write them without it and set the streamed split's `transform`",
            split, random[0][1], random[0][0])  # fmt: skip
    return dataset, None


def _items(dataset: Dataset) -> Iterator[Any]:
    if isinstance(dataset, IterableDataset):
        yield from dataset
    else:
        for index in range(len(dataset)):  # type: ignore[arg-type]
            yield dataset[index]


def _leaves_ok(item: Any, split: str, index: int) -> Any:
    """The item with numpy arrays as tensors; refuses leaves litdata would pickle (arbitrary objects)."""
    if isinstance(item, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(item))
    if isinstance(item, (torch.Tensor, *_SCALARS)):
        return item
    if isinstance(item, np.generic):
        return item.item()
    if isinstance(item, Mapping):
        return {k: _leaves_ok(v, split, index) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return type(item)(_leaves_ok(v, split, index) for v in item)
    raise ValueError(
        f"shards: item {index} of the {split} split holds a {type(item).__name__}; shards store tensors, arrays, "
        "numbers and strings, in dicts, lists and tuples"
    )


def _write_split(dataset: Dataset, directory: Path, split: str, chunk_bytes: str, progress: Any) -> int:
    from litdata.streaming.writer import BinaryWriter

    directory.mkdir(parents=True)
    writer = BinaryWriter(str(directory), chunk_bytes=chunk_bytes)
    total = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    task = progress.add_task(f"{split:5}", total=total) if progress is not None else None
    count = 0
    for count, item in enumerate(_items(dataset), start=1):
        writer[count - 1] = _leaves_ok(item, split, count - 1)
        if task is not None:
            progress.advance(task)
    if count == 0:
        raise ValueError(f"shards: the {split} split is empty; nothing to write")
    writer.done()
    writer.merge()
    return count


def write_shards(
    splits: DataSplits,
    output: str | os.PathLike,
    model_config: Any,
    stage: Stage,
    data: Mapping[str, Any] | None = None,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Writes a job's datasets to a shard directory that `build_data({"shards": DIR, ...})` streams.

    Args:
        splits: the datasets (e.g. from :func:`~mmsdk.contracts.data.build_data`); every split present is written.
        output: the shard directory; must not exist, be empty, or (with `overwrite`) hold mmsdk shards.
        model_config: the ModelConfig the data was built for; its adapters are recorded and checked on reading.
        stage: "pretrain" (items are inputs) or "finetune" (items are (inputs, targets)).
        data: the recipe's data section, recorded for reference (a reader warns about fields that differ).
        chunk_bytes: the size of one chunk file ("64MB": what litdata streams well from object stores).
        overwrite: replace an existing shard directory.
        progress: show a progress bar per split.

    Returns:
        The shard directory.

    Raises:
        ValueError: for a non-empty directory that is not shards, an empty split, items of unsupported types, a
            collate function outside mmsdk, or a call from inside a distributed job.
    """
    _litdata()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise ValueError(
            f"shards: write_shards runs in one process, not in a distributed job (WORLD_SIZE={world}); write them "
            "once with `mmsdk shard`, then train on them from every rank"
        )
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        if not (output / MANIFEST).is_file():
            raise ValueError(f"shards: {output} exists and is not an mmsdk shard directory; choose an empty one")
        if not overwrite:
            raise ValueError(f"shards: {output} already holds shards; pass overwrite=True (--overwrite) to replace")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        records = {}
        with _progress_bar(progress) as bar:
            for split in SPLITS:
                dataset = getattr(splits, split)
                if dataset is None:
                    continue
                collate = _collate_spec(dataset, split)
                plain, augment = _plain(dataset, split)
                samples = _write_split(plain, staging / split, split, chunk_bytes, bar)
                records[split] = {"samples": samples, "collate": collate, "augment": augment}
        manifest = {
            "format": SHARD_FORMAT,
            "mmsdk_version": _mmsdk_version(),
            "litdata_version": _litdata().__version__,
            "stage": stage,
            "modalities": _adapters(model_config),
            "batch_size": splits.batch_size,
            "info": _jsonable(splits.info, "the data builder's info"),
            "data": _jsonable({k: v for k, v in (data or {}).items() if k != "shards"}, "the data section"),
            "splits": records,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))  # last: its presence means complete
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %s: %s", output, ", ".join(f"{s} {r['samples']} samples" for s, r in records.items()))
    return output


def _progress_bar(show: bool) -> Any:
    if not show:
        return contextlib.nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("writing {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, transient=False)
