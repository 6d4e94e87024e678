"""Reading shards: the splits of a shard directory as streaming datasets, checked against the model and the stage
(see :mod:`mmsdk.contracts.shards`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from mmsdk.contracts.shards.manifest import (
    _augment_from,
    _check_model,
    _collate_from,
    _jsonable,
    _litdata,
    check_split_files,
    logger,
    read_manifest,
)
from mmsdk.contracts.splits import DataSplits, Stage


def read_shards(
    directory: str | os.PathLike, model_config: Any, stage: Stage, data: Mapping[str, Any] | None = None
) -> DataSplits:
    """The splits of a shard directory as streaming datasets, checked against the model and the stage.

    Args:
        directory: a directory written by :func:`write_shards` (`mmsdk shard`).
        model_config: the model that will train on them; its adapters must be the ones the shards were written for.
        stage: "pretrain" reads the inputs of fine-tuning shards too; "finetune" needs fine-tuning shards.
        data: the rest of the recipe's data section: `batch_size` overrides the manifest's; other fields that differ
            from the ones the shards were written with are reported (a warning), since the shards already hold
            the items they describe.

    Raises:
        ValueError, FileNotFoundError: as :func:`read_manifest`, :func:`check_split_files`, and for shards of another
            model or stage.
    """
    _litdata()
    manifest = read_manifest(directory)
    _check_model(manifest, model_config, stage)
    data = dict(data or {})
    batch_size = int(data.pop("batch_size", manifest.raw["batch_size"]))
    written = manifest.raw.get("data", {})
    differ = sorted(k for k in data if k in written and _jsonable(data[k], k) != written[k])
    if differ:
        logger.warning(
            "shards: %s were written with data %s; the recipe's other values are not used (the items are in the "
            "shards)",
            manifest.directory,
            ", ".join(f"{k}={written[k]!r}" for k in differ),
        )
    inputs_only = stage == "pretrain" and manifest.stage == "finetune"
    datasets = {}
    for split, record in manifest.raw["splits"].items():
        check_split_files(manifest.directory / split)
        datasets[split] = ShardDataset(
            manifest.directory / split, record["samples"], record.get("collate"), inputs_only, record.get("augment")
        )
    info = {**manifest.raw.get("info", {}), "shards": str(manifest.directory)}
    return DataSplits(datasets["train"], datasets.get("val"), datasets.get("test"), batch_size, info)


def first_of(item: Any) -> Any:
    """The inputs of an (inputs, targets) item (a picklable transform for the loader workers)."""
    return item[0]


def owned(item: Any) -> Any:
    """The item with every tensor copied out of the chunk's read-only buffer (in-place ops on it are then safe)."""
    if isinstance(item, torch.Tensor):
        return item.clone()
    if isinstance(item, Mapping):
        return {k: owned(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return type(item)(owned(v) for v in item)
    return item


class ShardDataset(IterableDataset):
    """One split of a shard directory, streamed by litdata.

    The streaming dataset is created when a loader is made (:meth:`streaming_loader`), inside the training process,
    so that it sees the distributed group that Lightning has set up by then: each rank streams its own chunks, and
    each loader worker its own part of them. Indexing (`dataset[i]`) and plain iteration read the whole split in
    order, in this process.

    Args:
        directory: the split directory (index.json + chunks).
        samples: its item count (from the manifest).
        collate: the manifest's collate record (None: default collation).
        inputs_only: yield the inputs of (inputs, targets) items.
        augment: the manifest's record of the split's random augmentation, redrawn at every read (None: none).

    Attributes:
        transform: a picklable function of your own applied to every item as it is read (in the loader workers),
            after the recorded augmentation and `inputs_only`. None: nothing more.
    """

    def __init__(
        self,
        directory: Path,
        samples: int,
        collate: dict[str, Any] | None,
        inputs_only: bool,
        augment: dict[str, Any] | None = None,
    ) -> None:
        self.directory, self.samples, self.inputs_only = Path(directory), samples, inputs_only
        self.collate_fn = _collate_from(collate)
        self.augment = _augment_from(augment)
        self.transform: Callable[[Any], Any] | None = None
        self._local: Any = None

    def __len__(self) -> int:
        return self.samples

    def _stream(self, shuffle: bool, seed: int, drop_last: bool | None = None) -> Any:
        transforms = [owned, *([self.augment] if self.augment is not None else [])]
        transforms += [first_of] if self.inputs_only else []
        transforms += [self.transform] if self.transform is not None else []
        return _litdata().StreamingDataset(
            str(self.directory), shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transforms or None
        )

    def __getitem__(self, index: int) -> Any:
        if not -self.samples <= index < self.samples:
            raise IndexError(f"shards: index {index} out of range for {self.samples} samples in {self.directory}")
        key = (self.transform, self.augment, self.inputs_only)
        if self._local is None or self._local[0] != key:
            self._local = (key, self._stream(shuffle=False, seed=0, drop_last=False))
        return self._local[1][index % self.samples]

    def __iter__(self) -> Iterator[Any]:
        for index in range(self.samples):
            yield self[index]

    def streaming_loader(
        self, batch_size: int, num_workers: int = 0, shuffle: bool = False, seed: int = 0, **kwargs: Any
    ) -> Any:
        """A litdata `StreamingDataLoader` over this split for this rank (its `state_dict` resumes mid-epoch).

        Under several ranks the split is cut so that every rank streams the same number of items: the few left
        over (fewer than ranks × workers × batch size) are dropped for the epoch, never repeated, as litdata does in
        a distributed run.
        """
        dataset = self._stream(shuffle=shuffle, seed=seed)
        # a private generator: starting the workers never draws from the global RNG (masks, dropout resume exactly)
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        return _litdata().StreamingDataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=self.collate_fn, **kwargs
        )
