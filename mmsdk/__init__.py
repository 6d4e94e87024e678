"""mmsdk: a modality-agnostic masked-modeling SDK.

One shared masked/causal transformer core plugs into per-modality adapters (`mmsdk.adapters`), and an export
layer (`mmsdk.export`) emits ONNX models. The core is layered: `mmsdk.layers` (torch-only building blocks),
`mmsdk.contracts` (token batch, adapter interface, masks, losses, tasks, registries), `mmsdk.models` (backbone,
objectives, task and embedding models), `mmsdk.training` (Lightning), `mmsdk.hub` (save/load), `mmsdk.cli` and
`mmsdk.demos`. Torch-backed names are imported lazily, on first attribute access,
so that `import mmsdk.export.runtime` (numpy + onnxruntime only) never pulls in torch.
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # building blocks
    "TransformerConfig": "mmsdk.layers.transformer_config",
    "Transformer": "mmsdk.layers.transformer",
    "AttentionMask": "mmsdk.layers.attention_mask",
    # contracts
    "Config": "mmsdk.config",
    "TokenBatch": "mmsdk.contracts.tokens",
    "Adapter": "mmsdk.contracts.adapter",
    "Mask": "mmsdk.contracts.masking",
    "MaskingConfig": "mmsdk.contracts.mask_strategies",
    "HeadConfig": "mmsdk.contracts.heads",
    "Task": "mmsdk.contracts.tasks",
    "register_adapter": "mmsdk.contracts.registry",
    "register_data": "mmsdk.contracts.registry",
    "register_mask_strategy": "mmsdk.contracts.registry",
    "register_task": "mmsdk.contracts.registry",
    "register_objective": "mmsdk.contracts.registry",
    "available_adapters": "mmsdk.contracts.registry",
    # model assembly
    "ModelConfig": "mmsdk.models.config",
    "ModalityConfig": "mmsdk.models.config",
    "Objective": "mmsdk.models.objectives.base",
    "build_model": "mmsdk.models.build",
    "build_task_model": "mmsdk.models.build",
    "TaskModel": "mmsdk.models.task_model",
    "EmbeddingModel": "mmsdk.models.embedding_model",
    "calibrate_quantiles": "mmsdk.models.quantile_calibration",
    # save/load
    "save_pretrained": "mmsdk.hub",
    "from_pretrained": "mmsdk.hub",
    "push_to_hub": "mmsdk.hub",
    # training
    "pretrain": "mmsdk.training.api",
    "finetune": "mmsdk.training.api",
    "OptimConfig": "mmsdk.training.optim",
    "TrainerConfig": "mmsdk.training.api",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
