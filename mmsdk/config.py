"""Config dataclass base: plain serializable fields, strict loading, type and `Literal` validation.

Every component config (encoder, masking, optimizer, adapter, ...) subclasses :class:`Config`. Configs hold only
plain values (numbers, strings, lists, nested configs) so they round-trip through JSON and YAML, and unknown keys
are an error rather than silently ignored. Every field's value is checked against its type annotation when the
config is built (a `bool` field takes only `True`/`False`, an `int` field only integers, not `16.0` nor `True`),
and errors name the field: `TransformerConfig.dim: expected an integer, got 16.0 (float)`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import numbers
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

C = TypeVar("C", bound="Config")

_UNIONS = (typing.Union, types.UnionType)
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)
# whether `from_dict` reads strings of scalar fields as command-line text (False while loading saved files)
_TEXT: contextvars.ContextVar[bool] = contextvars.ContextVar("mmsdk_config_text", default=True)


class _MismatchError(Exception):
    """A value that does not fit an annotation: what was expected, where inside the field, or a nested error."""

    def __init__(self, expected: str, value: Any, choices: tuple[Any, ...] | None = None, nested: str = "") -> None:
        super().__init__(expected)
        self.expected, self.value, self.choices, self.nested = expected, value, choices, nested
        self.path = ""

    def at(self, step: str) -> _MismatchError:
        """This mismatch, one container level further out (`step` is `[i]` or `.key`)."""
        self.path = step + self.path
        return self

    @property
    def specific(self) -> bool:
        """Whether the value had the right outer type and failed inside (reported as is inside a union)."""
        return bool(self.path or self.nested)

    def message(self, owner: str) -> str:
        where = owner + self.path
        if self.nested:
            return f"{where}: {self.nested}"
        if self.choices is not None:
            return f"{where}={self.value!r} is not one of {', '.join(map(repr, self.choices))}"
        return f"{where}: expected {self.expected}, got {self.value!r} ({type(self.value).__name__})"


_Check = Callable[[Any], Any]
"""Returns the value (numpy scalars as Python scalars, lists as tuples for tuple fields, mappings as nested
configs) or raises `_MismatchError`."""


def _is_numpy_bool(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")


def _check_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    if _is_numpy_bool(value):
        return bool(value)
    raise _MismatchError("a bool (true or false)", value)


def _check_int(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy / torch-free integer scalars
        return int(value)
    raise _MismatchError("an integer", value)


def _check_float(value: Any) -> Any:
    if type(value) is float or type(value) is int:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _is_numpy_bool(value):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    raise _MismatchError("a number", value)


def _check_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _MismatchError("a string", value)


def _check_none(value: Any) -> Any:
    if value is None:
        return value
    raise _MismatchError("None", value)


_SCALAR_CHECKS: dict[Any, tuple[_Check, str]] = {
    bool: (_check_bool, "a bool (true or false)"),
    int: (_check_int, "an integer"),
    float: (_check_float, "a number"),
    str: (_check_str, "a string"),
    type(None): (_check_none, "None"),
}


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal[...]` annotation or a union of Literals and None, else None."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in _UNIONS:
        choices: list[Any] = []
        for arg in get_args(annotation):
            inner = (None,) if arg is type(None) else _literal_choices(arg)
            if inner is None:
                return None
            choices += [c for c in inner if c not in choices]
        return tuple(choices)
    return None


def _compile(annotation: Any) -> tuple[_Check | None, str]:
    """The check of an annotation (None: anything passes, as for `Any` and unknown annotations) and what it wants."""
    if annotation is None:
        annotation = type(None)
    if annotation in _SCALAR_CHECKS:
        return _SCALAR_CHECKS[annotation]
    choices = _literal_choices(annotation)
    if choices is not None:
        return _literal_check(choices), "one of " + ", ".join(map(repr, choices))
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in _UNIONS:
        members = [_compile(arg) for arg in args]
        checks = [check for check, _ in members if check is not None]
        if len(checks) < len(members):
            return None, "anything"
        return _union_check(checks, " or ".join(expected for _, expected in members))
    if isinstance(annotation, type) and issubclass(annotation, Config):
        return _config_check(annotation), f"a mapping of {annotation.__name__} fields"
    if annotation is tuple or origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence_check(tuple, [_compile(args[0])[0]], True, "a list")
        if args and args != ((),):
            return _sequence_check(tuple, [_compile(a)[0] for a in args], False, f"a list of {len(args)} items")
        return _sequence_check(tuple, [None], True, "a list")
    if annotation is list or origin is list:
        return _sequence_check(list, [_compile(args[0])[0] if args else None], True, "a list")
    if annotation is dict or origin in (dict, Mapping) or annotation is Mapping:
        key, value = (_compile(args[0])[0], _compile(args[1])[0]) if len(args) == 2 else (None, None)
        return _mapping_check(key, value), "a mapping"
    return None, "anything"


def _literal_check(choices: tuple[Any, ...]) -> _Check:
    def check(value: Any) -> Any:
        # `True in (1,)` holds: a bool only matches a bool choice and a number only a number choice
        if any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
            return value
        raise _MismatchError("one of " + ", ".join(map(repr, choices)), value, choices=choices)

    return check


def _union_check(checks: list[_Check], expected: str) -> tuple[_Check, str]:
    def check(value: Any) -> Any:
        failures = []
        for member in checks:
            try:
                return member(value)
            except _MismatchError as failure:
                failures.append(failure)
        specific = [f for f in failures if f.specific]
        raise specific[0] if len(specific) == 1 else _MismatchError(expected, value)

    return check, expected


def _config_check(cls: type[Config]) -> _Check:
    def check(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            try:
                return cls.from_dict(value)
            except (ValueError, TypeError) as err:
                raise _MismatchError("", value, nested=str(err)) from err
        raise _MismatchError(f"a mapping of {cls.__name__} fields", value)

    return check


def _sequence_check(kind: type, items: list[_Check | None], variadic: bool, expected: str) -> tuple[_Check, str]:
    def check(value: Any) -> Any:
        if not isinstance(value, (tuple, list)) or (not variadic and len(value) != len(items)):
            raise _MismatchError(expected, value)
        out, changed = [], type(value) is not kind
        for i, item in enumerate(value):
            item_check = items[0] if variadic else items[i]
            if item_check is None:
                out.append(item)
                continue
            try:
                new = item_check(item)
            except _MismatchError as failure:
                raise failure.at(f"[{i}]") from None
            changed = changed or new is not item
            out.append(new)
        return kind(out) if changed else value

    return check, expected


def _mapping_check(keys: _Check | None, values: _Check | None) -> _Check:
    def check(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _MismatchError("a mapping", value)
        if keys is None and values is None:
            return value if type(value) is dict else dict(value)
        out, changed = {}, type(value) is not dict
        for key, item in value.items():
            step = f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
            try:
                new_key = key if keys is None else keys(key)
                new = item if values is None else values(item)
            except _MismatchError as failure:
                raise failure.at(step) from None
            changed = changed or new is not item or new_key is not key
            out[new_key] = new
        return out if changed else value

    return check


_FIELDS: dict[type, tuple[dict[str, Any], tuple[tuple[str, _Check], ...]]] = {}


def _fields_of(cls: type) -> tuple[dict[str, Any], tuple[tuple[str, _Check], ...]]:
    """The resolved type hints of a config class and the checks of its fields, computed once per class."""
    cached = _FIELDS.get(cls)
    if cached is None:
        hints = get_type_hints(cls)
        checks = [(f.name, _compile(hints[f.name])[0]) for f in dataclasses.fields(cls)]
        cached = _FIELDS[cls] = (hints, tuple((n, c) for n, c in checks if c is not None))
    return cached


def _from_text(annotation: Any, value: Any) -> Any:
    """A command-line string for a scalar field (`int`, `float`, `bool`, optionally `| None`) as that scalar.

    Overrides of fields inside free-form mappings (e.g. `--model.adapter_config.fbank.num_mel_bins=64`) reach the
    config as text. Only exact spellings convert: `true`/`false` (any case, surrounding spaces), integers for
    `int` (`16`, not `16.0`), numbers for `float`, `null`/`none` for an optional field. Fields that take the text
    itself (`str`, a `Literal` naming it) keep it; anything else is returned unchanged for `__post_init__` to reject
    by name. A union of one scalar kind and others (`int | tuple[int, int]`) reads text as that scalar.
    """
    if not isinstance(value, str):
        return value
    members = get_args(annotation) if get_origin(annotation) in _UNIONS else (annotation,)
    if any(m is str or m is Any or (get_origin(m) is Literal and value in get_args(m)) for m in members):
        return value
    text = value.strip()
    if type(None) in members and text.lower() in ("null", "none"):
        return None
    scalars = [m for m in members if m in (bool, int, float)]
    if len(scalars) != 1:
        return value
    if scalars[0] is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if scalars[0] is int and _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if scalars[0] is float and _FLOAT_TEXT.fullmatch(text):
        return float(text)
    return value


@contextmanager
def _reading_text(text: bool | None) -> Iterator[None]:
    if text is None:
        yield
        return
    token = _TEXT.set(text)
    try:
        yield
    finally:
        _TEXT.reset(token)


@dataclasses.dataclass
class Config:
    """Base class of all mmsdk configs.

    Subclasses are dataclasses. `__post_init__` checks every field against its type annotation (`bool`, `int`,
    `float`, `str`, `None`, `Literal`, tuples, lists, dicts, unions, nested configs; `Any` passes) and subclasses
    add their own range checks, raising `ValueError` that names the field.
    """

    def __post_init__(self) -> None:
        cls = type(self)
        for name, check in _fields_of(cls)[1]:
            value = getattr(self, name)
            try:
                new = check(value)
            except _MismatchError as failure:
                raise ValueError(failure.message(f"{cls.__name__}.{name}")) from None
            if new is not value:  # numpy scalars, lists for tuples, mappings for nested configs
                object.__setattr__(self, name, new)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | C | None, *, text: bool | None = None) -> C:
        """Builds the config from a mapping, recursing into nested configs.

        Args:
            data: the fields (a mapping), an instance (returned as is) or None (the defaults).
            text: read strings given for `bool`, `int` and `float` fields as command-line text (`"false"`, `"16"`);
                False for saved files, where a string for a number is an error. None keeps the setting of the
                enclosing `from_dict` (nested configs, adapter configs), True at the outermost call.

        Raises:
            ValueError: if `data` holds keys the config does not define, or a value of the wrong type (named in the
                message).
        """
        if data is None:
            with _reading_text(text):
                return cls()
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} expects a mapping of fields, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; valid keys are {names}")
        hints = _fields_of(cls)[0]
        with _reading_text(text):
            convert = _TEXT.get()
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
                kwargs[name] = _from_text(hints[name], value) if convert else value
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


def _config_type(annotation: Any) -> type[Config] | None:
    """Returns the Config subclass named by an annotation (`X` or `X | None`), else None (containers of configs,
    e.g. `dict[str, X]`, are parsed by `__post_init__`)."""
    union = get_origin(annotation) in _UNIONS
    candidates = get_args(annotation) if union else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Config):
            return candidate
    return None


def require(condition: bool, owner: object, field: str, message: str) -> None:
    """Raises `ValueError` naming `Owner.field` when `condition` is false."""
    if not condition:
        name = owner if isinstance(owner, str) else type(owner).__name__
        raise ValueError(f"{name}.{field}: {message}")
