"""Config loading: strict keys, field types, Literal validation, command-line text, nested round trips and range
checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pytest
import yaml

from mmsdk.config import Config, require
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.models.config import ModelConfig


@dataclass
class _Inner(Config):
    """A nested config with a Literal, an optional Literal and a tuple field."""

    kind: Literal["a", "b"] = "a"
    maybe: Literal["x", "y"] | None = None
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class _Outer(Config):
    """A config holding nested configs (one optional) and a free-form dict."""

    inner: _Inner = field(default_factory=_Inner)
    other: _Inner | None = None
    extra: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.scale > 0, self, "scale", f"must be positive, got {self.scale}")


def test_unknown_key_raises_naming_the_key() -> None:
    with pytest.raises(ValueError, match="bogus_key"):
        TransformerConfig.from_dict({"dim": 32, "bogus_key": 1})


def test_unknown_nested_key_raises_naming_the_key() -> None:
    with pytest.raises(ValueError, match="not_a_field"):
        ModelConfig.from_dict({"encoder": {"dim": 32, "heads": 4, "not_a_field": 3}})


def test_non_mapping_raises() -> None:
    with pytest.raises(ValueError, match="mapping"):
        TransformerConfig.from_dict([("dim", 8)])  # type: ignore[arg-type]


def test_bad_literal_raises_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"TransformerConfig\.attention"):
        TransformerConfig(attention="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TransformerConfig\.norm"):
        TransformerConfig.from_dict({"norm": "groupnorm"})
    with pytest.raises(ValueError, match=r"_Inner\.kind"):
        _Outer.from_dict({"inner": {"kind": "c"}})


def test_optional_literal_accepts_none_and_rejects_others() -> None:
    assert _Inner(maybe=None).maybe is None
    assert _Inner(maybe="y").maybe == "y"
    with pytest.raises(ValueError, match=r"_Inner\.maybe"):
        _Inner(maybe="z")  # type: ignore[arg-type]


def test_replace_validates_again() -> None:
    config = TransformerConfig(dim=32, heads=4)
    assert config.replace(depth=5).depth == 5
    with pytest.raises(ValueError, match="heads"):
        config.replace(heads=3)


def test_nested_round_trip() -> None:
    outer = _Outer(inner=_Inner(kind="b", sizes=(3, 4, 5)), other=_Inner(maybe="x"), extra={"k": 2}, scale=0.5)
    data = outer.to_dict()
    assert data["inner"]["sizes"] == [3, 4, 5]  # tuples serialize as lists
    restored = _Outer.from_dict(data)
    assert restored == outer
    assert isinstance(restored.inner, _Inner) and isinstance(restored.other, _Inner)
    assert restored.inner.sizes == (3, 4, 5)


def test_model_config_round_trip() -> None:
    config = ModelConfig(
        adapter="patchtst",
        adapter_config={"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
        encoder=TransformerConfig(dim=32, depth=2, heads=4, norm="rmsnorm", mlp="swiglu"),
        objective="mae",
    )
    data = config.to_dict()
    assert isinstance(data["encoder"], dict) and isinstance(data["decoder"], dict)
    restored = ModelConfig.from_dict(data)
    assert restored == config
    assert restored.encoder.norm == "rmsnorm"
    assert restored.decoder is not None and restored.decoder.heads == 4
    assert restored.modalities["patchtst"].adapter_config["context_length"] == 32
    assert "adapter" not in data and list(data["modalities"]) == ["patchtst"]  # the canonical form


def test_from_dict_of_none_and_instance() -> None:
    assert MaskingConfig.from_dict(None) == MaskingConfig()
    config = MaskingConfig(ratio=0.25)
    assert MaskingConfig.from_dict(config) is config


def test_unknown_adapter_raises() -> None:
    with pytest.raises(ValueError, match="no_such_adapter"):
        ModelConfig(adapter="no_such_adapter")


def test_adapter_config_is_validated_by_the_adapter() -> None:
    with pytest.raises(ValueError, match="not_a_patchtst_key"):
        ModelConfig(adapter="patchtst", adapter_config={"not_a_patchtst_key": 1})


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"dim": 30, "heads": 4}, "heads"),
        ({"dim": 0}, "dim"),
        ({"depth": 0}, "depth"),
        ({"drop_path": 1.0}, "drop_path"),
        ({"dropout": -0.1}, "dropout"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
    ],
)
def test_transformer_range_checks(kwargs: dict[str, object], field_name: str) -> None:
    with pytest.raises(ValueError, match=rf"TransformerConfig\.{field_name}"):
        TransformerConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_masking_ratio_out_of_range(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"MaskingConfig\.ratio"):
        MaskingConfig(ratio=ratio)


def test_masking_span_and_strategy_checks() -> None:
    with pytest.raises(ValueError, match=r"MaskingConfig\.span"):
        MaskingConfig(span=0)
    with pytest.raises(ValueError, match=r"MaskingConfig\.strategy"):
        MaskingConfig.from_dict({"strategy": "checkerboard"})


def test_head_config_checks() -> None:
    with pytest.raises(ValueError, match=r"HeadConfig\.num_outputs"):
        HeadConfig(num_outputs=0)
    with pytest.raises(ValueError, match=r"HeadConfig\.task"):
        HeadConfig(task="segmentation")  # type: ignore[arg-type]


def test_custom_range_check_names_owner_and_field() -> None:
    with pytest.raises(ValueError, match=r"_Outer\.scale: must be positive"):
        _Outer(scale=-1.0)


def test_command_line_text_for_scalar_fields_becomes_the_scalar() -> None:
    """Overrides inside free-form mappings (`--model.adapter_config.fbank.num_mel_bins=64`) arrive as text."""
    from dataclasses import dataclass

    from mmsdk.config import Config

    @dataclass
    class Inner(Config):
        bins: int = 3
        scale: float = 1.0
        flag: bool = False
        limit: int | None = 5
        name: str = "x"

    parsed = Inner.from_dict({"bins": "64", "scale": "0.5", "flag": "true", "limit": "null", "name": "7"})
    assert (parsed.bins, parsed.scale, parsed.flag, parsed.limit, parsed.name) == (64, 0.5, True, None, "7")
    with pytest.raises(ValueError, match=r"Inner\.bins: expected an integer, got 'many' \(str\)"):
        Inner.from_dict({"bins": "many"})  # left for validation to reject by name


# ---------------------------------------------------------------------------------------------------- field types


@dataclass
class _Typed(Config):
    """One field of each kind of annotation the type check knows."""

    flag: bool = False
    count: int = 1
    scale: float = 1.0
    name: str = "x"
    limit: int | None = None
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, int] = (1, 2)
    names: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    devices: str | int = "auto"
    kinds: tuple[Literal["a", "b"], ...] = ("a",)
    inner: _Inner = field(default_factory=_Inner)
    inners: dict[str, _Inner] = field(default_factory=dict)
    anything: Any = None


def _message(owner_field: str, expected: str, value: object) -> str:
    return re.escape(f"{owner_field}: expected {expected}, got {value!r} ({type(value).__name__})")


@pytest.mark.parametrize(
    ("changes", "owner_field", "expected", "value"),
    [
        ({"flag": "yes"}, "_Typed.flag", "a bool (true or false)", "yes"),
        ({"flag": 1}, "_Typed.flag", "a bool (true or false)", 1),
        ({"count": 16.0}, "_Typed.count", "an integer", 16.0),
        ({"count": True}, "_Typed.count", "an integer", True),
        ({"count": "16"}, "_Typed.count", "an integer", "16"),
        ({"scale": True}, "_Typed.scale", "a number", True),
        ({"scale": "0.5"}, "_Typed.scale", "a number", "0.5"),
        ({"name": 7}, "_Typed.name", "a string", 7),
        ({"limit": 2.5}, "_Typed.limit", "an integer or None", 2.5),
        ({"sizes": (1, 2.5)}, "_Typed.sizes[1]", "an integer", 2.5),
        ({"sizes": "12"}, "_Typed.sizes", "a list", "12"),
        ({"pair": (1, 2, 3)}, "_Typed.pair", "a list of 2 items", (1, 2, 3)),
        ({"pair": (1, "2")}, "_Typed.pair[1]", "an integer", "2"),
        ({"names": ["a", 3]}, "_Typed.names[1]", "a string", 3),
        ({"weights": {"a": "1"}}, "_Typed.weights.a", "a number", "1"),
        ({"weights": {1: 1.0}}, "_Typed.weights[1]", "a string", 1),
        ({"weights": [1.0]}, "_Typed.weights", "a mapping", [1.0]),
        ({"devices": 1.5}, "_Typed.devices", "a string or an integer", 1.5),
        ({"devices": False}, "_Typed.devices", "a string or an integer", False),
        ({"inner": 3}, "_Typed.inner", "a mapping of _Inner fields", 3),
        ({"inners": {"x": _Inner(), "y": 2}}, "_Typed.inners.y", "a mapping of _Inner fields", 2),
    ],
)
def test_a_wrong_typed_value_is_an_error_naming_the_field(
    changes: dict[str, Any], owner_field: str, expected: str, value: object
) -> None:
    with pytest.raises(ValueError, match=_message(owner_field, expected, value)):
        _Typed(**changes)
    with pytest.raises(ValueError, match=re.escape(owner_field)):
        _Typed.from_dict(changes, text=False)  # a saved file: "16" is not read as command-line text


def test_literals_inside_containers_are_checked() -> None:
    with pytest.raises(ValueError, match=r"_Typed\.kinds\[1\]='c' is not one of 'a', 'b'"):
        _Typed(kinds=("a", "c"))  # type: ignore[arg-type]


def test_values_of_the_right_type_pass_and_are_normalized() -> None:
    """numpy integers are integers, ints are numbers, lists fill tuple fields, mappings fill nested configs."""
    typed = _Typed(
        flag=np.bool_(True),  # type: ignore[arg-type]
        count=np.int64(3),  # type: ignore[arg-type]
        scale=2,
        limit=np.int32(4),  # type: ignore[arg-type]
        sizes=[3, np.int64(4)],  # type: ignore[arg-type]
        pair=[5, 6],  # type: ignore[arg-type]
        names=("a", "b"),  # type: ignore[arg-type]
        weights={"a": 1, "b": np.float32(0.5)},  # type: ignore[dict-item]
        devices=2,
        inner={"kind": "b"},  # type: ignore[arg-type]
        inners={"x": {"sizes": [7]}},  # type: ignore[dict-item]
        anything=object,
    )
    assert typed.flag is True and type(typed.count) is int and typed.count == 3 and typed.scale == 2
    assert type(typed.limit) is int and typed.sizes == (3, 4) and type(typed.sizes[1]) is int
    assert typed.pair == (5, 6) and typed.names == ["a", "b"] and typed.weights == {"a": 1, "b": 0.5}
    assert type(typed.weights["b"]) is float and typed.devices == 2
    assert typed.inner == _Inner(kind="b") and typed.inners == {"x": _Inner(sizes=(7,))}
    assert _Typed.from_dict(typed.to_dict()) == typed


def test_nested_config_fields_are_checked_and_named() -> None:
    with pytest.raises(ValueError, match=_message("_Inner.sizes[0]", "an integer", 1.5)):
        _Outer.from_dict({"inner": {"sizes": [1.5]}})
    with pytest.raises(ValueError, match=_message("_Inner.sizes[0]", "an integer", 1.5)):
        _Outer.from_dict({"other": {"sizes": [1.5]}})
    with pytest.raises(ValueError, match=_message("_Outer.extra.k", "an integer", 2.0)):
        _Outer.from_dict({"extra": {"k": 2.0}})
    with pytest.raises(ValueError, match=r"_Typed\.inners\.x: _Inner\.kind='c' is not one of"):
        _Typed(inners={"x": {"kind": "c"}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=_message("TransformerConfig.qk_norm", "a bool (true or false)", "yes")):
        ModelConfig.from_dict({"encoder": {"qk_norm": "yes"}})


def test_an_integral_float_is_not_an_int_field() -> None:
    """`dim: 16.0` used to pass and fail deep inside torch."""
    with pytest.raises(ValueError, match=_message("TransformerConfig.dim", "an integer", 16.0)):
        TransformerConfig(dim=16.0, heads=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=_message("TransformerConfig.dim", "an integer", 16.0)):
        ModelConfig.from_dict({"encoder": {"dim": 16.0, "heads": 4}})
    with pytest.raises(ValueError, match=_message("TransformerConfig.dim", "an integer", 16.0)):
        ModelConfig.from_dict(json.loads('{"encoder": {"dim": 16.0, "heads": 4}}'))


def test_command_line_text_converts_only_when_exact() -> None:
    parsed = _Typed.from_dict({"flag": "false ", "count": " 16", "scale": "1e-3", "limit": "None", "name": "16"})
    assert (parsed.flag, parsed.count, parsed.scale, parsed.limit, parsed.name) == (False, 16, 0.001, None, "16")
    assert _Typed.from_dict({"flag": "TRUE", "count": "-2"}).flag is True
    for name, text, expected in [
        ("flag", "yes", "a bool (true or false)"),
        ("flag", "0", "a bool (true or false)"),
        ("count", "16.0", "an integer"),
        ("count", "1_000", "an integer"),
        ("scale", "half", "a number"),
        ("limit", "16.0", "an integer or None"),
    ]:
        with pytest.raises(ValueError, match=_message(f"_Typed.{name}", expected, text)):
            _Typed.from_dict({name: text})
    assert _Typed.from_dict({"devices": "2"}).devices == "2"  # a field that takes strings keeps the text


def test_text_is_an_error_where_a_caller_reads_a_file_strictly() -> None:
    with pytest.raises(ValueError, match=_message("_Typed.count", "an integer", "16")):
        _Typed.from_dict({"count": "16"}, text=False)
    with pytest.raises(ValueError, match=_message("TransformerConfig.depth", "an integer", "3")):
        ModelConfig.from_dict({"encoder": {"depth": "3"}}, text=False)
    with pytest.raises(ValueError, match=_message("PatchTSTConfig.revin", "a bool (true or false)", "false")):
        ModelConfig.from_dict({"adapter": "patchtst", "adapter_config": {"revin": "false"}}, text=False)
    assert ModelConfig.from_dict({"encoder": {"depth": "3"}}).encoder.depth == 3  # the default again


def test_revin_text_is_read_exactly_or_rejected() -> None:
    """`revin: "no"` (or "0", "off") used to be kept as a truthy string: RevIN stayed on."""
    from mmsdk.adapters.timeseries import PatchTSTConfig
    from mmsdk.contracts.adapter import build_adapter

    recipe = yaml.safe_load('adapter: patchtst\nadapter_config: {context_length: 32, patch_len: 8, revin: "false"}')
    config = ModelConfig.from_dict(recipe)  # text for a bool, as the command line gives nested overrides
    assert config.modalities["patchtst"].adapter_config["revin"] is False
    assert build_adapter("patchtst", config.modalities["patchtst"].adapter_config, 16).norm is None
    for text in ("no", "off", "0", "yes"):
        recipe["adapter_config"]["revin"] = text
        with pytest.raises(ValueError, match=_message("PatchTSTConfig.revin", "a bool (true or false)", text)):
            ModelConfig.from_dict(recipe)
    with pytest.raises(ValueError, match=_message("PatchTSTConfig.revin", "a bool (true or false)", "false")):
        PatchTSTConfig(revin="false")  # type: ignore[arg-type]


def test_command_line_overrides_of_adapter_fields_are_read_as_values() -> None:
    """`--model.adapter_config.revin false` gives False, as the `mmsdk` command line parses it."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--model", type=ModelConfig)
    base = ["--model.adapter=patchtst", '--model.adapter_config={"context_length": 32, "patch_len": 8}']
    model = parser.instantiate(parser.parse_args([*base, "--model.adapter_config.revin", "false"])).model
    assert model.modalities["patchtst"].adapter_config["revin"] is False
    with pytest.raises((ValueError, SystemExit)):
        parser.parse_args([*base, "--model.encoder.dim", "16.0"])
