"""The data contract of recipes: a `data:` section becomes train/val/test datasets through a registered builder.

Adapter families register a builder per adapter name (entry-point group `mmsdk.data_builders`, or
:func:`~mmsdk.contracts.registry.register_data`). The CLI and the Python API look the builder up by the `builder`
key of the data section, else by the model's adapter name, so recipes never carry import paths.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mmsdk.contracts.registry import DATA_BUILDERS
from mmsdk.contracts.splits import DataSplits, Stage

__all__ = ["DataSplits", "InputsOnly", "Stage", "build_data", "per_class_split", "read_manifest"]


class InputsOnly(Dataset):
    """The inputs of an (inputs, targets) dataset, for pretraining on a labelled dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index][0]


def build_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Builds the datasets of a recipe's `data:` section for a model.

    The builder is `data["builder"]` when given (the key is removed before the builder sees the section), else the
    one registered under the model's adapter name (single-modality models). With `data["shards"]` (a directory
    written by `mmsdk shard` from this section) the datasets stream from the shards instead
    (:func:`~mmsdk.contracts.shards.read_shards`).

    Raises:
        ValueError: when no builder is named or registered (listing the known ones).
    """
    data = dict(data)
    name = data.pop("builder", None)
    if data.get("shards") is not None:  # streamed from `mmsdk shard` output; the rest of the section was used then
        from mmsdk.contracts.shards import read_shards

        return read_shards(data.pop("shards"), model_config, stage, data)
    data.pop("shards", None)
    if name is None:
        adapters = [m.adapter for m in model_config.modalities.values()]
        if len(adapters) != 1:
            raise ValueError(
                f"a model of several modalities ({sorted(model_config.modalities)}) needs `data.builder`, the name "
                f"of a registered data builder; known: {DATA_BUILDERS.names()}"
            )
        name = adapters[0]
    if name not in DATA_BUILDERS:
        raise ValueError(f"no data builder registered as {name!r}; known: {DATA_BUILDERS.names()}")
    return DATA_BUILDERS.get(name)(data, model_config, stage)


def per_class_split(
    labels: Sequence[Any], seed: int, take: Callable[[int], int], stream: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded stratified split of item indices: per class, `take(n_class)` shuffled items go to the first list.

    Args:
        labels: the class of each item (any sortable values).
        seed: the split's seed.
        take: class size → how many of its items go to the first list.
        stream: a second seed component, so that several splits drawn with one seed differ.

    Returns:
        The sorted indices of the first and of the second list.
    """
    rng = np.random.default_rng([seed, stream])
    keys = np.asarray(labels)
    first: list[int] = []
    rest: list[int] = []
    for key in np.unique(keys):
        members = rng.permutation(np.flatnonzero(keys == key))
        count = take(len(members))
        first += members[:count].tolist()
        rest += members[count:].tolist()
    return sorted(first), sorted(rest)


def read_manifest(path: Path, owner: str) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV manifest with a header line; names and cells are stripped, missing cells read as "".

    Raises:
        FileNotFoundError: naming `owner` (the dataset class) and the path when the file is missing.
        ValueError: naming the file (never showing its lines) when it is binary, not UTF-8 text or not a CSV.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: manifest not found: {path}")
    with path.open("rb") as file:
        if b"\x00" in file.read(8192):
            raise ValueError(f"{owner}: {path} is not a readable CSV manifest (binary data: NUL bytes)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or []) if c is not None]
            rows = [{c.strip(): (v or "").strip() for c, v in row.items() if c is not None} for row in reader]
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{owner}: {path} is not UTF-8 text (undecodable byte at offset {err.start}); save the manifest as UTF-8"
            " (it may also be a binary file, not a CSV)"
        ) from None
    except csv.Error as err:
        raise ValueError(f"{owner}: {path} is not a readable CSV manifest ({err})") from None
    return columns, [{c: row.get(c, "") for c in columns} for row in rows]
