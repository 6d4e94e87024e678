"""Header readers for PLY, PCD and OFF files, and a check that a file's body holds what its header declares.

open3d pads a short body silently: a truncated binary PLY gets (0, 0, 0) vertices, a truncated ASCII PCD gets
uninitialized memory, and a PLY whose header claims a million vertices over a one-line body yields a million
points. `check_body` parses the header itself (element counts, ASCII or binary, bytes per row), walks the body the
way open3d reads it (tokens for PLY, lines for PCD and OFF) without converting numbers, and raises a ValueError
naming the file and what is missing. Messages never echo the file's lines: only element, property and field names
(the file's "columns") and counts.
"""

from __future__ import annotations

import logging
import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

MAX_HEADER_LINES = 1000
"""A header longer than this is not a header (a PLY or PCD header has tens of lines)."""

PLY_TYPES = {
    "char": ("b", 1), "int8": ("b", 1), "uchar": ("B", 1), "uint8": ("B", 1),
    "short": ("h", 2), "int16": ("h", 2), "ushort": ("H", 2), "uint16": ("H", 2),
    "int": ("i", 4), "int32": ("i", 4), "uint": ("I", 4), "uint32": ("I", 4),
    "float": ("f", 4), "float32": ("f", 4), "double": ("d", 8), "float64": ("d", 8),
}  # fmt: skip
"""PLY scalar type -> (struct code, bytes)."""

OFF_KEYWORDS = {"OFF": 0, "COFF": 4, "NOFF": 3, "CNOFF": 7}
"""The OFF keywords open3d reads -> numbers a vertex line holds after its xyz (normals 3, RGBA 4)."""

_PCD_TYPES = {1: "uchar", 2: "ushort", 4: "uint", 8: "double"}  # PCD SIZE -> a PLY type of that size
_PLURALS = {"vertex": "vertices", "face": "faces", "edge": "edges"}


@dataclass
class Property:
    """One property (column) of an element: a scalar (`count_type` None) or a list whose length has `count_type`."""

    name: str
    type: str
    count_type: str | None = None


@dataclass
class Element:
    """One PLY element, the points of a PCD, or the vertices / faces of an OFF: `count` rows of `properties`."""

    name: str
    count: int
    properties: list[Property] = field(default_factory=list)

    @property
    def row_bytes(self) -> int | None:
        """Bytes of one binary row, or None when a row holds a list (variable size)."""
        if any(p.count_type is not None for p in self.properties):
            return None
        return sum(PLY_TYPES[p.type][1] for p in self.properties)

    def plural(self) -> str:
        """ "vertices" for "vertex", "points" for "points", "<name> rows" for others."""
        return self.name if self.name == "points" else _PLURALS.get(self.name, f"{self.name} rows")


@dataclass
class Header:
    """What a header declares.

    Attributes:
        kind: "PLY", "PCD" or "OFF".
        format: "ascii", "binary_little_endian", "binary_big_endian" (PLY), "binary", "binary_compressed" (PCD).
        elements: in body order.
        body_offset: byte offset where the body starts.
    """

    kind: str
    format: str
    elements: list[Element]
    body_offset: int

    def element(self, name: str) -> Element | None:
        """The element called `name`, or None."""
        return next((e for e in self.elements if e.name == name), None)


def _bad(path: Path, kind: str, what: str) -> ValueError:
    return ValueError(f"{path}: the file could not be read as a {kind} file: {what}")


def _short(path: Path, kind: str, what: str) -> ValueError:
    return ValueError(f"{path}: truncated or short {kind} file: {what}")


def _count(path: Path, kind: str, word: str | bytes, what: str) -> int:
    try:
        value = int(word)
    except ValueError:
        raise _bad(path, kind, f"the header's {what} is not an integer") from None
    if value < 0:
        raise _bad(path, kind, f"the header's {what} is negative ({value})")
    return value


def _header_lines(
    file: BinaryIO, path: Path, kind: str, is_last: Callable[[list[str]], bool]
) -> tuple[list[list[str]], int]:
    """Header lines (as words) up to and including the one `is_last` accepts, and the byte offset of the body."""
    lines: list[list[str]] = []
    for _ in range(MAX_HEADER_LINES):
        raw = file.readline()
        if not raw:
            raise _bad(path, kind, "the file ends inside its header")
        try:
            words = raw.decode("ascii").split()
        except UnicodeDecodeError:
            raise _bad(path, kind, f"header line {len(lines) + 1} is not ASCII text") from None
        lines.append(words)
        if is_last(words):
            return lines, file.tell()
    raise _bad(path, kind, f"no end of header within its first {MAX_HEADER_LINES} lines")


