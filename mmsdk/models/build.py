"""Building models from configs: the objective's pretraining model, and task models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.registry import OBJECTIVES
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import Objective
from mmsdk.models.task_model import TaskModel


def build_model(config: ModelConfig | Mapping[str, Any]) -> Objective:
    """The pretraining model of a config's objective (mae, bert, causal, or a registered one)."""
    config = ModelConfig.from_dict(config)
    return OBJECTIVES.get(config.objective)(config)


def build_task_model(config: ModelConfig | Mapping[str, Any], head: HeadConfig | Mapping[str, Any]) -> TaskModel:
    """A fine-tuning model: the config's backbone plus a task head."""
    return TaskModel(ModelConfig.from_dict(config), HeadConfig.from_dict(head))
