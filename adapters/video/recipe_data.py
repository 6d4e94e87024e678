"""Video recipe data (the `data:` section of the VideoMAE adapter, `build_video_data`).

Sources, by precedence (a lower one given too is ignored with an info line, so a command-line `--data.folder`
replaces a recipe's synthetic set): `folder` (class folders `folder/<class>/*.mp4`), `manifest` (a CSV
`path,label[,start,end]`), `synthetic` (the generated moving shapes, `synthetic.MovingShapes`; the default when no
source is given). Clips have the model's geometry (`num_frames` frames of its `frame_size`, with its channel count)
unless the section sets its own `num_frames` / `frame_size`; a synthetic set takes all three from there (its channel
kinds follow from the count unless given).

Fine-tuning splits are stratified by class (seeded); `labels_per_class` keeps a few training items per class.
Pretraining uses the training split's clips only (never validation or test clips, so a later fine-tuning on the
same section is evaluated on unseen videos) plus any `extra` folders of unlabelled video; a `folder` with videos
directly inside (not class folders) is unlabelled and used whole.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import ConcatDataset, Dataset, Subset

from mmsdk.adapters.video.datasets import VideoFiles, VideoFolder, VideoManifest, collate_clips
from mmsdk.adapters.video.synthetic import CHANNELS, MovingShapes, MovingShapesConfig
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.contracts.data import DataSplits, InputsOnly, Stage, per_class_split

__all__ = ["SYNTHETIC_CHANNELS", "VideoDataConfig", "build_video_data"]

logger = logging.getLogger(__name__)

SYNTHETIC_CHANNELS: dict[int, tuple[str, ...]] = {
    1: ("gray",),
    2: ("gray", "depth"),
    3: ("rgb",),
    4: ("rgb", "depth"),
    5: ("rgb", "depth", "thermal"),
    6: ("rgb", "gray", "depth", "thermal"),
}
"""The synthetic channel kinds used for a model of C channels when `synthetic.channels` is not given."""


@dataclass
class VideoDataConfig(Config):
    """Recipe `data:` section of the video adapter."""

    synthetic: dict[str, Any] | None = None
    """Fields of `synthetic.MovingShapesConfig` (num_samples, shapes, motions, channels, noise, seed) for the
    generated moving shapes; num_frames, size and the channel count follow the model. Used when neither `folder`
    nor `manifest` is given (also when this is None: the default set)."""
    folder: str | None = None
    """Class folders `folder/<class>/*` of videos (fine-tuning), or, for pretraining, a folder of any videos.
    Takes precedence over `manifest` and `synthetic`."""
    manifest: str | None = None
    """A CSV with `path` and `label` columns (paths relative to the CSV) and optional `start`/`end` seconds that
    bound where clips are cut. Takes precedence over `synthetic`."""
    num_frames: int | None = None
    """Frames per clip; None = the model's `num_frames`. The model adapts its positions to other counts, so a model
    pretrained on 16-frame clips can fine-tune on 8."""
    frame_size: tuple[int, int] | None = None
    """(height, width) of the clips; None = the model's `frame_size` (other sizes work the same way)."""
    extra: tuple[str, ...] = ()
    """More folders of unlabelled video, added to the pretraining clips (ignored by fine-tuning)."""
    stride: int = 4
    """Frames between the frames of a clip ("stride" sampling of files; the synthetic set renders every step)."""
    sampling: Literal["stride", "uniform"] = "stride"
    """stride: a clip of `num_frames` frames `stride` apart (random start while training, centred for evaluation);
    uniform: `num_frames` frames spread evenly over the whole video or manifest segment."""
    val_fraction: float = 0.1
    """Share of each class held out for validation."""
    test_fraction: float = 0.2
    """Share of each class held out for test."""
    labels_per_class: int | None = None
    """Fine-tuning with few labels: keep only this many (seeded) training items per class; None = all."""
    skip_bad: bool = False
    """Skip videos that cannot be probed, with one warning; False = an unreadable file stops with an error naming
    it."""
    batch_size: int = 8
    """Clips per batch."""
    seed: int = 0
    """Seed of the splits, of `labels_per_class`, of the training clip draws and (unless it sets its own) of the
    synthetic set."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.extra = tuple(self.extra)
        require(
            self.num_frames is None or self.num_frames >= 1, self, "num_frames", f"must be >= 1, got {self.num_frames}"
        )
        if self.frame_size is not None:
            self.frame_size = tuple(int(v) for v in self.frame_size)  # type: ignore[assignment]
            require(
                len(self.frame_size) == 2 and min(self.frame_size) >= 1,
                self,
                "frame_size",
                f"must be a positive (height, width), got {self.frame_size}",
            )
        require(
            self.synthetic is None or isinstance(self.synthetic, Mapping),
            self,
            "synthetic",
            f"must be a mapping of moving-shapes fields or null, got {self.synthetic!r}",
        )
        if self.synthetic is not None:
            try:
                MovingShapesConfig.from_dict(self.synthetic)
            except ValueError as err:
                raise ValueError(f"VideoDataConfig.synthetic: {err}") from err
        require(self.stride >= 1, self, "stride", f"must be >= 1, got {self.stride}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            require(0 <= value < 1, self, name, f"must be in [0, 1), got {value}")
        require(
            self.val_fraction + self.test_fraction < 1, self, "test_fraction", "val + test must leave training data"
        )
        require(
            self.labels_per_class is None or self.labels_per_class >= 1,
            self,
            "labels_per_class",
            f"must be None or >= 1, got {self.labels_per_class}",
        )
        require(self.batch_size >= 1, self, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.seed >= 0, self, "seed", f"must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class _Geometry:
    """What the model reads: C channels, T frames of (H, W)."""

    channels: int
    num_frames: int
    frame_size: tuple[int, int]

    def info(self) -> dict[str, Any]:
        return {"channels": self.channels, "num_frames": self.num_frames, "frame_size": self.frame_size}


def _geometry(model_config: Any) -> _Geometry:
    """The clip geometry of the model's (single) modality, read from its adapter config."""
    _, modality = model_config.only_modality()
    config = get_adapter_class(modality.adapter).config_class.from_dict(modality.adapter_config)
    values = {name: getattr(config, name, None) for name in ("channels", "num_frames", "frame_size")}
    if missing := [name for name, value in values.items() if value is None]:
        raise ValueError(
            f"the video data builder needs an adapter config with channels, num_frames and frame_size; "
            f"{modality.adapter!r} ({type(config).__name__}) has no {missing}"
        )
    size = values["frame_size"]
    frame_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return _Geometry(int(values["channels"]), int(values["num_frames"]), frame_size)


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, tuple) and isinstance(value, int):
        value = (value, value)
    return (tuple(value) if isinstance(value, (list, tuple)) else value) == wanted


