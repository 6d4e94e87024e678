"""Point-MAE recipe data (the `data:` section, registered as the "pointmae" data builder): the bundled synthetic
shapes or a folder of your own clouds and meshes, split into train/test, with few-label subsets for fine-tuning."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, Subset

from mmsdk.adapters.pointcloud.data import Augment, AugmentConfig, Channel, PointCloudFolder, ShapesDataset
from mmsdk.adapters.pointcloud.pointmae import PointMAEConfig
from mmsdk.config import Config, require
from mmsdk.contracts.data import DataSplits, InputsOnly, Stage, per_class_split

logger = logging.getLogger(__name__)


@dataclass
class PointCloudDataConfig(Config):
    """Recipe `data:` section of Point-MAE: the bundled synthetic shapes (`data.ShapesDataset`), or your own files
    laid out as `folder/<class_name>/*.{ply,pcd,obj,off,stl,xyz,npy,...}` (`data.PointCloudFolder`)."""

    folder: str | None = None
    """A folder of class folders with your clouds or meshes (labels = sorted sub-folder names); None = the bundled
    shapes. Without `test_folder`, a seeded stratified `test_fraction` of each class is held out for test."""
    test_folder: str | None = None
    """A separate test folder with the same class sub-folders as `folder` (then nothing of `folder` is held out)."""
    channels: tuple[Channel, ...] = ("xyz",)
    """Per-point features read from files, e.g. [xyz] or [xyz, rgb]; 3 x len(channels) must equal the adapter's
    in_channels. The bundled shapes have xyz only."""
    cache: bool = True
    """Keep every file's points in memory after the first read (folders only)."""
    num_per_class: int = 50
    """Bundled shapes per class before the train/test split."""
    num_points: int | None = None
    """Points per cloud; None = the adapter's num_points."""
    seed: int = 0
    """Seed of the bundled shapes, of the train/test split and of `labels_per_class`."""
    noise: float = 0.01
    """Gaussian surface noise of the bundled shapes (unit-sphere units)."""
    test_fraction: float = 0.2
    """Share of each class held out for test."""
    labels_per_class: int | None = None
    """Fine-tuning with few labels: keep only this many (seeded) training clouds per class; None = all. Pretraining
    always uses every training cloud."""
    augment: AugmentConfig | None = None
    """Training augmentation (e.g. {scale_translate: true}, Point-MAE's); None = none. Test clouds are never
    augmented."""
    batch_size: int = 32
    """Clouds per batch. Training drops a trailing partial batch when there is more than one batch; the
    BatchNorm head needs batches of 2 or more clouds to learn its statistics."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.channels = tuple(self.channels)
        require(self.num_per_class >= 2, self, "num_per_class", f"must be >= 2, got {self.num_per_class}")
        require(self.batch_size >= 1, self, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(0 < self.test_fraction < 1, self, "test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        require(len(self.channels) >= 1, self, "channels", "needs at least one channel, e.g. [xyz]")
        unknown = [c for c in self.channels if c not in ("xyz", "rgb", "normal")]
        require(not unknown, self, "channels", f"unknown channel(s) {unknown}; choose from xyz, rgb, normal")
        require(
            self.num_points is None or self.num_points >= 1, self, "num_points", f"must be >= 1, got {self.num_points}"
        )
        require(
            self.labels_per_class is None or self.labels_per_class >= 1,
            self,
            "labels_per_class",
            f"must be None or >= 1, got {self.labels_per_class}",
        )
        require(
            self.test_folder is None or self.folder is not None,
            self,
            "test_folder",
            "needs `folder` (the training files) as well",
        )


def _labels(dataset: Dataset) -> list[int]:
    if isinstance(dataset, PointCloudFolder):
        return [label for _, label in dataset.files]
    if isinstance(dataset, ShapesDataset):
        return dataset.labels.tolist()
    raise TypeError(f"no labels for {type(dataset).__name__}")


def _folder_splits(config: PointCloudDataConfig, num_points: int) -> tuple[Dataset, Dataset, list[str]]:
    """(train, test, class names) of `config.folder` (and `config.test_folder`)."""
    augment = None if config.augment is None else Augment(config.augment)
    kwargs: dict[str, Any] = {"num_points": num_points, "channels": config.channels, "cache": config.cache}
    train = PointCloudFolder(config.folder, augment=augment, seed=None, **kwargs)  # type: ignore[arg-type]
    names = train.class_names
    if config.test_folder is not None:
        return train, PointCloudFolder(config.test_folder, class_names=names, seed=config.seed, **kwargs), names
    plain = PointCloudFolder(config.folder, class_names=names, seed=config.seed, **kwargs)  # type: ignore[arg-type]
    fraction = config.test_fraction
    test_ids, train_ids = per_class_split(
        _labels(train), config.seed, lambda n: max(1, round(fraction * n)) if n > 1 else 0, stream=2
    )
    return Subset(train, train_ids), Subset(plain, test_ids), names


def build_pointcloud_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Point-MAE recipe data: train/test of the bundled shapes or of a folder; pretraining items are points (B, N, C),
    fine-tuning items (points, label)."""
    config = PointCloudDataConfig.from_dict(data)
    _, modality = model_config.only_modality()
    adapter = PointMAEConfig.from_dict(modality.adapter_config)
    num_points = config.num_points or adapter.num_points
    channels = 3 * len(config.channels) if config.folder is not None else 3
    require(
        channels == adapter.in_channels,
        config,
        "channels",
        f"give {channels} values per point but the adapter's in_channels is {adapter.in_channels}",
    )
    if config.folder is not None:
        train, test, class_names = _folder_splits(config, num_points)
    else:
        augment = None if config.augment is None else Augment(config.augment)
        kwargs = {"num_per_class": config.num_per_class, "num_points": num_points, "seed": config.seed}
        kwargs |= {"noise": config.noise, "test_fraction": config.test_fraction}
        train = ShapesDataset("train", augment=augment, **kwargs)
        test, class_names = ShapesDataset("test", **kwargs), list(train.class_names)
    logger.info("point-cloud data: %d train / %d test clouds of %d points", len(train), len(test), num_points)
    info = {"class_names": class_names, "num_points": num_points}
    if stage == "pretrain":
        return DataSplits(InputsOnly(train), InputsOnly(test), None, config.batch_size, info)
    if config.labels_per_class is not None:
        base = train.dataset if isinstance(train, Subset) else train
        labels = _labels(base)
        ids = list(train.indices) if isinstance(train, Subset) else list(range(len(labels)))
        chosen, _ = per_class_split(
            [labels[i] for i in ids], config.seed, lambda n: min(n, config.labels_per_class), stream=2
        )
        train = Subset(base, [ids[i] for i in chosen])
        logger.info("few labels: %d training clouds (%d per class)", len(train), config.labels_per_class)
    return DataSplits(train, None, test, config.batch_size, info)
