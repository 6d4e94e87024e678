"""The on-disk format of a pretrained directory: `config.json` + `model.safetensors`, versioned, never pickled.

`config.json` holds everything needed to rebuild the model (`kind`, the model config and, for task models, the head
config). Format 1 (models of one adapter, saved before models could hold several modalities) is read and its weight
names are migrated to format 2 on load, so old directories keep loading and give the same outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from mmsdk.contracts.heads import HeadConfig
from mmsdk.models.config import ModelConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "mmsdk"
FORMAT_VERSION = 2
KINDS = ("pretrain", "task", "embedding")


@dataclass
class Saved:
    """A parsed pretrained directory.

    Attributes:
        directory: the directory.
        kind: "pretrain", "task" or "embedding".
        model: the model config.
        head: the head config of a task model, else None.
        version: the format version the directory was written with.
    """

    directory: Path
    kind: str
    model: ModelConfig
    head: HeadConfig | None
    version: int = FORMAT_VERSION

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_NAME


def read_saved(directory: str | Path) -> Saved:
    """Parses and validates `config.json` of a pretrained directory.

    Raises:
        FileNotFoundError: for a missing directory or file (named in the message).
        ValueError: for invalid JSON, an unknown format, version or kind, or an invalid config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"pretrained directory {str(directory)!r} does not exist")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {str(directory)!r} a directory written by save_pretrained?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: unknown format {found!r}; expected {FORMAT!r}")
    version = data.get("format_version")
    if type(version) is not int:  # not `true` (a bool is an int in Python), `2.0` or `"2"`
        raise ValueError(
            f"{path}: format_version: expected an integer, got {version!r} ({type(version).__name__}); "
            f"this mmsdk reads 1..{FORMAT_VERSION}"
        )
    if not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this mmsdk reads 1..{FORMAT_VERSION})")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path}: unknown kind {kind!r}; expected 'pretrain', 'task' or 'embedding'")
    required = ("model", "head") if kind == "task" else ("model",)
    missing = [key for key in required if not isinstance(data.get(key), dict)]
    if missing:
        raise ValueError(f"{path}: the {' and '.join(missing)} section(s) are missing or not a JSON object")
    # a saved file holds JSON types, never command-line text: "16" for an int or "false" for a bool is an error
    section = "model"
    try:
        model = ModelConfig.from_dict(data.get("model"), text=False)
        section = "head"
        head = HeadConfig.from_dict(data["head"], text=False) if kind == "task" else None
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: invalid config: {section}: {err}") from err
    return Saved(directory, kind, model, head, version)


def migrate_weights(weights: dict[str, Tensor], saved: Saved) -> dict[str, Tensor]:
    """Weight names of an older format renamed to the current one (identity for the current format).

    Format 1 models held one adapter: `backbone.adapter.*` and `backbone.positions.*` become
    `backbone.adapters.<modality>.*` and `backbone.positions.<modality>.*`; a pretraining model's `head.*`,
    `decoder_positions.*` and (bert) `mask_token` become `heads.<modality>.*`, `decoder_positions.<modality>.*` and
    `mask_tokens.<modality>`.
    """
    if saved.version >= 2:
        return weights
    name = saved.model.modality_names[0]
    prefixes = {"backbone.adapter.": f"backbone.adapters.{name}.", "backbone.positions.": f"backbone.positions.{name}."}
    exact: dict[str, str] = {}
    if saved.kind == "pretrain":
        prefixes |= {"head.": f"heads.{name}.", "decoder_positions.": f"decoder_positions.{name}."}
        if saved.model.objective == "bert":
            exact["mask_token"] = f"mask_tokens.{name}"
    renamed = {}
    for key, tensor in weights.items():
        new = exact.get(key, key)
        for old, replacement in prefixes.items():
            if key.startswith(old):
                new = replacement + key[len(old) :]
                break
        renamed[new] = tensor
    return renamed
