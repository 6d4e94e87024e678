"""Test-side modules loaded by path (the test folders are not packages): the adapter contract suite, whose tiny
configs other suites reuse, and the scripts that tests run in subprocesses (`tests/training/*_script.py`).

Importable from any test as `import support` (pytest's `pythonpath` setting puts `tests/` on the path).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent


def load(path: Path, name: str) -> ModuleType:
    """The module at `path` under `name`, imported once per process (cached in `sys.modules`)."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def contract_suite() -> ModuleType:
    """tests/adapters/test_contract.py: its tiny encoder (`ENCODER`), configs (`_config`) and sizes."""
    return load(TESTS / "adapters" / "test_contract.py", "test_contract")


def training_script(name: str) -> ModuleType:
    """tests/training/<name>.py, a script that tests also run as a subprocess (e.g. `ddp_script`)."""
    return load(TESTS / "training" / f"{name}.py", name)


PATCHTST_TINY = [
    "--model.adapter_config.context_length=96",
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--data.batch_size=16",
    "--data.stride=64",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]
"""Command-line overrides that shrink the PatchTST recipes to a tiny model and a few windows, for two steps."""
