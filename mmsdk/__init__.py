"""mmsdk: a modality-agnostic masked-modeling SDK.

One shared masked/causal transformer core plugs into per-modality adapters (`mmsdk.adapters`), and an export
layer (`mmsdk.export`) emits ONNX models. Torch-backed names are imported lazily, on first attribute access,
so that `import mmsdk.export.runtime` (numpy + onnxruntime only) never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "TokenBatch": "mmsdk.tokens",
    "Config": "mmsdk.config",
    "TransformerConfig": "mmsdk.transformer",
    "Transformer": "mmsdk.transformer",
    "AttentionMask": "mmsdk.attention_mask",
    "Mask": "mmsdk.masking",
    "MaskingConfig": "mmsdk.masking",
    "ModelConfig": "mmsdk.backbone",
    "HeadConfig": "mmsdk.heads",
    "Adapter": "mmsdk.adapter",
    "register_adapter": "mmsdk.adapter",
    "available_adapters": "mmsdk.adapter",
    "build_model": "mmsdk.models",
    "build_task_model": "mmsdk.models",
    "TaskModel": "mmsdk.models",
    "EmbeddingModel": "mmsdk.models",
    "save_pretrained": "mmsdk.hub",
    "from_pretrained": "mmsdk.hub",
    "pretrain": "mmsdk.training.api",
    "finetune": "mmsdk.training.api",
    "OptimConfig": "mmsdk.training.optim",
    "TrainerConfig": "mmsdk.training.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmsdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
