"""Data plumbing for the training systems: datasets from arrays, and a data module whose order resumes exactly.

The training order is a pure function of (seed, epoch): :class:`ResumableSampler` shuffles with a generator seeded
from both, and :class:`ResumableDataLoader` records how many batches of the current epoch were consumed. Lightning
stores that position in its checkpoints (the loader implements `state_dict`/`load_state_dict`), so a run resumed
from a mid-epoch checkpoint sees exactly the batches the uninterrupted run would have seen.

Batches are either a Tensor (inputs) or a tuple/list `(inputs, targets)`. Inputs may also be an object with
`batch_size` and `device` attributes (e.g. a packed batch of variable-length series that the adapter tokenizes);
a dataset with a `collate_fn` attribute has its loaders collate with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sized
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

logger = logging.getLogger(__name__)

DataLike = Dataset | Tensor | np.ndarray | tuple | list


def _to_tensor(value: Any, role: str) -> Tensor:
    """A tensor from an array-like; float64 becomes float32 (the models' dtype)."""
    if not isinstance(value, (Tensor, np.ndarray)):
        raise ValueError(f"as_dataset: {role} must be a Tensor or numpy array, got {type(value).__name__}")
    tensor = torch.as_tensor(value)
    if tensor.dtype == torch.float64:
        tensor = tensor.float()
    if tensor.dim() == 0:
        raise ValueError(f"as_dataset: {role} must have a leading sample dimension, got a scalar")
    return tensor


def as_dataset(data: DataLike) -> Dataset:
    """Turns inputs, or an `(inputs, targets)` pair, into a Dataset; Datasets pass through.

    Args:
        data: a Dataset; a Tensor/ndarray of inputs (first axis = samples); or a tuple/list `(inputs, targets)`.

    Raises:
        ValueError: for empty data, inputs and targets of different lengths, or unsupported types.
    """
    if isinstance(data, Dataset):
        if isinstance(data, Sized) and len(data) == 0:
            raise ValueError(f"as_dataset: the {type(data).__name__} is empty (0 samples)")
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"as_dataset: expected (inputs, targets), got a {type(data).__name__} of {len(data)}")
        inputs, targets = _to_tensor(data[0], "inputs"), _to_tensor(data[1], "targets")
        if len(inputs) != len(targets):
            raise ValueError(f"as_dataset: {len(inputs)} inputs but {len(targets)} targets; they must match")
        tensors = (inputs, targets)
    else:
        tensors = (_to_tensor(data, "inputs"),)
    if len(tensors[0]) == 0:
        raise ValueError(f"as_dataset: the data is empty (inputs of shape {tuple(tensors[0].shape)})")
    return TensorDataset(*tensors)


