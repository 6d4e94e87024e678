"""A saved directory's config.json is read strictly: wrong-typed fields are errors naming the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import mmsdk
from mmsdk.hub import from_pretrained, load_backbone, read_config, save_pretrained

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}
FORECAST = {"task": "forecast", "num_outputs": 4}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved task model (its config.json has a model and a head section)."""
    return save_pretrained(mmsdk.build_task_model(MODEL, FORECAST), tmp_path_factory.mktemp("hub") / "task")


def _copy_with(saved: Path, target: Path, edit: Any) -> Path:
    """A copy of the saved directory whose config.json is `edit(config)`."""
    target.mkdir()
    config = json.loads((saved / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    (target / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    return target


def _encoder(config: dict[str, Any]) -> dict[str, Any]:
    return config["model"]["encoder"]


def _adapter_config(config: dict[str, Any]) -> dict[str, Any]:
    return config["model"]["modalities"]["patchtst"]["adapter_config"]


def test_the_saved_directory_loads(saved: Path) -> None:
    assert read_config(saved)["head"]["num_outputs"] == 4


@pytest.mark.parametrize("version", [True, 2.0, "2"])
def test_a_format_version_that_is_not_an_integer_is_an_error(saved: Path, tmp_path: Path, version: object) -> None:
    """`true` passed as format 1 (a bool is an int in Python), and weights were migrated as format 1."""
    directory = _copy_with(saved, tmp_path / "m", lambda c: c.update(format_version=version))
    path = re.escape(str(directory / "config.json"))
    expected = rf"{path}: format_version: expected an integer, got {re.escape(repr(version))}"
    with pytest.raises(ValueError, match=expected):
        from_pretrained(directory)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: _encoder(c).update(dim=16.0), r"TransformerConfig\.dim: expected an integer, got 16\.0 \(float\)"),
        (lambda c: _encoder(c).update(dim="16"), r"TransformerConfig\.dim: expected an integer, got '16' \(str\)"),
        (lambda c: _encoder(c).update(qk_norm=0), r"TransformerConfig\.qk_norm: expected a bool .*got 0 \(int\)"),
        (lambda c: _encoder(c).update(dropout="0.1"), r"TransformerConfig\.dropout: expected a number, got '0\.1'"),
        (lambda c: _adapter_config(c).update(revin="false"), r"PatchTSTConfig\.revin: expected a bool"),
        (lambda c: _adapter_config(c).update(patch_len=True), r"PatchTSTConfig\.patch_len: expected an integer"),
        (lambda c: c["head"].update(num_outputs="4"), r"head: HeadConfig\.num_outputs: expected an integer"),
        (lambda c: c["head"].update(labels=[1, 2, 3, 4]), r"HeadConfig\.labels\[0\]: expected a string, got 1"),
    ],
    ids=["dim-float", "dim-text", "bool-int", "float-text", "revin-text", "int-bool", "head-int-text", "labels-ints"],
)
def test_a_wrong_typed_config_field_names_the_file_and_the_field(
    saved: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """A saved file holds JSON types: a string where a number or a bool is expected is not read as text."""
    directory = _copy_with(saved, tmp_path / "m", edit)
    path = re.escape(str(directory / "config.json"))
    with pytest.raises(ValueError, match=rf"{path}: invalid config: .*{message}"):
        from_pretrained(directory)
    with pytest.raises(ValueError, match=rf"{path}: invalid config: .*{message}"):
        read_config(directory)
    with pytest.raises(ValueError, match=rf"{path}: invalid config: .*{message}"):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), directory)


def test_reading_a_saved_file_strictly_leaves_later_configs_reading_text(saved: Path, tmp_path: Path) -> None:
    directory = _copy_with(saved, tmp_path / "m", lambda c: _encoder(c).update(depth="1"))
    with pytest.raises(ValueError, match=r"TransformerConfig\.depth"):
        read_config(directory)
    assert mmsdk.ModelConfig.from_dict({"encoder": {"depth": "3"}}).encoder.depth == 3  # command-line text


@pytest.mark.parametrize("drop", ["model", "head"])
def test_a_missing_section_is_an_error_naming_it(saved: Path, tmp_path: Path, drop: str) -> None:
    """Without `model` the default model used to be built silently; without `head`, a bare KeyError: 'head'."""
    directory = _copy_with(saved, tmp_path / "m", lambda c: c.pop(drop))
    with pytest.raises(ValueError, match=rf"config\.json: the {drop} section\(s\) are missing"):
        from_pretrained(directory)
