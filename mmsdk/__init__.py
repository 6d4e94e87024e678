"""mmsdk: a modality-agnostic masked-modeling SDK.

One shared masked/causal transformer core plugs into per-modality adapters (`mmsdk.adapters`), and an export
layer (`mmsdk.export`) emits ONNX models. Torch-backed names are imported lazily, on first attribute access,
so that `import mmsdk.export.runtime` (numpy + onnxruntime only) never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # pragma: no cover
    from mmsdk.adapter import Adapter, available_adapters, register_adapter
    from mmsdk.attention_mask import AttentionMask
    from mmsdk.backbone import ModelConfig
    from mmsdk.config import Config
    from mmsdk.heads import HeadConfig
    from mmsdk.hub import from_pretrained, save_pretrained
    from mmsdk.masking import Mask, MaskingConfig
    from mmsdk.models import EmbeddingModel, TaskModel, build_model, build_task_model
    from mmsdk.tokens import TokenBatch
    from mmsdk.training.api import TrainerConfig, finetune, pretrain
    from mmsdk.training.optim import OptimConfig
    from mmsdk.transformer import Transformer, TransformerConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmsdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
