"""Registries by name, open to other packages through entry points (the same mechanism the built-ins use)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmsdk.contracts.registry import ADAPTERS, DATA_BUILDERS, OBJECTIVES, TASKS, Registry


def test_built_ins_are_declared_as_entry_points_and_load_on_first_use() -> None:
    for registry, names in [
        (ADAPTERS, {"patchtst", "timerxl", "moirai", "pointmae"}),
        (OBJECTIVES, {"mae", "bert", "causal"}),
        (TASKS, {"forecast", "regression", "classification", "multilabel"}),
        (DATA_BUILDERS, {"patchtst", "timerxl", "moirai", "pointmae"}),
    ]:
        assert names <= set(registry._declared()), registry
    assert ADAPTERS.get("pointmae").name == "pointmae"


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown adapter 'nope'; known: \[.*'patchtst'"):
        ADAPTERS.get("nope")
    with pytest.raises(ValueError, match=r"unknown task 'nope'; known: \[.*'multilabel'"):
        TASKS.get("nope")


def test_register_checks_what_it_is_given() -> None:
    registry: Registry[object] = Registry("thing", "mmsdk.test_things", lambda name, obj: None)
    registry.register("a", 1)
    registry.register("a", 1)  # the same object again is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="non-empty string"):
        registry.register("", 3)
    with pytest.raises(TypeError, match="subclass of Task"):
        TASKS.register("not_a_task", int)


PLUGIN = '''
import torch
import torch.nn.functional as F
from mmsdk.adapters.timeseries.patchtst import PatchTSTAdapter
from mmsdk.contracts.tasks import Task


class ScaledPatches(PatchTSTAdapter):
    """Another package's adapter (PatchTST tokens under another name)."""
    name = "plugin_patches"


class Huber(Task):
    """Another package's task: Huber regression."""
    name = "plugin_huber"

    def evaluate(self, outputs, targets):
        loss = F.huber_loss(outputs.float(), targets.float())
        return loss, {"huber": loss}

    def example_targets(self, outputs, generator=None):
        return torch.randn(outputs.shape, generator=generator)
'''

ENTRY_POINTS = """
[mmsdk.adapters]
plugin_patches = plugin_pkg:ScaledPatches

[mmsdk.tasks]
plugin_huber = plugin_pkg:Huber

[mmsdk.data_builders]
plugin_patches = mmsdk.adapters.timeseries.data:build_forecast_data
"""

USE = """
import torch
import mmsdk
from mmsdk.contracts.registry import ADAPTERS, TASKS
assert "plugin_patches" in ADAPTERS.names() and "plugin_huber" in TASKS.names()
adapter = ADAPTERS.get("plugin_patches")
adapter.tasks = (*adapter.tasks, "plugin_huber")
config = {"adapter": "plugin_patches", "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8,
          "stride": 8}, "encoder": {"dim": 16, "depth": 1, "heads": 2}}
model = mmsdk.build_task_model(config, {"task": "plugin_huber", "num_outputs": 3})
loss, metrics = model.task.evaluate(model(model.backbone.adapter.example_input(4)), torch.randn(4, 3))
print(type(model.backbone.adapter).__module__, sorted(metrics), float(loss) > 0)
"""


def test_another_packages_entry_points_are_found(tmp_path: Path) -> None:
    """A distribution installed beside mmsdk declares an adapter, a task and a data builder; mmsdk finds them by
    name with no import path anywhere in the config."""
    (tmp_path / "plugin_pkg").mkdir()
    (tmp_path / "plugin_pkg" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "plugin_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    out = subprocess.run(
        [sys.executable, "-c", USE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["plugin_pkg", "['huber']", "True"]
