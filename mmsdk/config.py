"""Config dataclass base: plain serializable fields, strict loading, `Literal` validation.

Every component config (encoder, masking, optimizer, adapter, ...) subclasses :class:`Config`. Configs hold only
plain values (numbers, strings, lists, nested configs) so they round-trip through JSON and YAML, and unknown keys
are an error rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

C = TypeVar("C", bound="Config")


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """Returns the allowed values of a `Literal[...]` (or `Literal | None`) annotation, else None."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        choices = [c for arg in get_args(annotation) if (c := _literal_choices(arg)) is not None]
        if choices and type(None) in get_args(annotation):
            return (*choices[0], None)
    return None


def _config_type(annotation: Any) -> type[Config] | None:
    """Returns the Config subclass named by an annotation (`X` or `X | None`), else None (containers of configs,
    e.g. `dict[str, X]`, are parsed by their owner)."""
    union = get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None))
    candidates = get_args(annotation) if union else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Config):
            return candidate
    return None


_SCALARS: dict[type, Any] = {
    bool: lambda text: {"true": True, "false": False}[text.strip().lower()],
    int: int,
    float: float,
}


def _from_text(annotation: Any, value: Any) -> Any:
    """A command-line string for a scalar field (`int`, `float`, `bool`, optionally `| None`) as that scalar.

    Overrides of fields inside free-form mappings (e.g. `--model.adapter_config.fbank.num_mel_bins=64`) reach the
    config as text; anything that does not parse is returned unchanged for `__post_init__` to reject by name.
    """
    if not isinstance(value, str):
        return value
    union = get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None))
    kinds = [a for a in (get_args(annotation) if union else (annotation,)) if a is not type(None)]
    if len(kinds) != 1 or kinds[0] not in _SCALARS:
        return value
    if union and value.strip().lower() in ("null", "none"):
        return None
    try:
        return _SCALARS[kinds[0]](value)
    except (KeyError, ValueError):
        return value


@dataclasses.dataclass
class Config:
    """Base class of all mmsdk configs.

    Subclasses are dataclasses. `__post_init__` checks every `Literal` field against its allowed names and
    subclasses add their own range checks, raising `ValueError` that names the field.
    """

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            choices = _literal_choices(hints[field.name])
            value = getattr(self, field.name)
            if choices is not None and value not in choices:
                raise ValueError(
                    f"{type(self).__name__}.{field.name}={value!r} is not one of {', '.join(map(repr, choices))}"
                )

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | C | None) -> C:
        """Builds the config from a mapping, recursing into nested configs.

        Raises:
            ValueError: if `data` holds keys the config does not define (named in the message).
        """
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} expects a mapping of fields, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; valid keys are {names}")
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name in names:
            if name not in data:
                continue
            value = data[name]
            nested = _config_type(hints[name])
            if nested is not None and isinstance(value, Mapping):
                value = nested.from_dict(value)
            elif isinstance(value, list) and get_origin(hints[name]) is tuple:
                value = tuple(value)
            kwargs[name] = _from_text(hints[name], value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serializable dict (tuples become lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Config):
                return value.to_dict()
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self: C, **changes: Any) -> C:
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def require(condition: bool, owner: object, field: str, message: str) -> None:
    """Raises `ValueError` naming `Owner.field` when `condition` is false."""
    if not condition:
        name = owner if isinstance(owner, str) else type(owner).__name__
        raise ValueError(f"{name}.{field}: {message}")
