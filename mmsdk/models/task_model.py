"""The task model: backbone + a task head on one modality's features (the model users fine-tune and export)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.heads import HeadConfig, RolloutHead
from mmsdk.contracts.registry import TASKS
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models.backbone import Backbone
from mmsdk.models.config import ModelConfig
from mmsdk.models.quantile_calibration import scale_quantiles


def head_modality(config: ModelConfig, head: HeadConfig) -> str:
    """The modality a head reads: `head.modality`, or the only one.

    Raises:
        ValueError: for an unknown modality, or none named in a model of several.
    """
    names = config.modality_names
    if head.modality is None:
        if len(names) != 1:
            raise ValueError(f"HeadConfig.modality: name the modality the head reads, one of {names}")
        return names[0]
    if head.modality not in config.modalities:
        raise ValueError(f"HeadConfig.modality={head.modality!r} is not a modality of the model; choose from {names}")
    return head.modality


class TaskModel(nn.Module):
    """Backbone + task head: raw inputs in, task outputs out.

    The head is built by the adapter of its modality (`HeadConfig.modality`, or the only one) and reads that
    modality's slice of the encoder features, which attended to every modality. The encoder runs causally when the
    model was pretrained with a causal objective. A :class:`~mmsdk.contracts.heads.RolloutHead` also gets an
    `encode` function, so it can run the backbone again on new inputs of its modality.
    """

    def __init__(self, config: ModelConfig, head: HeadConfig) -> None:
        super().__init__()
        self.modality = head_modality(config, head)
        adapter_name = config.modalities[self.modality].adapter
        self.backbone = Backbone(config)
        tasks = self.backbone.adapters[self.modality].tasks
        if head.task not in tasks:
            raise ValueError(
                f"HeadConfig.task={head.task!r} is not supported by adapter {adapter_name!r}; it supports {list(tasks)}"
            )
        if head.pooling == "first" and config.class_tokens == 0:
            raise ValueError(
                "HeadConfig.pooling='first' reads the class token, but ModelConfig.class_tokens is 0; set "
                "class_tokens: 1 or pool the tokens (mean, max, mean_max)"
            )
        self.config, self.head_config = config, head
        self.task = TASKS.get(head.task).from_head(head)
        self.head = self.head_adapter.build_head(head, config.encoder.dim)

    @property
    def head_adapter(self) -> Adapter:
        """The adapter of the head's modality."""
        return self.backbone.adapters[self.modality]  # type: ignore[return-value]

    @property
    def adapter(self) -> Adapter:
        """The adapter of a one-modality model (raises ValueError for several)."""
        return self.backbone.adapter

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Any:
        """A valid random raw input (export tracing and verification): the head modality's task input (see
        `Adapter.example_task_input`) and the other modalities' example inputs, as a mapping for several."""
        inputs = {
            name: adapter.example_task_input(self.head_config, batch_size, generator)
            if name == self.modality
            else adapter.example_input(batch_size, generator)
            for name, adapter in self.backbone.adapters.items()
        }
        return inputs if len(inputs) > 1 else inputs[self.modality]

    def forward(self, inputs: Any) -> Tensor:
        """Raw inputs → task output (forecast (B, H, C), logits (B, classes), or regression targets)."""
        return self.predict(self.backbone.tokenize(inputs), inputs)

    def encode(self, inputs: Any) -> tuple[Tensor, TokenBatch]:
        """Raw inputs → (hidden (B, N, D), token batch) of the head's modality (with the class tokens' features in
        `class_features` when the model has them)."""
        return self._features(self.backbone.tokenize(inputs))

    def _features(self, batch: TokenBatch) -> tuple[Tensor, TokenBatch]:
        """Encodes `batch`; returns the head modality's features and its token batch."""
        class_features, hidden = self.backbone.encode_all(self.backbone.embed(batch), batch)
        part = self.backbone.parts(batch)[self.modality]
        if class_features is not None:
            part = part.replace(class_features=class_features)
        return self.backbone.split(hidden, batch)[self.modality], part

    def predict(self, batch: TokenBatch, inputs: Any = None) -> Tensor:
        """Task output of an already tokenized batch (what `forward` and the fine-tuning system compute).

        `inputs` are the raw inputs of `batch`; a rollout head of a multimodal model needs them to re-encode new
        inputs of its modality beside the others. Quantiles recalibrated by `calibrate_quantiles`
        (`HeadConfig.quantile_scales`) are scaled here, after the head.
        """
        if isinstance(self.head, RolloutHead):
            hidden, part = None, self.backbone.parts(batch)[self.modality]
            if self.head.uses_context_features:
                hidden, part = self._features(batch)
            outputs = self.head(hidden, part, self._encoder_for(inputs))
        else:
            outputs = self.head(*self._features(batch))  # head of its modality's features
        if self.head_config.quantile_scales is not None:
            outputs = scale_quantiles(outputs, self.head_config.quantile_scales)
        return outputs

    def _encoder_for(self, inputs: Any):
        """`encode` for a rollout head: new raw inputs of the head's modality, the other modalities unchanged."""
        if len(self.backbone.adapters) == 1:
            return self.encode
        if not isinstance(inputs, Mapping):
            raise ValueError(f"a rollout head of a multimodal model needs the raw inputs of {self.backbone.names}")
        return lambda new: self.encode({**inputs, self.modality: new})

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
