"""Demos, one per modality: the whole product on bundled data in a few CPU minutes (`mmsdk demo --modality X`).

A demo is a module with a `DemoConfig` (a :class:`~mmsdk.config.Config` with `output_dir`, `pretrain_steps`,
`finetune_steps` and `progress_bar` fields), `run_demo(config) -> summary` and `render_summary(summary)`, declared
in the entry-point group `mmsdk.demos` (name = modality).
"""

from __future__ import annotations

from typing import Any

from mmsdk.contracts.registry import Registry


def _is_demo(name: str, obj: Any) -> None:
    missing = [attr for attr in ("DemoConfig", "run_demo", "render_summary") if not hasattr(obj, attr)]
    if missing:
        raise TypeError(f"demo {name!r} ({getattr(obj, '__name__', obj)}) lacks {missing}")


DEMOS: Registry[Any] = Registry("demo", "mmsdk.demos", _is_demo)


def run_demo(modality: str, **overrides: Any) -> dict[str, Any]:
    """Runs the demo of a modality with some `DemoConfig` fields overridden, prints and returns its summary.

    Raises:
        ValueError: for an unknown modality (listing the known ones) or an invalid field.
    """
    module = DEMOS.get(modality)
    summary = module.run_demo(module.DemoConfig.from_dict(overrides))
    module.render_summary(summary)
    return summary
