"""Building models from configs: pretraining models and fine-tuning (task) models."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmsdk.adapter import get_adapter_class
from mmsdk.backbone import Backbone, ModelConfig
from mmsdk.heads import HeadConfig, RolloutHead
from mmsdk.objectives import OBJECTIVES, PretrainModel
from mmsdk.tokens import TokenBatch


class TaskModel(nn.Module):
    """Backbone + task head: raw inputs in, task outputs out (the model users fine-tune and export).

    The encoder runs causally when the model was pretrained with the causal objective. A
    :class:`~mmsdk.heads.RolloutHead` also gets :meth:`encode`, so it can run the backbone again on its own outputs.
    """

    def __init__(self, config: ModelConfig, head: HeadConfig) -> None:
        super().__init__()
        tasks = get_adapter_class(config.adapter).tasks
        if head.task not in tasks:
            raise ValueError(
                f"HeadConfig.task={head.task!r} is not supported by adapter {config.adapter!r}; "
                f"it supports {list(tasks)}"
            )
        self.config, self.head_config = config, head
        self.backbone = Backbone(config)
        self.head = self.backbone.adapter.build_head(head, config.encoder.dim)

    @property
    def adapter(self):
        return self.backbone.adapter

    def forward(self, inputs: Tensor) -> Tensor:
        """Raw inputs → task output (forecast (B, H, C), logits (B, classes), or regression targets)."""
        return self.predict(self.backbone.tokenize(inputs))

    def encode(self, inputs: Tensor) -> tuple[Tensor, TokenBatch]:
        """Raw inputs → (hidden (B, N, D), token batch), causal when the model was pretrained causally."""
        batch = self.backbone.tokenize(inputs)
        return self.backbone(batch, causal=self.config.objective == "causal"), batch

    def predict(self, batch: TokenBatch) -> Tensor:
        """Task output of an already tokenized batch (what `forward` and the fine-tuning system compute)."""
        causal = self.config.objective == "causal"
        if isinstance(self.head, RolloutHead):
            hidden = self.backbone(batch, causal=causal) if self.head.uses_context_features else None
            return self.head(hidden, batch, self.encode)
        return self.head(self.backbone(batch, causal=causal), batch)  # head of the features (B, N, D)

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Linear probing: freeze (or unfreeze) everything but the head.

        A head whose trainable part lives in the backbone (Moirai's mixture head belongs to the adapter, so it is
        pretrained) names it with a `probe_parameters()` method; those stay trainable. Modules a head only
        borrows (PatchTST's RevIN, for the inverse normalization) freeze with the backbone.
        """
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        probe_parameters = getattr(self.head, "probe_parameters", None)
        if frozen and callable(probe_parameters):
            for parameter in probe_parameters():
                parameter.requires_grad_(True)


class EmbeddingModel(nn.Module):
    """Backbone alone, pooled: raw inputs → (B, D) embeddings (mean over real tokens). For export and search."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config

    def forward(self, inputs: Tensor) -> Tensor:
        batch = self.backbone.tokenize(inputs)
        hidden = self.backbone(batch, causal=self.config.objective == "causal")  # (B, N, D)
        if batch.padding_mask is None:
            return hidden.mean(dim=1)
        weight = batch.padding_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def build_model(config: ModelConfig | dict[str, Any]) -> PretrainModel:
    """The pretraining model for a config's objective (mae, bert or causal)."""
    config = ModelConfig.from_dict(config)
    return OBJECTIVES[config.objective](config)


def build_task_model(config: ModelConfig | dict[str, Any], head: HeadConfig | dict[str, Any]) -> TaskModel:
    """A fine-tuning model: the config's backbone plus a task head."""
    return TaskModel(ModelConfig.from_dict(config), HeadConfig.from_dict(head))
