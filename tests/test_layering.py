"""The package layering, checked from the source: which layer may import which, and what an adapter import costs.

layers (torch only) ← contracts ← models ← hub ← training ← cli, demos
adapters import the core but never training; export imports the core and the adapter interface, never training.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mmsdk": ROOT / "mmsdk", "mmsdk.adapters": ROOT / "adapters", "mmsdk.export": ROOT / "export"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _module_name(path: Path) -> str:
    for package, folder in sorted(PACKAGES.items(), key=lambda kv: -len(kv[0])):
        if folder in path.parents or path.parent == folder:
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((package, *parts))
    raise AssertionError(path)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = _module_name(path).split(".")
                module = ".".join([*base[: len(base) - node.level + (path.name == "__init__.py")], module])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names if module.startswith("mmsdk")}
    return found


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _violations(folder: Path, allowed: callable) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {m}" for p in _files(folder) for m in sorted(_imports(p)) if not allowed(m)]


def _top(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_building_blocks_import_only_torch() -> None:
    def allowed(m: str) -> bool:
        return _top(m) in STDLIB or _top(m) == "torch" or _within(m, "mmsdk.layers", "mmsdk.config")

    assert not _violations(ROOT / "mmsdk" / "layers", allowed)


def test_the_config_base_imports_only_the_standard_library() -> None:
    assert all(_top(m) in STDLIB for m in _imports(ROOT / "mmsdk" / "config.py"))


def test_contracts_import_no_adapter_model_or_training() -> None:
    def allowed(m: str) -> bool:
        return not _within(
            m,
            "mmsdk.adapters",
            "mmsdk.models",
            "mmsdk.training",
            "mmsdk.hub",
            "mmsdk.cli",
            "mmsdk.demos",
            "mmsdk.export",
            "lightning",
        )

    assert not _violations(ROOT / "mmsdk" / "contracts", allowed)


def test_model_assembly_and_save_load_do_not_import_training() -> None:
    def allowed(m: str) -> bool:
        return not _within(m, "mmsdk.training", "mmsdk.cli", "mmsdk.demos", "mmsdk.adapters", "lightning")

    assert not _violations(ROOT / "mmsdk" / "models", allowed)
    assert not _violations(ROOT / "mmsdk" / "hub", allowed)


@pytest.mark.parametrize("folder", ["adapters", "export"])
def test_adapters_and_export_never_import_training(folder: str) -> None:
    def allowed(m: str) -> bool:
        return not _within(m, "mmsdk.training", "mmsdk.cli", "mmsdk.demos", "lightning")

    assert not _violations(ROOT / folder, allowed)


def test_the_core_names_no_module_of_its_own_adapters() -> None:
    """Built-in adapter families are found through entry points, like any other package's."""
    core = [p for p in _files(ROOT / "mmsdk") if "demos" not in p.parts]
    offenders = [str(p.relative_to(ROOT)) for p in core if "mmsdk.adapters." in p.read_text()]
    assert not offenders


def test_importing_the_adapters_model_code_pulls_in_no_data_stack() -> None:
    from mmsdk.contracts.registry import ADAPTERS

    modules = sorted({ep.value.split(":")[0] for ep in ADAPTERS._declared().values()})
    code = (
        "import sys\n"
        "from mmsdk.contracts.registry import ADAPTERS\n"
        "from mmsdk.models import build_model\n"
        "for name in ADAPTERS.names():\n"
        "    cls = ADAPTERS.get(name)\n"
        "    build_model({'adapter': name, 'adapter_config': cls.example_config()})\n"
        "heavy = ('pandas', 'xarray', 'yaml', 'statsmodels', 'open3d', 'matplotlib', 'lightning', 'onnx', 'scipy',\n"
        "         'soundfile', 'torchaudio', 'av')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", (modules, out.stdout, out.stderr[-2000:])


def test_every_public_name_of_the_packages_resolves() -> None:
    """The lazily exported names (`mmsdk.X`, `mmsdk.export.X`, `mmsdk.adapters.<family>.X`) all import, including the
    ones of the one-adapter API (ModelConfig, HeadConfig, Mask, build_model, save_pretrained, pretrain, ...)."""
    import importlib

    before = {
        "TokenBatch",
        "Config",
        "TransformerConfig",
        "Transformer",
        "AttentionMask",
        "Mask",
        "MaskingConfig",
        "ModelConfig",
        "HeadConfig",
        "Adapter",
        "register_adapter",
        "available_adapters",
        "build_model",
        "build_task_model",
        "TaskModel",
        "EmbeddingModel",
        "save_pretrained",
        "from_pretrained",
        "pretrain",
        "finetune",
        "OptimConfig",
        "TrainerConfig",
    }
    import mmsdk

    assert before <= set(mmsdk.__all__)
    for package in (
        "mmsdk",
        "mmsdk.export",
        "mmsdk.adapters.timeseries",
        "mmsdk.adapters.pointcloud",
        "mmsdk.adapters.audio",
        "mmsdk.adapters.video",
    ):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, (package, name)
