"""Packages whose public names are imported on first access (standard library only).

`import mmsdk`, `import mmsdk.export.runtime` (numpy + onnxruntime) and resolving an adapter stay light: a package
lists where each public name lives and imports that module only when the name is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, which exports `names` (public name → module defining it).

    A name is imported on first access and then cached in the package's namespace.
    """

    def getattr_(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(getattr(sys.modules[package], "__all__", names))

    return getattr_, dir_
