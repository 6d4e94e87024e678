"""Datasets bigger than memory: any mmsdk dataset written once to shards, then streamed from them by every rank.

The shards are litdata's chunked binary format (Lightning's own streaming format), one litdata directory per split
beside a manifest that says what wrote them::

    DIR/mmsdk-shards.json      format, mmsdk version, stage, the model's adapters and their configs, batch size,
                               the builder's info (scalers, class names), per split: samples and collate function
    DIR/train/index.json       litdata's index of the split's chunks
    DIR/train/chunk-0-0.bin    the items, serialized as they came out of the dataset (tensors, dicts, tuples)
    DIR/val/..., DIR/test/...

Why litdata and not WebDataset: the loader must shard across ranks × workers, shuffle the same way on every run,
and resume exactly mid-epoch from a checkpoint. litdata's `StreamingDataset` assigns chunks to ranks and workers and
shuffles chunks and items from a seed and the epoch, and its `StreamingDataLoader` has a `state_dict` that
Lightning saves in every checkpoint and restores on resume. WebDataset streams tar files through pipeline stages;
its shard-to-worker split is the user's to get right (`nodesplitter`, `split_by_worker`), its shuffle is a buffer
seeded per worker, and it has no loader state, so a resumed run starts its epoch again with another order.

Items are written as the dataset returns them. A dataset that draws a random augmentation when read says how to
redo it (`shard_augmentation()`: the same items without it, and the augmentation as an mmsdk object with a `spec()`
of plain fields): the plain items are written, the augmentation is recorded in the manifest and drawn anew at every
read, in the loader workers. Any other augmenting dataset (an `augment` attribute) is written with one draw frozen,
and the writer warns.

Reading checks the manifest first and refuses, with the reason: a directory without one (not mmsdk shards, or a
write that did not finish: the manifest is written last), another shard format, shards written for other adapters or
adapter settings, fine-tuning from pretraining shards (no targets), files of another format mixed into a split, and
a chunk file cut short (named, with its expected size).
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from mmsdk.contracts.data import DataSplits, Stage

logger = logging.getLogger(__name__)
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


def _collate_spec(dataset: Dataset, split: str) -> dict[str, Any] | None:
    """How to rebuild a dataset's `collate_fn` when reading: an mmsdk function, or an mmsdk class and its fields."""
    collate = getattr(dataset, "collate_fn", None)
    if collate is None:
        return None
    target = collate if callable(collate) and hasattr(collate, "__qualname__") else type(collate)
    module, name = target.__module__, target.__qualname__
    if not module.startswith("mmsdk.") or "<" in name:
        raise ValueError(
            f"shards: the {split} dataset collates with {module}.{name}, which is not part of mmsdk; shards rebuild "
            "only mmsdk's collate functions (stream the items and collate them in your own DataLoader instead)"
        )
    fields = {} if target is collate else _jsonable(vars(collate), f"{split} collate_fn")
    return {"name": f"{module}:{name}", "fields": fields}


def _resolve(spec: dict[str, Any], what: str) -> Any:
    module, _, name = spec["name"].partition(":")
    if not module.startswith("mmsdk."):
        raise ValueError(f"shards: the manifest names {what} {spec['name']!r}, outside mmsdk; refused")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
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
    if not target.__module__.startswith("mmsdk.") or not callable(getattr(augment, "spec", None)):
        raise ValueError(f"shards: the {split} augmentation {target.__qualname__} is not an mmsdk augmentation")
    return {"name": f"{target.__module__}:{target.__qualname__}", "fields": _jsonable(augment.spec(), "augment")}


def _augment_from(spec: dict[str, Any] | None) -> Any:
    return None if spec is None else _resolve(spec, "augmentation")(**spec["fields"])


def _plain(dataset: Dataset, split: str) -> tuple[Dataset, dict[str, Any] | None]:
    """The dataset to write and the augmentation to redo when reading (`shard_augmentation()`), else (dataset, None)
    with a warning when the dataset augments items in a way the shards cannot redo."""
    chain = [dataset]  # wrappers that keep the dataset they wrap in `.dataset` (subsets, inputs-only views)
    while getattr(chain[-1], "shard_augmentation", None) is None and getattr(chain[-1], "dataset", None) is not None:
        chain.append(chain[-1].dataset)
    if getattr(chain[-1], "shard_augmentation", None) is not None:
        plain, augment = chain[-1].shard_augmentation()
        for wrapper in reversed(chain[:-1]):  # the same wrappers around the plain dataset
            plain, plain.dataset = copy.copy(wrapper), plain
        return plain, None if augment is None else _augment_spec(augment, split)
    augmenting = _augmenting(dataset)
    if augmenting is not None:
        logger.warning(
            "shards: the %s split augments its items when they are read (%s.augment); the shards hold one draw of "
            "it, the same every epoch. To augment anew each epoch, write them without augmentation and set the "
            "streamed split's `transform`", split, augmenting)  # fmt: skip
    return dataset, None


# --- writing --------------------------------------------------------------------------------------------------------


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


def _augmenting(dataset: Any) -> str | None:
    """The name of a dataset (or of one it wraps) that draws a random augmentation per read, else None."""
    for _ in range(8):  # wrappers keep the dataset they wrap in `.dataset`
        if getattr(dataset, "augment", None) is not None:
            return type(dataset).__name__
        dataset = getattr(dataset, "dataset", None)
        if dataset is None:
            return None
    return None


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


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(show: bool) -> Any:
    if not show:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("writing {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, transient=False)


# --- reading --------------------------------------------------------------------------------------------------------


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
        transform: a picklable function applied to every item as it is read (in the loader workers), after
            `inputs_only`: the place for random augmentations, which the shards cannot hold. None: items as stored.
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

        Under several ranks the split is cut so that every rank streams the same number of items: the
        `len % world_size` left over are dropped (never repeated), as litdata does in a distributed run.
        """
        dataset = self._stream(shuffle=shuffle, seed=seed)
        # a private generator: starting the workers never draws from the global RNG (masks, dropout resume exactly)
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        return _litdata().StreamingDataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=self.collate_fn, **kwargs
        )
