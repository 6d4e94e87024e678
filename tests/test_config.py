"""Config loading: strict keys, Literal validation, nested round trips and range checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

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
    assert Inner.from_dict({"bins": "many"}).bins == "many"  # left for validation to reject by name
