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

from mmsdk.contracts.shards.manifest import (
    MANIFEST,
    SHARD_FORMAT,
    SPLITS,
    ShardManifest,
    check_split_files,
    read_manifest,
)
from mmsdk.contracts.shards.reader import ShardDataset, read_shards
from mmsdk.contracts.shards.writer import write_shards

__all__ = [
    "MANIFEST",
    "SHARD_FORMAT",
    "SPLITS",
    "ShardDataset",
    "ShardManifest",
    "check_split_files",
    "read_manifest",
    "read_shards",
    "write_shards",
]