def _synthetic(config: VideoDataConfig, geometry: _Geometry) -> MovingShapes:
    """The moving-shapes set with the model's geometry (the channel kinds from its channel count unless given)."""
    fields = dict(config.synthetic or {})
    for name, model_name, wanted in (
        ("num_frames", "num_frames", geometry.num_frames),
        ("size", "frame_size", geometry.frame_size),
    ):
        if name in fields and not _same(fields[name], wanted):
            raise ValueError(
                f"VideoDataConfig.synthetic.{name}={fields[name]!r} differs from the model's {model_name}={wanted}; "
                f"leave it out (the synthetic clips follow the model)"
            )
    fields |= {"num_frames": geometry.num_frames, "size": geometry.frame_size}
    fields.setdefault("seed", config.seed)
    if "channels" not in fields:
        if geometry.channels not in SYNTHETIC_CHANNELS:
            raise ValueError(
                f"the model has channels={geometry.channels} but the synthetic set renders 1 to "
                f"{max(SYNTHETIC_CHANNELS)} channels (kinds {dict(CHANNELS)}); set data.synthetic.channels or use "
                "data.folder / data.manifest"
            )
        fields["channels"] = SYNTHETIC_CHANNELS[geometry.channels]
    shapes = MovingShapes(fields)
    if shapes.num_channels != geometry.channels:
        raise ValueError(
            f"VideoDataConfig.synthetic.channels={list(shapes.config.channels)} renders {shapes.num_channels} "
            f"channels but the model has channels={geometry.channels}"
        )
    return shapes


def _source(config: VideoDataConfig) -> str:
    """The labelled source used: "folder", "manifest" or "synthetic" (precedence in that order)."""
    given = [name for name in ("folder", "manifest", "synthetic") if getattr(config, name) is not None]
    source = given[0] if given else "synthetic"
    if len(given) > 1:
        logger.info("video data: using data.%s; ignoring data.%s", source, " and data.".join(given[1:]))
    return source


def _labelled(config: VideoDataConfig, source: str, geometry: _Geometry) -> Dataset:
    """The labelled source in training mode (random clips and crops, new at every read)."""
    if source == "synthetic":
        return _synthetic(config, geometry)
    common: dict[str, Any] = {
        "num_frames": geometry.num_frames,
        "stride": config.stride,
        "size": geometry.frame_size,
        "channels": geometry.channels,
        "train": True,
        "sampling": config.sampling,
        "seed": config.seed,
        "skip_bad": config.skip_bad,
    }
    if source == "folder":
        return VideoFolder(config.folder, **common)  # type: ignore[arg-type]
    return VideoManifest(config.manifest, **common)  # type: ignore[arg-type]


def _evaluation(dataset: Dataset) -> Dataset:
    """The same items read for evaluation (centre clip and crop), without probing the files again."""
    if isinstance(dataset, MovingShapes):
        return dataset  # deterministic already
    clone = copy.copy(dataset)
    clone.train = False  # type: ignore[attr-defined]
    return clone


