"""Recipe data of multimodal models (`data: {builder: bouncing_scene, ...}`): the bouncing-ball scene.

Pretraining items are the views the model reads ({"series", "audio", "video", "present"}, the modalities the model
has); fine-tuning items are (views, hidden properties), e.g. the drop height and restitution regressed from the
sound alone (`modalities: [audio]`: the other views are absent). The scene's geometry (series length, clip duration,
frames and frame size) must match the model's adapters; a mismatch is an error naming both values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from mmsdk.adapters.multimodal.scene import MODALITIES, STATE_FIELDS, BouncingScene, SceneConfig
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.contracts.data import DataSplits, Stage

__all__ = ["SceneData", "SceneDataConfig", "build_scene_data", "check_scene_geometry"]


@dataclass
class SceneDataConfig(Config):
    """Recipe `data:` section of the bouncing-ball scene."""

    scene: dict[str, Any] = field(default_factory=dict)
    """Fields of `SceneConfig` (duration, sample_rate, num_frames, frame_size, series_length, missing, noise, ...)."""
    modalities: tuple[str, ...] | None = None
    """The views given to the model (the others are absent); None = every modality of the model."""
    targets: tuple[str, ...] = ("height", "restitution")
    """Fine-tuning: the hidden properties regressed, from `STATE_FIELDS`."""
    num_samples: int = 4000
    """Training items (generated on the fly)."""
    val_samples: int = 256
    """Validation items (another seed)."""
    test_samples: int = 256
    """Test items (a third seed)."""
    batch_size: int = 32
    """Items per batch."""
    seed: int = 0
    """Seed of the training items; validation and test use seed + 1 and seed + 2."""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            SceneConfig.from_dict(self.scene)
        except ValueError as err:
            raise ValueError(f"SceneDataConfig.scene: {err}") from err
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
            unknown = sorted(set(self.modalities) - set(MODALITIES))
            require(
                bool(self.modalities) and not unknown,
                self,
                "modalities",
                f"must name some of {list(MODALITIES)}, got {list(self.modalities)}",
            )
        self.targets = tuple(self.targets)
        unknown = sorted(set(self.targets) - set(STATE_FIELDS))
        require(
            bool(self.targets) and not unknown,
            self,
            "targets",
            f"must name some of {list(STATE_FIELDS)}, got {unknown}",
        )
        for name in ("num_samples", "batch_size"):
            require(getattr(self, name) >= 1, self, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("val_samples", "test_samples", "seed"):
            require(getattr(self, name) >= 0, self, name, f"must be >= 0, got {getattr(self, name)}")


class SceneData(Dataset):
    """The scene's items restricted to some views, as inputs or as (inputs, properties) pairs.

    Args:
        scene: the generated set (`pairs=True`).
        modalities: the views kept (others are left out: absent for the model).
        targets: property fields of the targets; None = inputs only.
    """

    def __init__(self, scene: BouncingScene, modalities: Sequence[str], targets: Sequence[str] | None = None) -> None:
        self.scene, self.modalities = scene, list(modalities)
        self.columns = None if targets is None else [STATE_FIELDS.index(t) for t in targets]

    def __len__(self) -> int:
        return len(self.scene)

    def __getitem__(self, index: int) -> Any:
        views, state = self.scene[index]
        inputs: dict[str, Any] = {m: views[m] for m in self.modalities}
        inputs["present"] = {m: views["present"][m] for m in self.modalities}
        if self.columns is None:
            return inputs
        return inputs, state[self.columns]


def check_scene_geometry(scene: SceneConfig, model_config: Any) -> None:
    """Raises ValueError when a model's adapters do not read the scene's views as generated.

    Checks the series length and channels (2), the video frames, size and channels (1), and that the audio model's
    sample rate is the scene's.
    """
    wanted: dict[str, dict[str, Any]] = {
        "series": {"context_length": scene.series_length, "num_channels": 2},
        "video": {"num_frames": scene.num_frames, "frame_size": (scene.frame_size, scene.frame_size), "channels": 1},
    }
    for name, modality in model_config.modalities.items():
        if name not in MODALITIES:
            raise ValueError(
                f"the bouncing scene has the views {list(MODALITIES)}; the model's {name!r} is none of them"
            )
        config = get_adapter_class(modality.adapter).config_class.from_dict(modality.adapter_config)
        if name == "audio":
            rate = getattr(getattr(config, "fbank", None), "sample_rate", None)
            if rate != scene.sample_rate:
                raise ValueError(f"audio: the model reads {rate} Hz, the scene's sample_rate is {scene.sample_rate}")
            continue
        for key, value in wanted.get(name, {}).items():
            have = getattr(config, key, None)
            have = tuple(have) if isinstance(have, (list, tuple)) else have
            if have != value:
                raise ValueError(f"{name}: the model's {key}={have!r} differs from the scene's {value!r}")


def build_scene_data(data: Mapping[str, Any], model_config: Any, stage: Stage) -> DataSplits:
    """The bouncing-scene datasets of a recipe's `data:` section (registered as the data builder
    `bouncing_scene`)."""
    config = SceneDataConfig.from_dict(data)
    scene = SceneConfig.from_dict(config.scene)
    check_scene_geometry(scene, model_config)
    modalities = list(config.modalities or model_config.modality_names)
    absent = sorted(set(modalities) - set(model_config.modality_names))
    if absent:
        raise ValueError(f"SceneDataConfig.modalities: {absent} are not modalities of the model")
    targets = list(config.targets) if stage == "finetune" else None

    def split(size: int, seed: int) -> Dataset | None:
        if size == 0:
            return None
        return SceneData(BouncingScene(size, scene, seed, pairs=True), modalities, targets)

    train = split(config.num_samples, config.seed)
    assert train is not None
    return DataSplits(
        train=train,
        val=split(config.val_samples, config.seed + 1),
        test=split(config.test_samples, config.seed + 2),
        batch_size=config.batch_size,
        info={"modalities": modalities, "targets": targets, "num_samples": config.num_samples},
    )
