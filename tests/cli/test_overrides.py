"""Command-line overrides inside mappings nested in a recipe's free-form sections keep the recipe's other fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import mmsdk.contracts.data
from mmsdk.cli import main
from mmsdk.cli.main import finetune, pretrain
from mmsdk.cli.overrides import free_form_root, merge_nested_overrides

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes"
COMMANDS = {"pretrain": pretrain, "finetune": finetune}


@pytest.mark.parametrize(
    ("name", "root"),
    [
        ("data.corpus.synthetic_series", 0),  # data: dict[str, Any]
        ("model.modalities.audio.adapter_config.patch_time", 1),  # ModelConfig.modalities: a dict
        ("model.adapter_config.context_length", 1),
        ("trainer.max_steps", None),  # TrainerConfig: a dataclass all the way down
        ("trainer.fsdp.sharding", None),
        ("nonsense.field", None),
    ],
)
def test_the_dict_typed_field_along_an_argument_is_found(name: str, root: int | None) -> None:
    assert free_form_root(pretrain, name.split(".")) == root


def _recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    data = {"corpus": {"a": 1, "b": [1, 2], "c": "x"}, "max_tokens": 5}
    path.write_text(yaml.safe_dump({"model": {"adapter": "moirai"}, "data": data}))
    return path


def test_nested_overrides_fold_into_the_recipes_value_of_the_section(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    args = ["pretrain", "--config", str(recipe), "--data.corpus.a=8", "--data.max_tokens=9", "--data.corpus.b", "[]"]
    out = merge_nested_overrides(args, COMMANDS)
    assert out[:3] == ["pretrain", "--config", str(recipe)]
    name, value = out[3].split("=", 1)
    assert name == "--data" and json.loads(value) == {"corpus": {"a": 8, "b": [], "c": "x"}, "max_tokens": 5}
    assert out[4:] == ["--data.max_tokens=9"]  # one level deep: jsonargparse merges it, after the folded section
    assert merge_nested_overrides(["pretrain", "--data.max_tokens=9"], COMMANDS) == ["pretrain", "--data.max_tokens=9"]


def test_the_data_builder_sees_the_recipes_corpus_with_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def capture(data: dict[str, Any], model: Any, stage: str) -> None:
        seen.update(data)
        raise SystemExit(0)

    monkeypatch.setattr(mmsdk.contracts.data, "build_data", capture)
    recipe = RECIPES / "timeseries" / "moirai_pretrain_corpus.yaml"
    with pytest.raises(SystemExit):
        main(["pretrain", "--config", str(recipe), "--data.corpus.synthetic_series=8", "--data.corpus.statsmodels=[]"])
    corpus = yaml.safe_load(recipe.read_text())["data"]["corpus"]
    assert seen["corpus"] == {**corpus, "synthetic_series": 8, "statsmodels": []}
