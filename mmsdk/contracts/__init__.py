"""The contracts between the core and its adapters: the token batch, the adapter interface, masks and mask
strategies, losses, heads and tasks, the data contract of recipes, and the registries that resolve names.

Nothing here imports an adapter, a model or the training loop.
"""

from mmsdk.contracts.adapter import Adapter, ExportSpec, LossTerms, build_adapter, get_adapter_class
from mmsdk.contracts.data import DataSplits, InputsOnly, Stage, build_data
from mmsdk.contracts.heads import Encode, HeadConfig, RolloutHead, TokenPooledHead
from mmsdk.contracts.losses import denormalize_like, masked_mae, masked_mean, masked_mse, normalize_targets
from mmsdk.contracts.mask_strategies import (
    MaskingConfig,
    apply_strategy,
    block_mask,
    draw_mask,
    draw_ratio,
    group_mask,
    random_mask,
    sample_tail_mask,
    tail_mask,
)
from mmsdk.contracts.masking import Mask, mask_from_noise, num_kept, unshuffle
from mmsdk.contracts.registry import (
    ADAPTERS,
    DATA_BUILDERS,
    MASK_STRATEGIES,
    OBJECTIVES,
    TASKS,
    Registry,
    available_adapters,
    register_adapter,
    register_data,
    register_mask_strategy,
    register_objective,
    register_task,
)
from mmsdk.contracts.tasks import Task
from mmsdk.contracts.tokens import TokenBatch, gather_tokens

__all__ = [
    "ADAPTERS",
    "DATA_BUILDERS",
    "MASK_STRATEGIES",
    "OBJECTIVES",
    "TASKS",
    "Adapter",
    "DataSplits",
    "Encode",
    "ExportSpec",
    "HeadConfig",
    "InputsOnly",
    "LossTerms",
    "Mask",
    "MaskingConfig",
    "Registry",
    "RolloutHead",
    "Stage",
    "Task",
    "TokenBatch",
    "TokenPooledHead",
    "apply_strategy",
    "available_adapters",
    "block_mask",
    "build_adapter",
    "build_data",
    "denormalize_like",
    "draw_mask",
    "draw_ratio",
    "gather_tokens",
    "get_adapter_class",
    "group_mask",
    "mask_from_noise",
    "masked_mae",
    "masked_mean",
    "masked_mse",
    "normalize_targets",
    "num_kept",
    "random_mask",
    "register_adapter",
    "register_data",
    "register_mask_strategy",
    "register_objective",
    "register_task",
    "sample_tail_mask",
    "tail_mask",
    "unshuffle",
]
