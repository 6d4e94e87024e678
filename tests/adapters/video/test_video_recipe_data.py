"""The video recipe data builder: the default synthetic set with the model's geometry, stratified splits, few
labels, pretraining on training items only, folder sources, and errors naming the field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import mmsdk.adapters.video.recipe_data as recipe_data
from mmsdk.adapters.video.datasets import collate_clips
from mmsdk.adapters.video.recipe_data import VideoDataConfig, build_video_data
from mmsdk.config import Config
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.models.config import ModelConfig

Model = Callable[..., Any]


@dataclass
class _StandInConfig(Config):
    """The fields of `VideoMAEConfig` the builder reads (used when the videomae adapter is not installed)."""

    channels: int = 3
    num_frames: int = 16
    frame_size: tuple[int, int] = (224, 224)
    tubelet: int = 2
    patch: int = 16


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Model:
    """make(channels, num_frames, frame_size) -> a one-modality model config of the video adapter."""

    def make(channels: int = 3, num_frames: int = 4, frame_size: tuple[int, int] = (16, 16)) -> Any:
        adapter_config = {"channels": channels, "num_frames": num_frames, "frame_size": list(frame_size)}
        adapter_config |= {"tubelet": 2, "patch": 8}
        try:
            get_adapter_class("videomae")
        except ValueError:
            stand_in = SimpleNamespace(config_class=_StandInConfig)
            monkeypatch.setattr(recipe_data, "get_adapter_class", lambda name: stand_in)
            modality = SimpleNamespace(adapter="videomae", adapter_config=adapter_config)
            return SimpleNamespace(only_modality=lambda: ("video", modality))
        body = {"adapter": "videomae", "adapter_config": adapter_config}
        return ModelConfig.from_dict({**body, "encoder": {"dim": 16, "depth": 1, "heads": 2}})

    return make


def test_default_synthetic_set_follows_the_model_and_splits_are_stratified(model: Model) -> None:
    splits = build_video_data({"synthetic": {"num_samples": 90}}, model(), "finetune")
    info = splits.info
    assert info["source"] == "synthetic" and len(info["class_names"]) == 9 and info["class_names"][0] == "square/right"
    assert (info["channels"], info["num_frames"], info["frame_size"]) == (3, 4, (16, 16))
    assert (info["train"], info["val"], info["test"]) == (63, 9, 18) and splits.batch_size == 8
    ids = [set(split.indices) for split in (splits.train, splits.val, splits.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(range(90))
    labels = splits.train.dataset.labels
    assert Counter(labels[i] for i in ids[2]) == dict.fromkeys(range(9), 2)
    assert Counter(labels[i] for i in ids[1]) == dict.fromkeys(range(9), 1)
    clip, label = splits.train[0]
    assert clip.shape == (4, 3, 16, 16) and isinstance(label, int)
    assert splits.train.collate_fn is collate_clips and splits.test.collate_fn is collate_clips
    again = build_video_data({"synthetic": {"num_samples": 90}}, model(), "finetune")
    assert again.test.indices == splits.test.indices  # seeded
    torch.testing.assert_close(again.test[0][0], splits.test[0][0])
    assert build_video_data({}, model(), "finetune").info["train"] == 359  # the default set: 512 clips, 153 held out


def test_synthetic_channels_come_from_the_model_or_must_match_it(model: Model) -> None:
    five = build_video_data({"synthetic": {"num_samples": 9}}, model(channels=5), "finetune")
    assert five.train.dataset.config.channels == ("rgb", "depth", "thermal") and five.train[0][0].shape[1] == 5
    given = build_video_data({"synthetic": {"num_samples": 9, "channels": ["thermal"]}}, model(channels=1), "finetune")
    assert given.train.dataset.config.channels == ("thermal",)
    with pytest.raises(
        ValueError, match=r"synthetic\.channels=\['rgb', 'depth'\] renders 4 channels but the model has channels=3"
    ):
        build_video_data({"synthetic": {"channels": ["rgb", "depth"]}}, model(), "finetune")
    with pytest.raises(ValueError, match="channels=9 but the synthetic set renders 1 to 6"):
        build_video_data({}, model(channels=9), "finetune")
    with pytest.raises(ValueError, match=r"synthetic\.num_frames=8 differs from the model's num_frames=4"):
        build_video_data({"synthetic": {"num_frames": 8}}, model(), "finetune")
    rect = build_video_data({"synthetic": {"num_samples": 9, "size": [8, 24]}}, model(frame_size=(8, 24)), "finetune")
    assert rect.train[0][0].shape == (4, 3, 8, 24)


def test_few_labels_keep_that_many_training_items_per_class(model: Model) -> None:
    data = {"synthetic": {"num_samples": 90, "motions": ["up", "still", "rotate"]}, "labels_per_class": 2, "seed": 3}
    splits = build_video_data(data, model(), "finetune")
    labels = splits.train.dataset.labels
    assert splits.info["train"] == 18 and Counter(labels[i] for i in splits.train.indices) == dict.fromkeys(range(9), 2)
    full = build_video_data({**data, "labels_per_class": None}, model(), "finetune")
    assert set(splits.train.indices) <= set(full.train.indices) and splits.test.indices == full.test.indices


def test_pretraining_sees_training_items_only(model: Model) -> None:
    data = {"synthetic": {"num_samples": 45}}
    pre = build_video_data(data, model(), "pretrain")
    fine = build_video_data(data, model(), "finetune")
    assert pre.val is None and pre.test is None and pre.train.collate_fn is collate_clips
    assert pre.train.dataset.indices == fine.train.indices and len(pre.train) == fine.info["train"]
    clip = pre.train[0]
    assert isinstance(clip, torch.Tensor) and clip.shape == (4, 3, 16, 16)
    assert pre.info["train"] == len(pre.train) and pre.info["num_frames"] == 4


def _videos(root: Path, names: list[str], count: int) -> None:
    writer = pytest.importorskip("mmsdk.adapters.video.writer")
    for c, name in enumerate(names):
        for i in range(count):
            (root / name).mkdir(parents=True, exist_ok=True)
            frames = torch.full((12, 3, 20, 20), (c + 1) / (len(names) + 1))
            writer.write_video(root / name / f"{i}.mkv", frames, fps=10)


def test_folder_source_splits_and_pretraining_adds_extra_folders(model: Model, tmp_path: Path) -> None:
    pytest.importorskip("av")
    _videos(tmp_path / "labelled", ["a", "b", "c"], 5)
    _videos(tmp_path / "corpus" / "2024", ["x"], 4)
    data = {"folder": str(tmp_path / "labelled"), "synthetic": {"num_samples": 9}, "val_fraction": 0.2}
    fine = build_video_data(data, model(), "finetune")
    assert fine.info["source"] == "folder" and fine.info["class_names"] == ["a", "b", "c"]
    assert (fine.info["train"], fine.info["val"], fine.info["test"]) == (9, 3, 3)
    assert fine.train.dataset.train and not fine.test.dataset.train  # random training clips, fixed evaluation
    clip, label = fine.test[0]
    assert clip.shape == (4, 3, 16, 16) and label in (0, 1, 2)
    torch.testing.assert_close(fine.test[0][0], clip, equal_nan=True)
    assert (
        torch.isnan(clip[3]).all() and not torch.isnan(clip[:3]).any()
    )  # 12 frames: the 4th pick (frame 12) is past the end
    pre = build_video_data({**data, "extra": [str(tmp_path / "corpus")]}, model(), "pretrain")
    assert len(pre.train) == 9 + 4 and pre.train.collate_fn is collate_clips
    assert pre.train[12].shape == (4, 3, 16, 16)
    unlabelled = build_video_data({"folder": str(tmp_path / "corpus" / "2024" / "x")}, model(), "pretrain")
    assert len(unlabelled.train) == 4  # videos directly inside: used whole
    only_extra = build_video_data({"extra": [str(tmp_path / "corpus")]}, model(), "pretrain")
    assert len(only_extra.train) == 4


def test_bad_fields_are_named(model: Model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"VideoDataConfig\.val_fraction"):
        VideoDataConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match=r"VideoDataConfig\.test_fraction: val \+ test"):
        VideoDataConfig(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"VideoDataConfig\.stride"):
        VideoDataConfig(stride=0)
    with pytest.raises(ValueError, match=r"VideoDataConfig\.labels_per_class"):
        VideoDataConfig(labels_per_class=0)
    with pytest.raises(ValueError, match=r"VideoDataConfig\.synthetic: .*unknown config key\(s\) \['colour'\]"):
        VideoDataConfig(synthetic={"colour": 1})
    with pytest.raises(ValueError, match=r"VideoDataConfig\.sampling"):
        VideoDataConfig.from_dict({"sampling": "dense"})
    with pytest.raises(ValueError, match="unknown config key"):
        build_video_data({"clip_seconds": 1.0}, model(), "finetune")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        build_video_data({"manifest": str(tmp_path / "nope.csv")}, model(), "finetune")