# ---------------------------------------------------------------------------------------------------------- headers


def read_ply_header(path: Path) -> Header:
    """Parses a PLY header (ASCII even in binary files).

    Raises:
        ValueError: naming the file, for a missing `ply` line, format line or `end_header`, an unknown format or
            property type, or a line that is not a PLY header line.
    """
    with path.open("rb") as file:
        if file.readline().strip() != b"ply":
            raise _bad(path, "PLY", "the first line is not 'ply'")
        lines, offset = _header_lines(file, path, "PLY", lambda words: words == ["end_header"])
    fmt, elements = None, []
    for number, words in enumerate(lines, start=2):
        if not words or words[0] in ("comment", "obj_info", "end_header"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append(Element(words[1], _count(path, "PLY", words[2], f"count of element {words[1]!r}")))
        elif words[0] == "property" and elements and len(words) in (3, 5):
            prop = Property(words[4], words[3], words[2]) if words[1] == "list" else Property(words[-1], words[1])
            if len(words) == 5 and words[1] != "list":
                raise _bad(path, "PLY", f"header line {number} is a malformed property line")
            if prop.type not in PLY_TYPES or (prop.count_type is not None and prop.count_type not in PLY_TYPES):
                raise _bad(path, "PLY", f"property {prop.name!r} of element {elements[-1].name!r} has an unknown type")
            elements[-1].properties.append(prop)
        else:
            raise _bad(path, "PLY", f"header line {number} is not a PLY header line")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _bad(path, "PLY", "the header has no 'format ascii|binary_little_endian|binary_big_endian 1.0' line")
    return Header("PLY", fmt, elements, offset)


def read_pcd_header(path: Path) -> Header:
    """Parses a PCD header into one `points` element whose properties are the FIELDS (a field of COUNT k appears
    k times).

    Raises:
        ValueError: naming the file, for a header without FIELDS or DATA, SIZE / COUNT entries that do not match
            the FIELDS, or a binary PCD without usable SIZE entries.
    """
    with path.open("rb") as file:
        lines, offset = _header_lines(file, path, "PCD", lambda words: bool(words) and words[0].upper() == "DATA")
    entries = {words[0].upper(): words[1:] for words in lines if words and not words[0].startswith("#")}
    names = entries.get("FIELDS", [])
    if not names:
        raise _bad(path, "PCD", "the header has no FIELDS line")
    counts = [_count(path, "PCD", c, "COUNT") for c in entries.get("COUNT", ["1"] * len(names))]
    sizes = [_count(path, "PCD", s, "SIZE") for s in entries.get("SIZE", [])]
    if len(counts) != len(names) or (sizes and len(sizes) != len(names)):
        raise _bad(path, "PCD", f"the SIZE / COUNT entries do not match the {len(names)} FIELDS {names}")
    if entries.get("POINTS"):
        points = _count(path, "PCD", entries["POINTS"][0], "POINTS")
    else:
        width, height = (entries.get(key, ["1"])[0] for key in ("WIDTH", "HEIGHT"))
        points = _count(path, "PCD", width, "WIDTH") * _count(path, "PCD", height, "HEIGHT")
    data = (entries["DATA"] or ["ascii"])[0].lower()
    fmt = next((f for f in ("binary_compressed", "binary") if data.startswith(f)), "ascii")  # as open3d matches
    if fmt != "ascii" and (not sizes or any(size not in _PCD_TYPES for size in sizes)):
        raise _bad(path, "PCD", "a binary PCD needs a SIZE of 1, 2, 4 or 8 bytes for each field")
    properties = [
        Property(name, _PCD_TYPES.get(size, "uchar"))
        for name, size, count in zip(names, sizes or [1] * len(names), counts)
        for _ in range(count)
    ]
    return Header("PCD", fmt, [Element("points", points, properties)], offset)


def _off_lines(file: BinaryIO) -> Iterator[list[bytes]]:
    """Words of each OFF line that is neither blank nor a comment (how open3d walks an OFF file)."""
    for line in file:
        words = line.split()
        if words and not words[0].startswith(b"#"):
            yield words


def read_off_header(path: Path) -> Header:
    """Parses an OFF header the way open3d does: a keyword line (OFF, COFF, NOFF or CNOFF) and a "vertices faces
    edges" line; blank and '#' lines are skipped.

    Raises:
        ValueError: naming the file, for another keyword (e.g. a ModelNet-style "OFF<counts>" line, which open3d
            does not read) or a count line without three non-negative integers.
    """
    with path.open("rb") as file:
        lines = _off_lines(file)
        keyword = b" ".join(next(lines, [])).decode("ascii", "replace")
        if keyword not in OFF_KEYWORDS:
            raise _bad(path, "OFF", "the first line must be OFF, COFF, NOFF or CNOFF alone (open3d reads no other)")
        counts = next(lines, [])
        if len(counts) < 3:
            raise _bad(path, "OFF", "the second line must hold the vertex, face and edge counts")
        vertices, faces = (_count(path, "OFF", word, f"{what} count") for word, what in zip(counts, ("vertex", "face")))
        offset = file.tell()
    names = ("x", "y", "z", *(f"v{i}" for i in range(OFF_KEYWORDS[keyword])))
    faces_element = Element("face", faces, [Property("vertex_indices", "int", "int")])
    elements = [Element("vertex", vertices, [Property(name, "float") for name in names]), faces_element]
    return Header("OFF", "ascii", elements, offset)


def read_header(path: Path) -> Header | None:
    """The header of a .ply / .pcd / .off file; None for other suffixes."""
    readers = {".ply": read_ply_header, ".pcd": read_pcd_header, ".off": read_off_header}
    reader = readers.get(path.suffix.lower())
    return None if reader is None else reader(path)


# ------------------------------------------------------------------------------------------------------------ bodies


class _Tokens:
    """Whitespace-separated tokens of an ASCII body read line by line; a run of skipped tokens is counted per line,
    not split into one Python object each."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending: list[bytes] = []

    def skip(self, n: int) -> int:
        """Skips up to `n` tokens; returns how many there were."""
        done = min(n, len(self._pending))
        del self._pending[:done]
        while done < n:
            line = next(self._lines, None)
            if line is None:
                break
            words = line.split()
            if done + len(words) > n:
                self._pending = words[n - done :]
                return n
            done += len(words)
        return done

    def length(self) -> int | None:
        """Consumes the next token as a list length; None at the end of the body or for a token that is none."""
        while not self._pending:
            line = next(self._lines, None)
            if line is None:
                return None
            self._pending = line.split()
        try:
            value = int(self._pending.pop(0))
        except ValueError:
            return None
        return value if value >= 0 else None


def _ply_ascii_rows(tokens: _Tokens, element: Element) -> int:
    """Complete rows of `element` at the reader's position (rply reads ASCII PLY token by token)."""
    if element.row_bytes is not None:
        width = len(element.properties)
        return element.count if width == 0 else tokens.skip(element.count * width) // width
    for row in range(element.count):
        for prop in element.properties:
            n = 1 if prop.count_type is None else tokens.length()
            if n is None or tokens.skip(n) < n:
                return row
    return element.count


def _line_rows(
    lines: Iterator[list[bytes]], count: int, needs: Callable[[list[bytes]], int], skip_short: bool
) -> tuple[int, bool]:
    """(rows, whether a short line ended them) of a line-based body: a row is a line of at least `needs(words)`
    tokens. For PCD open3d skips a short line and reads the next (`skip_short`); for OFF a short line ends the read."""
    rows = 0
    while rows < count:
        words = next(lines, None)
        if words is None:
            return rows, False
        if len(words) < needs(words):
            if skip_short:
                continue
            return rows, True
        rows += 1
    return rows, False


def _face_tokens(words: list[bytes]) -> int:
    try:
        return 1 + max(int(words[0]), 0)
    except ValueError:
        return len(words) + 1  # not a face line


def _ascii_rows(path: Path, header: Header) -> tuple[list[int], str]:
    """Complete rows of each element of an ASCII body, and why the rows end early where they do ("" for the end of
    the file)."""
    held: list[int] = []
    why = ""
    with path.open("rb") as file:
        file.seek(header.body_offset)
        if header.kind == "PLY":
            tokens = _Tokens(iter(file))
            for element in header.elements:
                held.append(_ply_ascii_rows(tokens, element))
                if held[-1] < element.count:
                    break
        elif header.kind == "PCD":
            element = header.elements[0]
            width = len(element.properties)
            rows, _ = _line_rows((line.split() for line in file), element.count, lambda _: width, skip_short=True)
            held.append(rows)
            why = f"; a point line needs {width} values (FIELDS x COUNT), shorter lines are skipped"
        else:
            lines = _off_lines(file)
            vertex, face = header.elements
            width = len(vertex.properties)
            rows, short = _line_rows(lines, vertex.count, lambda _: width, skip_short=False)
            held.append(rows)
            why = f"; the next vertex line holds fewer than the {width} numbers this OFF variant needs" * short
            if rows == vertex.count:
                rows, short = _line_rows(lines, face.count, _face_tokens, skip_short=False)
                held.append(rows)
                why = "; the next face line holds fewer vertex indices than its leading count" * short
    return held + [0] * (len(header.elements) - len(held)), why


def _binary_list_rows(body: memoryview, offset: int, element: Element, endian: str) -> tuple[int, int]:
    """(complete rows, offset after them) of a binary element whose rows hold lists."""
    props = element.properties
    if len(props) == 1 and element.count:  # the usual faces: one list, all of one length (checked vectorized)
        code, count_size = PLY_TYPES[props[0].count_type]  # type: ignore[index]
        if offset + count_size <= len(body):
            first = struct.unpack_from(endian + code, body, offset)[0]
            stride = count_size + max(first, 0) * PLY_TYPES[props[0].type][1]
            if offset + element.count * stride <= len(body):
                lengths = np.ndarray((element.count,), np.dtype(endian + code), body, offset, (stride,))
                if (lengths == first).all():
                    return element.count, offset + element.count * stride
    for row in range(element.count):
        for prop in props:
            size = PLY_TYPES[prop.type][1]
            if prop.count_type is not None:
                code, count_size = PLY_TYPES[prop.count_type]
                if offset + count_size > len(body):
                    return row, offset
                size *= max(struct.unpack_from(endian + code, body, offset)[0], 0)
                offset += count_size
            if offset + size > len(body):
                return row, offset
            offset += size
    return element.count, offset


def _binary_rows(path: Path, header: Header) -> list[int]:
    """Complete rows of each element of a binary PLY or PCD body."""
    endian = ">" if header.format == "binary_big_endian" else "<"
    held: list[int] = []
    with path.open("rb") as file:
        remaining = file.seek(0, 2) - header.body_offset
        if all(e.row_bytes is not None for e in header.elements):  # sizes alone tell; no need to map the file
            for element in header.elements:
                row = element.row_bytes or 0
                held.append(element.count if row == 0 else min(element.count, max(remaining, 0) // row))
                remaining -= held[-1] * row
            return held
        if remaining <= 0:
            return [0] * len(header.elements)
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            body = memoryview(mapped)[header.body_offset :]
            try:
                offset = 0
                for element in header.elements:
                    row = element.row_bytes
                    if row is None:
                        rows, offset = _binary_list_rows(body, offset, element, endian)
                    else:
                        rows = element.count if row == 0 else min(element.count, (len(body) - offset) // row)
                        offset += rows * row
                    held.append(rows)
                    if rows < element.count:
                        break
            finally:
                body.release()
    return held + [0] * (len(header.elements) - len(held))


def _compressed_problem(path: Path, header: Header) -> str | None:
    """What is wrong with a binary_compressed PCD body, or None."""
    element = header.elements[0]
    expected = element.count * (element.row_bytes or 0)
    with path.open("rb") as file:
        file.seek(header.body_offset)
        sizes = file.read(8)
        if len(sizes) < 8:
            return f"the header declares {element.count} points but the compressed body is missing"
        compressed, uncompressed = struct.unpack("<II", sizes)
        held = file.seek(0, 2) - header.body_offset - 8
    if uncompressed != expected:
        return f"the header declares {element.count} points ({expected} bytes), the body unpacks to {uncompressed}"
    if held < compressed:
        return f"the compressed body should be {compressed} bytes, the file holds {held}"
    return None


def check_body(path: Path) -> Header | None:
    """Checks that a .ply / .pcd / .off body holds every row its header declares.

    Returns:
        The parsed header; None for a file of another format.

    Raises:
        ValueError: naming the file and saying what is short, e.g. "truncated or short PLY file: the header
            declares 1000000 vertices, the file holds 3 complete vertices (ascii body)", or what is wrong with the
            header.
    """
    header = read_header(path)
    if header is None:
        return None
    if header.format == "binary_compressed":
        problem = _compressed_problem(path, header)
        if problem is not None:
            raise _short(path, header.kind, problem)
        return header
    held, why = _ascii_rows(path, header) if header.format == "ascii" else (_binary_rows(path, header), "")
    for element, rows in zip(header.elements, held):
        if rows < element.count:
            plural, size = element.plural(), element.row_bytes
            each = f" of {size} bytes" if header.format != "ascii" and size else ""
            raise _short(
                path,
                header.kind,
                f"the header declares {element.count} {plural}{each}, the file holds {rows} complete {plural}"
                f" ({header.format} body){why}",
            )
    return header
