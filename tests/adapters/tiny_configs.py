"""Tiny per-adapter configs for the adapter contract test: one line per registered adapter.

`TINY[name]` is the adapter's config as a dict (the `adapter_config` of a ModelConfig), kept small enough that
building and running every objective and task takes well under a second on a CPU. `TINY_ENCODER` is the shared
encoder used with every adapter; `ENCODER_OVERRIDES[name]` may change fields of it for one adapter (e.g. rope axes).
"""

from __future__ import annotations

from typing import Any

TINY: dict[str, dict[str, Any]] = {
    "patchtst": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "timerxl": {"context_length": 32, "num_channels": 2, "patch_len": 8},
    "moirai": {"context_length": 32, "num_channels": 2, "patch_sizes": [4, 8], "patch_size": 8, "max_variates": 4},
    "pointmae": {
        "num_points": 64,
        "num_groups": 8,
        "group_size": 8,
        "embed_hidden": 16,
        "embed_local": 16,
        "embed_global": 32,
        "cls_hidden": 16,
    },
}

TINY_ENCODER: dict[str, Any] = {"dim": 16, "depth": 1, "heads": 2}

ENCODER_OVERRIDES: dict[str, dict[str, Any]] = {
    "timerxl": {"rope": "1d", "variate_bias": True},
    "moirai": {"rope": "1d", "variate_bias": True},
}
