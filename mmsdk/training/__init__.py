"""Training: Lightning systems (pretraining, fine-tuning), AdamW + warmup/cosine, resumable data, Python API."""

from mmsdk.training.api import (
    FinetuneResult,
    PretrainResult,
    TrainerConfig,
    TrainingResult,
    build_trainer,
    finetune,
    pretrain,
)
from mmsdk.training.data import DataModule, ResumableDataLoader, ResumableSampler, as_dataset
from mmsdk.training.optim import OptimConfig, build_optimizer, build_scheduler, parameter_groups
from mmsdk.training.schedules import epoch_decay, one_cycle, warmup_cosine
from mmsdk.training.systems import FinetuneSystem, PretrainSystem

__all__ = [
    "DataModule",
    "FinetuneResult",
    "FinetuneSystem",
    "OptimConfig",
    "PretrainResult",
    "PretrainSystem",
    "ResumableDataLoader",
    "ResumableSampler",
    "TrainerConfig",
    "TrainingResult",
    "as_dataset",
    "build_optimizer",
    "build_scheduler",
    "build_trainer",
    "epoch_decay",
    "finetune",
    "one_cycle",
    "parameter_groups",
    "pretrain",
    "warmup_cosine",
]
