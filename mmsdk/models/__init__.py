"""Model assembly: the model config, the backbone over one or more adapters, objectives, tasks, task and embedding
models."""

from mmsdk.models.any_to_any import CrossModalPredictor
from mmsdk.models.backbone import Backbone, attention_mask
from mmsdk.models.build import build_model, build_task_model
from mmsdk.models.config import ModalityConfig, ModelConfig
from mmsdk.models.embedding_model import EmbeddingModel
from mmsdk.models.objectives import (
    CausalModel,
    FourM,
    FourMConfig,
    MaskedAutoencoder,
    MaskedTokenModel,
    Objective,
    ObjectiveOutput,
    Prediction,
)
from mmsdk.models.task_model import TaskModel

__all__ = [
    "Backbone",
    "CausalModel",
    "CrossModalPredictor",
    "EmbeddingModel",
    "FourM",
    "FourMConfig",
    "MaskedAutoencoder",
    "MaskedTokenModel",
    "ModalityConfig",
    "ModelConfig",
    "Objective",
    "ObjectiveOutput",
    "Prediction",
    "TaskModel",
    "attention_mask",
    "build_model",
    "build_task_model",
]
