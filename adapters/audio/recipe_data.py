"""Audio recipe data (the `data:` section, registered as the "ssast" and "audiomae" data builders).

Sources: a folder (class folders `root/<class>/*.wav` for fine-tuning; any audio files, recursively, for
pretraining) or a CSV manifest (`path,label` plus optional columns such as a speaker). Fine-tuning splits are
stratified by class, or group-disjoint by a manifest column (`split_by: speaker`: no speaker is in two splits).
Pretraining uses the training split's clips (never validation or test clips) plus any `extra` folders of
unlabelled audio.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from mmsdk.adapters.audio.augment import WaveAugment
from mmsdk.adapters.audio.datasets import AudioFiles, AudioFolder, AudioManifest
from mmsdk.adapters.audio.mixup import Mixup
from mmsdk.adapters.audio.spectrogram import SpectrogramConfig
from mmsdk.adapters.audio.splits import group_split
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.contracts.data import DataSplits, InputsOnly, Stage, per_class_split

logger = logging.getLogger(__name__)

KWS_SYNTH = "../shared/data/audio/kws-synth/manifest.csv"
"""The keyword-spotting set of a development checkout (10 keywords × 60 clips, a `voice` column)."""


@dataclass
class AudioDataConfig(Config):
    """Recipe `data:` section of the audio adapters."""

    folder: str | None = None
    """Class folders `folder/<class>/*` (fine-tuning), or any audio files under it (pretraining). Takes precedence
    over `manifest`."""
    manifest: str | None = None
    """A CSV with `path` and `label` columns (paths relative to the CSV) plus optional columns (e.g. speaker)."""
    extra: tuple[str, ...] = ()
    """More folders of unlabelled audio, added to the pretraining clips (e.g. a large corpus)."""
    clip_seconds: float = 1.0
    """Clip length: longer files are cropped (at random while training, centred for evaluation), shorter ones
    padded (padding becomes padding tokens)."""
    split_by: str | None = None
    """A manifest column whose groups never share a split (speaker, voice, session); None = stratified by class."""
    group_before: str | None = None
    """With `split_by`: the group is the part of the column before this separator (e.g. "+" makes the voice
    `en-gb+f1` group `en-gb`, so variants of a voice stay together)."""
    val_fraction: float = 0.1
    """Share of the labelled items held out for validation."""
    test_fraction: float = 0.2
    """Share of the labelled items held out for test."""
    labels_per_class: int | None = None
    """Fine-tuning with few labels: keep only this many (seeded) training clips per class; None = all."""
    multilabel: bool = False
    """Manifest labels are sets separated by ";" (tagging; multi-hot targets)."""
    mixup: float = 0.0
    """Probability that a training clip is mixed with another one (waveform mixup, soft targets); 0 = off."""
    mixup_alpha: float = 10.0
    """Mixup's Beta(alpha, alpha) for the mixing weight (AST: 10, weights near 0.5)."""
    speed_perturb: float = 0.0
    """Training clips play at a random speed in [1 - speed_perturb, 1 + speed_perturb] (pitch and formants move
    together, as between voices; Kaldi uses 0.1); 0 = off. Validation and test clips are never augmented."""
    time_shift: float = 0.0
    """Training clips' sound moves by up to this many seconds either way (zero fill); 0 = off."""
    skip_bad: bool = False
    """Decode every file once at the start and skip unreadable ones with one warning; False = an unreadable file
    stops with an error naming it."""
    cache: bool = True
    """Keep decoded clips in memory after their first read."""
    batch_size: int = 32
    """Clips per batch."""
    seed: int = 0
    """Seed of the splits, of `labels_per_class`, of evaluation crops and of mixup."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.extra = tuple(self.extra)
        require(self.clip_seconds > 0, self, "clip_seconds", f"must be > 0, got {self.clip_seconds}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            require(0 <= value < 1, self, name, f"must be in [0, 1), got {value}")
        require(
            self.val_fraction + self.test_fraction < 1, self, "test_fraction", "val + test must leave training data"
        )
        require(0 <= self.mixup <= 1, self, "mixup", f"must be in [0, 1], got {self.mixup}")
        require(self.mixup_alpha > 0, self, "mixup_alpha", f"must be > 0, got {self.mixup_alpha}")
        require(0 <= self.speed_perturb < 0.5, self, "speed_perturb", f"must be in [0, 0.5), got {self.speed_perturb}")
        require(self.time_shift >= 0, self, "time_shift", f"must be >= 0 seconds, got {self.time_shift}")
        require(self.batch_size >= 1, self, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(
            self.labels_per_class is None or self.labels_per_class >= 1,
            self,
            "labels_per_class",
            f"must be None or >= 1, got {self.labels_per_class}",
        )
        require(self.split_by is None or self.folder is None, self, "split_by", "needs a manifest, not a folder")


def _source(config: AudioDataConfig, stage: Stage) -> str:
    if config.folder is not None:
        return config.folder
    if config.manifest is not None:
        return config.manifest
    if stage == "pretrain" and config.extra:
        return ""
    hint = f" (the development keyword set {KWS_SYNTH} is not here)"
    raise ValueError(f"AudioDataConfig: give `folder` (e.g. --data.folder my_clips) or `manifest`{hint}")


def _labelled(config: AudioDataConfig, clip: int, rate: int, min_samples: int, train: bool) -> Dataset:
    """The labelled source with training crops (random) or evaluation crops (centred, seeded)."""
    common: dict[str, Any] = {"min_samples": min_samples, "skip_bad": config.skip_bad, "cache": config.cache}
    common |= {"crop": "random" if train else "center", "seed": None if train else config.seed}
    if config.folder is not None:
        return AudioFolder(config.folder, rate, clip, **common)
    return AudioManifest(config.manifest, rate, clip, multilabel=config.multilabel, **common)  # type: ignore[arg-type]


def _splits(config: AudioDataConfig, dataset: Any) -> tuple[list[int], list[int], list[int]]:
    """(train, val, test) item indices: group-disjoint by `split_by`, else stratified by label."""
    labels = dataset.column("label")
    if config.split_by is not None:
        groups = dataset.column(config.split_by)
        if config.group_before:
            groups = [g.split(config.group_before)[0] for g in groups]
        fractions = (1 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
        train, val, test = group_split(groups, fractions, config.seed)
        for name, ids in (("val", val), ("test", test)):
            logger.info(
                "%s split: %d clips of %d %s groups", name, len(ids), len({groups[i] for i in ids}), config.split_by
            )
        return train, val, test
    held = config.val_fraction + config.test_fraction
    held_ids, train = per_class_split(labels, config.seed, lambda n: round(held * n) if n > 2 else 0, stream=3)
    share = config.test_fraction / held if held else 0.0
    test_local, val_local = per_class_split(
        [labels[i] for i in held_ids], config.seed + 1, lambda n: round(share * n), stream=3
    )
    return train, [held_ids[i] for i in val_local], [held_ids[i] for i in test_local]


def _few_labels(labels: Sequence[Any], train: list[int], per_class: int, seed: int) -> list[int]:
    chosen, _ = per_class_split([labels[i] for i in train], seed, lambda n: min(n, per_class), stream=3)
    return [train[i] for i in chosen]


def _augmented(config: AudioDataConfig, train: Dataset, rate: int) -> Dataset:
    """The training clips with the configured speed perturbation and time shift (unchanged when both are off)."""
    if config.speed_perturb == 0 and config.time_shift == 0:
        return train
    return WaveAugment(train, rate, speed=config.speed_perturb, shift_seconds=config.time_shift)


def _check_statistics(clips: Dataset, spec: SpectrogramConfig, count: int = 200) -> tuple[float, float]:
    """Measures the log-mel statistics of up to `count` clips and warns when the model's differ much."""
    from mmsdk.adapters.audio.stats import fbank_statistics

    n = len(clips)  # type: ignore[arg-type]
    step = max(1, n // count)
    mean, std = fbank_statistics((clips[i] for i in range(0, n, step)), spec.fbank, max_clips=count)
    if abs(mean - spec.norm_mean) > 0.25 * std or not 0.75 < std / spec.norm_std < 1.33:
        logger.warning(
            "these clips have log-mel mean %.3f and std %.3f but the model normalizes with norm_mean=%.3f, "
            "norm_std=%.3f; for a model trained from scratch on them set adapter_config.norm_mean: %.4f and "
            "norm_std: %.4f (a pretrained model keeps its own)",
            mean,
            std,
            spec.norm_mean,
            spec.norm_std,
            mean,
            std,
        )
    return mean, std


def build_audio_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """Audio recipe data: pretraining items are clips (T,); fine-tuning items are (clip, label id) or, with
    multilabel or mixup, (clip, float targets (C,))."""
    config = AudioDataConfig.from_dict(data)
    _, modality = model_config.only_modality()
    spec = get_adapter_class(modality.adapter).config_class.from_dict(modality.adapter_config)
    if not isinstance(spec, SpectrogramConfig):
        raise ValueError(f"the audio data builder serves spectrogram adapters, not {modality.adapter!r}")
    rate = spec.fbank.sample_rate
    clip = round(config.clip_seconds * rate)
    source = _source(config, stage)
    info: dict[str, Any] = {"sample_rate": rate, "clip_samples": clip}
    if stage == "pretrain":
        parts: list[Dataset] = []
        if config.folder is not None:
            parts.append(AudioFiles(config.folder, rate, clip, min_samples=spec.min_samples, skip_bad=config.skip_bad))
        elif source:
            labelled = _labelled(config, clip, rate, spec.min_samples, train=True)
            parts.append(InputsOnly(Subset(labelled, _splits(config, labelled)[0])))
        if config.extra:
            parts.append(
                AudioFiles(list(config.extra), rate, clip, min_samples=spec.min_samples, skip_bad=config.skip_bad)
            )
        train = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        info["norm_stats"] = _check_statistics(train, spec)
        train = _augmented(config, train, rate)
        logger.info("audio pretraining data: %d clips of %.2f s", len(train), config.clip_seconds)
        return DataSplits(train, None, None, config.batch_size, info)
    train_set = _labelled(config, clip, rate, spec.min_samples, train=True)
    eval_set = _labelled(config, clip, rate, spec.min_samples, train=False)
    train_ids, val_ids, test_ids = _splits(config, train_set)
    labels = train_set.column("label")
    if config.labels_per_class is not None:
        train_ids = _few_labels(labels, train_ids, config.labels_per_class, config.seed)
        logger.info("few labels: %d training clips (%d per class)", len(train_ids), config.labels_per_class)
    names = list(train_set.class_names)
    train: Dataset = Subset(train_set, train_ids)
    info["norm_stats"] = _check_statistics(InputsOnly(train), spec)
    train = _augmented(config, train, rate)
    if config.mixup > 0:
        train = Mixup(train, len(names), alpha=config.mixup_alpha, prob=config.mixup)  # new pairs each epoch
    val = Subset(eval_set, val_ids) if val_ids else None
    test = Subset(eval_set, test_ids) if test_ids else None
    info |= {"class_names": names, "train": len(train_ids), "val": len(val_ids), "test": len(test_ids)}
    logger.info(
        "audio data: %d train / %d val / %d test clips, %d classes",
        len(train_ids),
        len(val_ids),
        len(test_ids),
        len(names),
    )
    return DataSplits(train, val, test, config.batch_size, info)