class ResumableSampler(DistributedSampler):
    """Seeded, epoch-aware sampler (order = f(seed, epoch)) that can start an epoch part-way through.

    It is a :class:`~torch.utils.data.DistributedSampler` (one replica by default), so Lightning keeps it in
    distributed runs instead of replacing it (`use_distributed_sampler`), and every rank draws its own shard of
    the same permutation: rank r gets positions r, r + R, r + 2R, ... of it (R = `num_replicas`), so batch k of
    the R ranks together is batch k of one process whose batches are R times larger.

    Args:
        dataset: the (sized) dataset to index.
        shuffle: permute (with a generator seeded by seed + epoch) or keep the dataset's order.
        seed: the permutation's seed.
        num_replicas: the number of ranks sharing an epoch.
        rank: this rank.
        drop_last: when the dataset does not divide by `num_replicas`, drop the permutation's last
            `len(dataset) % num_replicas` indices (no sample repeats); otherwise (DistributedSampler's default)
            repeat its first ones so that every rank gets the same number of indices.
    """

    def __init__(
        self,
        dataset: Dataset,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (and so the order); a pending mid-epoch start only applies to its own epoch."""
        if epoch != self.epoch:
            self._skip = 0
        super().set_epoch(epoch)

    def resume(self, epoch: int, skip: int) -> None:
        """Makes the next iteration produce epoch `epoch`'s order without its first `skip` indices."""
        super().set_epoch(epoch)
        self._skip = skip

    @property
    def pending_skip(self) -> int:
        """Indices the next iteration skips."""
        return self._skip

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class _CountingIterator:
    """Wraps a DataLoader iterator and counts the batches it hands out (in the main process)."""

    def __init__(self, iterator: Iterator, loader: ResumableDataLoader) -> None:
        self._iterator, self._loader = iterator, loader

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._iterator)
        self._loader._consumed += 1
        return batch

    def __len__(self) -> int:
        return len(self._loader)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` that saves its position inside the epoch.

    `state_dict()` gives `{"epoch", "batches"}` (batches consumed so far in that epoch); `load_state_dict`
    makes the next iteration continue from there. Lightning calls both for its training loaders.
    """

    sampler: ResumableSampler

    def __init__(self, dataset: Dataset, batch_size: int, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._consumed = 0

    def __iter__(self) -> _CountingIterator:
        self._consumed = self.sampler.pending_skip // (self.batch_size or 1)
        return _CountingIterator(super().__iter__(), self)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": self._consumed, "length": len(self)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if state.get("length", len(self)) != len(self):
            logger.warning(
                "the checkpoint's epoch had %s batches but the loader now has %d; the data order will not resume "
                "exactly",
                state.get("length"),
                len(self),
            )
        if batches >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            self.sampler.resume(epoch + 1, 0)
        else:
            self.sampler.resume(epoch, batches * (self.batch_size or 1))
        self._consumed = batches if batches < len(self) else 0


class DataModule(L.LightningDataModule):
    """Train/val/test datasets → data loaders, with an exactly resumable training order.

    Args:
        train: the training data (anything :func:`as_dataset` accepts), or None for evaluation only.
        val: validation data, or None.
        test: test data, or None.
        batch_size: samples per batch (per device).
        num_workers: loader worker processes (0 = load in the main process).
        seed: seeds the shuffling order (together with the epoch) and the loaders' worker seeds.
    """

    def __init__(
        self,
        train: DataLike | None = None,
        val: DataLike | None = None,
        test: DataLike | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"DataModule.batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"DataModule.num_workers must be >= 0, got {num_workers}")
        self.train = None if train is None else as_dataset(train)
        self.val = None if val is None else as_dataset(val)
        self.test = None if test is None else as_dataset(test)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        # Lightning runs a stage only when its loader hook is overridden: hide the hooks of absent splits
        for split in ("val", "test"):
            if getattr(self, split) is None:
                setattr(self, f"{split}_dataloader", None)

    def _loader_kwargs(self, dataset: Dataset) -> dict[str, Any]:
        return {
            "collate_fn": getattr(dataset, "collate_fn", None),  # None: the default collation
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
            # a private generator: creating loader iterators never consumes the global RNG (exact resume)
            "generator": torch.Generator().manual_seed(self.seed),
        }

    def _replicas(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        """The shuffled training loader of this rank (world size and rank from the attached Trainer).

        Data of more than one global batch (`batch_size * world_size` samples) trains
        `len(train) // (batch_size * world_size)` steps an epoch and drops the incomplete last global batch (other
        samples each epoch, as the order is reshuffled), without repeating any: R ranks see exactly the samples,
        each once, that one process with R times the batch size sees. E.g. 10 samples on 2 ranks with batch 2
        train 2 steps on 8 samples and leave 2 out, as one process with batch 4 does; 11 samples leave 3 out. Data
        of at most one global batch is never dropped: its single step is padded under DDP, up to
        `world_size - 1` samples repeating (DistributedSampler's padding) so that every rank has a batch.
        """
        if self.train is None:
            raise ValueError("DataModule has no training data; pass train=...")
        if hasattr(self.train, "streaming_loader"):  # shards: litdata splits them over ranks and workers
            return self.train.streaming_loader(self.batch_size, self.num_workers, shuffle=True, seed=self.seed)
        world, rank = self._replicas()
        # never drop the only batch of a tiny dataset; otherwise drop the remainder without padding first
        drop_last = len(self.train) > self.batch_size * world  # type: ignore[arg-type]
        sampler = ResumableSampler(
            self.train, shuffle=True, seed=self.seed, num_replicas=world, rank=rank, drop_last=drop_last
        )
        kwargs = self._loader_kwargs(self.train)
        return ResumableDataLoader(self.train, self.batch_size, sampler, drop_last=drop_last, **kwargs)

    def _eval_loader(self, dataset: Dataset | None, split: str) -> DataLoader:
        if dataset is None:
            raise ValueError(f"DataModule has no {split} data; pass {split}=...")
        if hasattr(dataset, "streaming_loader"):
            return dataset.streaming_loader(self.batch_size, self.num_workers)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **self._loader_kwargs(dataset))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val, "val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test, "test")


def split_batch(batch: Any) -> tuple[Any, Tensor | None]:
    """`(inputs, targets)` of a batch; targets are None for an inputs-only batch (a Tensor, a mapping of modality
    name to input, or an object with a `batch_size` attribute such as a packed batch)."""
    if isinstance(batch, (Tensor, Mapping)) or (not isinstance(batch, (tuple, list)) and hasattr(batch, "batch_size")):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise ValueError(f"a batch must be a Tensor or an (inputs, targets) tuple/list, got {type(batch).__name__}")


def batch_size_of(inputs: Any) -> int:
    """The number of samples in a batch's inputs: `shape[0]` of a Tensor (or of a mapping's first input), else the
    object's `batch_size`."""
    if isinstance(inputs, Mapping):
        inputs = next(iter(inputs.values()))
    return int(inputs.shape[0]) if isinstance(inputs, Tensor) else int(inputs.batch_size)


def batch_device(inputs: Any) -> torch.device:
    """The device of a batch's inputs (a Tensor, a mapping of them, or an object with a `device` attribute)."""
    if isinstance(inputs, Mapping):
        inputs = next(iter(inputs.values()))
    return inputs.device