def _splits(config: VideoDataConfig, labels: Sequence[Any]) -> tuple[list[int], list[int], list[int]]:
    """(train, val, test) item indices, stratified by label and seeded."""
    held = config.val_fraction + config.test_fraction
    held_ids, train = per_class_split(labels, config.seed, lambda n: round(held * n) if n > 2 else 0, stream=4)
    share = config.test_fraction / held if held else 0.0
    test_local, val_local = per_class_split(
        [labels[i] for i in held_ids], config.seed + 1, lambda n: round(share * n), stream=4
    )
    return train, [held_ids[i] for i in val_local], [held_ids[i] for i in test_local]


def _few_labels(labels: Sequence[Any], train: list[int], per_class: int, seed: int) -> list[int]:
    chosen, _ = per_class_split([labels[i] for i in train], seed, lambda n: min(n, per_class), stream=5)
    return [train[i] for i in chosen]


def _collating(dataset: Dataset) -> Dataset:
    """`dataset` with `collate_clips` as its `collate_fn` (the training data module reads the attribute)."""
    dataset.collate_fn = collate_clips  # type: ignore[attr-defined]
    return dataset


def _unlabelled_folder(folder: str) -> bool:
    """True when `folder` holds videos directly (an unlabelled corpus), not only class folders."""
    from mmsdk.adapters.video.io import VIDEO_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"VideoDataConfig.folder: folder not found: {root}")
    return any(p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS for p in root.iterdir())


def _pretraining(config: VideoDataConfig, geometry: _Geometry) -> DataSplits:
    """Unlabelled clips: the training split of the labelled source (or a whole unlabelled folder) plus `extra`."""
    parts: list[Dataset] = []
    common: dict[str, Any] = {"train": True, "sampling": config.sampling, "seed": config.seed}
    common |= {"channels": geometry.channels, "skip_bad": config.skip_bad}
    shape = (geometry.num_frames, config.stride, geometry.frame_size)
    labelled_given = config.folder is not None or config.manifest is not None or config.synthetic is not None
    if config.folder is not None and _unlabelled_folder(config.folder):
        parts.append(VideoFiles(config.folder, *shape, **common))
    elif labelled_given or not config.extra:
        labelled = _labelled(config, _source(config), geometry)
        train_ids = _splits(config, labelled.column("label"))[0]  # type: ignore[attr-defined]
        parts.append(InputsOnly(Subset(labelled, train_ids)))
    if config.extra:
        parts.append(VideoFiles(list(config.extra), *shape, **common))
    train = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    count = len(train)  # type: ignore[arg-type]
    logger.info("video pretraining data: %d clips of %d frames", count, geometry.num_frames)
    return DataSplits(_collating(train), None, None, config.batch_size, {**geometry.info(), "train": count})


def build_video_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Video recipe data for a model: pretraining items are clips (T, C, H, W); fine-tuning (and any other stage)
    items are (clip, label id), split into train/val/test.

    Args:
        data: the recipe's `data:` section (`VideoDataConfig` fields).
        model_config: the model config; its adapter config gives channels, num_frames and frame_size.
        stage: "pretrain" or "finetune".

    Raises:
        ValueError: a bad field (named), a synthetic set that does not fit the model, a source without videos.
        FileNotFoundError: a missing folder or manifest.
    """
    config = VideoDataConfig.from_dict(data)
    geometry = _geometry(model_config)
    geometry = _Geometry(
        geometry.channels, config.num_frames or geometry.num_frames, config.frame_size or geometry.frame_size
    )
    if stage == "pretrain":
        return _pretraining(config, geometry)
    source = _source(config)
    if config.extra:
        logger.info("video data: data.extra (unlabelled) is used by pretraining only")
    train_set = _labelled(config, source, geometry)
    labels = train_set.column("label")  # type: ignore[attr-defined]
    train_ids, val_ids, test_ids = _splits(config, labels)
    if config.labels_per_class is not None:
        train_ids = _few_labels(labels, train_ids, config.labels_per_class, config.seed)
        logger.info("few labels: %d training clips (%d per class)", len(train_ids), config.labels_per_class)
    eval_set = _evaluation(train_set)
    names = list(train_set.class_names)  # type: ignore[attr-defined]
    train = _collating(Subset(train_set, train_ids))
    val = _collating(Subset(eval_set, val_ids)) if val_ids else None
    test = _collating(Subset(eval_set, test_ids)) if test_ids else None
    info = {"source": source, **geometry.info(), "class_names": names}
    info |= {"train": len(train_ids), "val": len(val_ids), "test": len(test_ids)}
    logger.info(
        "video data (%s): %d train / %d val / %d test clips, %d classes",
        source,
        len(train_ids),
        len(val_ids),
        len(test_ids),
        len(names),
    )
    return DataSplits(train, val, test, config.batch_size, info)
