"""Writing a benchmark's report: the JSON beside its Markdown rendering (shared by the benchmark scripts)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], output: Path, markdown: Callable[[dict[str, Any]], str]) -> None:
    """Writes `output`.json and `output`.md (called after every measured part, so a stopped run keeps its results)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    output.with_suffix(".md").write_text(markdown(report))
