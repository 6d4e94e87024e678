"""Checks that turn bad time-series input into clear errors: unreadable CSV files (binary, another encoding, not a
table), non-numeric or undated columns, and series or channels without a single observed value.

Errors name the file (or the data source) and the column, and never echo the file's contents: they show column
names, row numbers and shapes only (a CSV of text lines parses into one column named after its first line, which
may be shown, shortened).
"""

from __future__ import annotations

import codecs
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")
_SNIFF_BYTES = 8192


def short(name: Any, width: int = 40) -> str:
    """A column name for messages, cut to `width` characters."""
    text = str(name)
    return text if len(text) <= width else f"{text[: width - 3]}..."


def shown(names: Sequence[Any], limit: int = 20) -> str:
    """A short list of column names for messages: the first `limit`, each cut by `short`."""
    cut = [short(n) if isinstance(n, str) else n for n in list(names)[:limit]]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"{cut}{more}"


def _sniff(path: Path, encoding: str, option: str) -> None:
    """Refuses binary files (NUL bytes) before pandas parses them; UTF-16/32 text is named as such."""
    if path.name.lower().endswith(_COMPRESSED) or codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{path}: the file is UTF-16 text, not {encoding}; pass {option}='utf-16'")
    if b"\x00" in head:
        raise ValueError(f"{path}: not a text CSV file (binary data: NUL bytes within its first {len(head)} bytes)")


def read_csv(path: Path, encoding: str = "utf-8", option: str = "encoding") -> pd.DataFrame:
    """`pandas.read_csv` whose errors are ValueErrors naming the file, never showing its lines.

    Args:
        path: the CSV (compressed ones, e.g. .csv.gz, are decompressed by pandas).
        encoding: text encoding of the file.
        option: how the caller's encoding option is spelled in messages (e.g. "data.encoding").

    Raises:
        ValueError: for a binary file, text that is not `encoding` (naming `option`), an unknown encoding, an empty
            file, a file pandas cannot parse as a table, or a compressed file that cannot be decompressed.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"{path}: unknown text encoding {encoding!r} ({option})") from None
    _sniff(path, encoding, option)
    try:
        return pd.read_csv(path, encoding=encoding)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: the file is not {encoding} text (undecodable byte at offset {error.start}); if it is a CSV in "
            f"another encoding, pass {option}=... (e.g. 'latin-1' or 'cp1252'); otherwise it is not a text file"
        ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the CSV is empty") from None
    except pd.errors.ParserError as error:  # pandas names lines and field counts, not contents
        reason = str(error).strip().splitlines()[-1][:200] if str(error).strip() else "parse error"
        raise ValueError(f"{path}: not a readable CSV table ({reason})") from None
    except (EOFError, zlib.error, OSError) as error:
        if isinstance(error, OSError) and not path.name.lower().endswith(_COMPRESSED):
            raise
        raise ValueError(f"{path}: cannot decompress the file ({type(error).__name__})") from None


def first_bad_row(column: pd.Series, converted: pd.Series) -> int | None:
    """Position of the first entry that is present in `column` but missing after conversion (NaN / NaT)."""
    bad = np.flatnonzero(converted.isna().to_numpy() & column.notna().to_numpy())
    return int(bad[0]) if len(bad) else None


def non_numeric(source: str, name: Any, column: pd.Series, echo_values: bool) -> ValueError:
    """The error for a column that is not numeric: the first offending entry's value only with `echo_values`."""
    row = first_bad_row(column, pd.to_numeric(column, errors="coerce"))
    if echo_values:
        example = column.iloc[row if row is not None else 0]
        return ValueError(f"{source}: column {name!r} is not numeric (value {example!r})")
    where = "" if row is None else f"; data row {row + 1} of {len(column)} is not a number"
    return ValueError(f"{source}: column {short(name)!r} is not numeric ({column.dtype}{where})")


def parse_times(column: pd.Series, source: str, name: Any, echo_values: bool = False) -> pd.DatetimeIndex:
    """A time column as a DatetimeIndex.

    Raises:
        ValueError: naming the source, the column and the first row that is not a date (its value only with
            `echo_values`: pandas quotes it in its own message).
    """
    try:
        return pd.DatetimeIndex(pd.to_datetime(column))
    except (ValueError, TypeError, OverflowError) as error:
        if echo_values:
            raise ValueError(f"{source}: time column {name!r} does not hold dates: {error}") from error
        name = short(name)
        row = first_bad_row(column, pd.to_datetime(column, errors="coerce"))
        where = f": data row {row + 1} of {len(column)} is not a date" if row is not None else ""
        raise ValueError(
            f"{source}: time column {name!r} does not hold dates{where} (or not in the format of the rows before it)"
        ) from None


def unobserved(values: np.ndarray) -> list[int]:
    """Channels (last axis) of an (..., C) array without a single observed (non-NaN) value."""
    flat = np.asarray(values).reshape(-1, values.shape[-1])
    return [int(j) for j in np.flatnonzero(~(~np.isnan(flat)).any(axis=0))] if flat.shape[0] else []


def check_observed(
    values: np.ndarray, names: Sequence[str] | None, source: str, where: str = "", hint: str = "drop or fill them"
) -> None:
    """Raises when an (..., C) array has no observed value at all, or a channel that has none.

    Partly missing values are fine (the models mask NaN); a channel that is NaN everywhere leaves the model
    nothing to learn from (a training loss of 0 on it), so it is an error naming the channel.

    Args:
        values: (..., C) floats, NaN where missing.
        names: the C channel names (None: positions).
        source: what the values are, for the message (a file, "WindowDataset").
        where: where in the data they lie, for the message (e.g. " in rows 0-70").
        hint: what to do about empty channels, for the message.
    """
    empty = unobserved(values)
    if not empty:
        return
    channels = values.shape[-1]
    label = [names[j] if names is not None else j for j in empty]
    if len(empty) == channels:
        raise ValueError(
            f"{source}: the series has no observed value{where}: every value of its {channels} channel(s) is NaN "
            f"(shape {tuple(values.shape)})"
        )
    raise ValueError(
        f"{source}: channel(s) {shown(label)} of {channels} have no observed value{where} (all NaN), so the model has"
        f" nothing to learn from them; {hint}"
    )
