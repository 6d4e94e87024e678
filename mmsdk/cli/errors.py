"""How the command line fails: one line naming the problem, exit status 2, and no code run on a recipe's behalf.

- :func:`refuse_import_paths` scans the arguments and every recipe they name (`--config`, or any YAML/JSON file
  given as a value) for `class_path` / `init_args` entries *before* parsing: jsonargparse would import the module
  such an entry names, and a recipe someone hands you must not be able to run code.
- :func:`run_guarded` turns the errors a user can cause (bad fields, files, recipes, checkpoints, a diverging run)
  into `mmsdk: error: ...` on stderr and exit status 2 (1 for a run that diverged); `--verbose` adds the traceback.
  A distributed run that loses a rank (a process or machine that died) exits with status 3 and says how to
  resume.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("mmsdk")

IMPORT_KEYS = ("class_path", "init_args", "__path__")
_RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_MESSAGE = 600


class ImportPathError(ValueError):
    """A recipe or argument holds an entry that would import code."""


def _walk(value: Any, where: str) -> Iterator[str]:
    """Dotted locations of import-path keys inside a parsed YAML/JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            location = f"{where}.{key}" if where else str(key)
            if str(key) in IMPORT_KEYS:
                yield location
            yield from _walk(item, location)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")


def _recipe_files(args: list[str]) -> list[Path]:
    """Files the arguments name that the parser would read as recipes."""
    files = []
    for index, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if arg == "--config" and index + 1 < len(args):
            value = args[index + 1]
        path = Path(value)
        if path.suffix.lower() in _RECIPE_SUFFIXES and path.is_file() and path not in files:
            files.append(path)
    return files


def refuse_import_paths(args: list[str]) -> None:
    """Raises :class:`ImportPathError` naming the field (and file) of any import-path entry.

    Checks argument names (`--trainer.class_path`), inline YAML/JSON values (`--trainer '{"class_path": ...}'`) and
    the recipe files the arguments name.
    """
    for arg in args:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and name.rsplit(".", 1)[-1] in IMPORT_KEYS:
            raise ImportPathError(f"{name}: import paths are not accepted on the command line")
        value = arg.split("=", 1)[1] if name.startswith("--") and "=" in arg else arg
        if value.lstrip().startswith(("{", "[")) and any(key in value for key in IMPORT_KEYS):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = None
            found = list(_walk(parsed, ""))
            if found or parsed is None:
                raise ImportPathError(f"{found[0] if found else value[:40]}: import paths are not accepted")
    for path in _recipe_files(args):
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ValueError(f"recipe {path} cannot be read as YAML: {type(error).__name__}") from error
        found = list(_walk(recipe, ""))
        if found:
            raise ImportPathError(
                f"recipe {path}: {found[0]}: recipes configure values, not classes; import paths are not accepted"
            )


_PARSER_KEY = re.compile(r'^Parser key "(?P<key>[^"]+)":\s*')
_UNION = re.compile(r"Does not validate against any of the Union subtypes.*?Errors:\s*-\s*(?P<first>.*)$")
_CLASS_PATH = re.compile(r"^Problem with given class_path '[^']*':\s*")
_NONE_ALTERNATIVE = re.compile(r"\s*-\s*Expected a <class 'NoneType'>.*$")


def _simplify_parser_message(text: str) -> str:
    """jsonargparse's message for a bad field of an optional config, reduced to `trainer.accelerator: <why>`.

    An optional section (`trainer: TrainerConfig | None`) fails as a union: "Parser key "trainer": Does not
    validate against any of the Union subtypes ... Errors: - Problem with given class_path ...: Parser key
    "accelerator": Expected ... - Expected a <class 'NoneType'> ...". Only the config's own error matters.
    """
    keys = []
    while True:
        match = _PARSER_KEY.match(text)
        if match:
            keys.append(match["key"])
            text = text[match.end() :]
            continue
        union = _UNION.search(text)
        if union:
            text = _NONE_ALTERNATIVE.sub("", union["first"])
            text = _CLASS_PATH.sub("", text)
            continue
        break
    return f"{'.'.join(keys)}: {text}" if keys else text


def one_line(error: BaseException) -> str:
    """The error's message on one line (jsonargparse nests causes over several lines), shortened if huge."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__
    text = _simplify_parser_message(text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _user_errors() -> tuple[type[BaseException], ...]:
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return (ValueError, TypeError, OSError, ArgumentError, MisconfigurationException, ImportError)


def _recipes_note(args: list[str], message: str) -> str:
    recipes = [str(p) for p in _recipe_files(args) if str(p) not in message]
    return f" (recipe: {', '.join(recipes)})" if recipes else ""


_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket Timeout",
              "NCCL communicator was aborted", "Watchdog caught collective operation timeout")  # fmt: skip


def _lost_a_rank(error: BaseException) -> bool:
    """Whether a distributed job's error says another rank went away (its process or its machine stopped)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return any(marker in text for marker in _PEER_GONE)


def _option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(args):
            return args[index + 1]
    return None


def _lost_rank_message(error: BaseException, args: list[str]) -> str:
    rank = os.environ.get("RANK", "?")
    where = _option(args, "output_dir") or "<output_dir>"
    cause = one_line(error)
    cause = cause if len(cause) <= 160 else cause[:157] + "..."
    return (
        f"lost contact with another rank of the distributed run (this is rank {rank}; {cause}): a process or machine "
        f"of the run stopped. Start the same command again on every machine with --resume {where}: it continues "
        "from the newest good checkpoint"
    )


def run_guarded(command: Callable[[], Any], args: list[str], verbose: bool = False) -> Any:
    """Runs `command`, turning user errors into one line on stderr and `SystemExit(2)` (1 when training diverged).

    Args:
        command: the parsed command to run.
        args: the command-line arguments (checked for import paths first; named recipes are cited in errors).
        verbose: also print the traceback.
    """
    from mmsdk.training.guards import TrainingDivergedError

    try:
        refuse_import_paths(args)
        return command()
    except KeyboardInterrupt:
        sys.stderr.write("mmsdk: interrupted\n")
        raise SystemExit(130) from None
    except TrainingDivergedError as error:
        _report(one_line(error), verbose)
        raise SystemExit(1) from error
    except RuntimeError as error:
        if not _lost_a_rank(error):
            raise
        _report(_lost_rank_message(error, args), verbose)
        raise SystemExit(3) from error
    except _user_errors() as error:
        message = one_line(error)
        _report(message + _recipes_note(args, message), verbose)
        raise SystemExit(2) from error


def _report(message: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    sys.stderr.write(f"mmsdk: error: {message}\n")
