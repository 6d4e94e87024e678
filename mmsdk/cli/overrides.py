"""Command-line overrides that reach into a mapping nested inside a recipe's free-form (dict-typed) section.

jsonargparse merges `--data.max_tokens=9` into the dict-typed `data` section, but `--data.corpus.synthetic_series=8`
replaces the whole `corpus` mapping by `{"synthetic_series": "8"}`: the recipe's other corpus fields, and earlier
overrides of the same mapping, are dropped without a word (the same for `--model.modalities.audio.adapter_config.x`
or `--data.scene.noise`). :func:`merge_nested_overrides` folds such overrides into one JSON value of the dict-typed
field, built from the recipe's own value of it, and leaves every other argument to jsonargparse as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X; other annotations unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else annotation
    return annotation


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, Mapping)


def free_form_root(command: Callable[..., Any], parts: list[str]) -> int | None:
    """The index in `parts` (a dotted argument name split on ".") of the first dict-typed field along the path
    through `command`'s parameters and the config dataclasses they are typed with; None if there is none."""
    try:
        annotation = typing.get_type_hints(command).get(parts[0])
    except (NameError, TypeError):
        return None
    for index in range(len(parts)):
        annotation = _unwrap(annotation)
        if _is_mapping(annotation):
            return index
        if not (dataclasses.is_dataclass(annotation) and index + 1 < len(parts)):
            return None
        annotation = typing.get_type_hints(annotation).get(parts[index + 1])
    return None


def _value(text: str) -> Any:
    """A command-line value as the YAML value it spells ("8", "false", "[a, b]"); other text stays a string."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if parsed is None and text.strip() not in ("null", "~"):
        return text
    return parsed


def _split(args: list[str]) -> list[tuple[str, str | None, int]]:
    """(option name, value, how many list items it spans) for every item of `args`, in order."""
    out: list[tuple[str, str | None, int]] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            out.append((name, value, 1))
        elif arg.startswith("--") and index + 1 < len(args) and not args[index + 1].startswith("--"):
            out.append((arg, args[index + 1], 2))
        else:
            out.append((arg, None, 1))
        index += out[-1][2]
    return out


def _recipe(items: list[tuple[str, str | None, int]]) -> dict[str, Any]:
    """The recipe named by `--config` (the later of several wins key by key at the top level)."""
    recipe: dict[str, Any] = {}
    for name, value, _ in items:
        if name == "--config" and value is not None and Path(value).is_file():
            loaded = yaml.safe_load(Path(value).read_text())
            if isinstance(loaded, dict):
                recipe.update(loaded)
    return recipe


def _lookup(tree: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(tree, Mapping) or part not in tree:
            return {}
        tree = tree[part]
    return copy.deepcopy(tree) if isinstance(tree, Mapping) else {}


def _set(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[parts[-1]] = value


def merge_nested_overrides(args: list[str], commands: Mapping[str, Callable[..., Any]]) -> list[str]:
    """`args` with every override two or more levels inside a dict-typed field folded into one `--<field>=<JSON>`
    argument right after the last `--config`, the field's recipe value deep-merged with those overrides in order.

    Args:
        args: the command line after the program name, starting with the sub-command.
        commands: sub-command name → the function jsonargparse builds its parser from.
    """
    if not args or args[0] not in commands:
        return args
    command, items = commands[args[0]], _split(args[1:])
    merged: dict[str, dict[str, Any]] = {}  # dotted root → its value
    kept: list[str] = [args[0]]
    config_end = 1
    recipe: dict[str, Any] | None = None
    position = 1
    for name, value, span in items:
        parts = name[2:].split(".") if name.startswith("--") else []
        root = free_form_root(command, parts) if len(parts) >= 3 and value is not None else None
        if root is not None and len(parts) - root - 1 >= 2:
            recipe = _recipe(items) if recipe is None else recipe
            key = ".".join(parts[: root + 1])
            base = merged.setdefault(key, _lookup(recipe, parts[: root + 1]))
            _set(base, parts[root + 1 :], _value(value))
        else:
            kept.extend(args[position : position + span])
            if name == "--config":
                config_end = len(kept)
        position += span
    folded = [f"--{key}={json.dumps(value)}" for key, value in merged.items()]
    return kept[:config_end] + folded + kept[config_end:]
