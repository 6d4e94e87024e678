"""The objective interface: a pretraining model that owns its forward pass, its mask and its loss.

An objective builds the backbone (one or more adapters and the shared encoder) plus whatever it needs on top (a
decoder, mask tokens, per-modality prediction heads). A training step is

    batch = objective.tokenize(inputs)                 # adapters → one token sequence
    mask = objective.draw_mask(batch, masking, gen)    # None for objectives that hide nothing
    prediction = objective(batch, mask)                # per-modality predictions; never a loss
    terms = objective.loss(batch, prediction, mask)    # named loss terms; the loss is their sum

(:meth:`Objective.step` runs the four). Each modality's predictions are scored by its own adapter, so the terms of a
multimodal model are named `<modality>/<term>`; a one-modality model's terms are the adapter's own names ("mse",
"nll", "chamfer", ...). The training system sums and logs them and holds no objective-specific code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmsdk.config import Config
from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.losses import normalize_targets
from mmsdk.contracts.mask_strategies import MaskingConfig, draw_mask
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import OBJECTIVES, concrete_subclass_of
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.layers.weight_init import init_weights
from mmsdk.models.backbone import Backbone
from mmsdk.models.config import ModelConfig


@dataclass
class Prediction:
    """What an objective's forward returns.

    Attributes:
        preds: modality name → (B, N_m, P_m) predictions for every token of that modality ((B, N_m, K) outputs of
            the adapter's own pretraining head when it defines one, see `Adapter.build_pretrain_head`).
    """

    preds: dict[str, Tensor]

    @property
    def pred(self) -> Tensor:
        """The predictions of a one-modality model (B, N, P).

        Raises:
            ValueError: for several modalities (use `preds[name]`).
        """
        if len(self.preds) != 1:
            raise ValueError(f"predictions of modalities {list(self.preds)}; use `preds[name]`")
        return next(iter(self.preds.values()))


@dataclass
class ObjectiveOutput:
    """One step of an objective: its named loss terms, and what they were computed from.

    Attributes:
        terms: name → scalar loss term; the loss is their sum.
        prediction: the objective's predictions.
        batch: the token batch of the step's inputs.
        mask: the step's mask (None for objectives without one).
    """

    terms: dict[str, Tensor]
    prediction: Prediction
    batch: TokenBatch
    mask: Mask | None
    weights: dict[str, float] = field(default_factory=dict)
    """term name → its weight in the loss (terms not named weigh 1); the terms themselves stay unweighted, so the
    logged values are each adapter's own loss."""

    @property
    def loss(self) -> Tensor:
        """The scalar loss: the weighted sum of the terms."""
        return sum(self.weights.get(name, 1.0) * value for name, value in self.terms.items())  # type: ignore


class DefaultHead(nn.Linear):
    """The core's pretraining head of an adapter without its own: features (..., D) → targets (..., P)."""


class Objective(nn.Module, ABC):
    """Base of pretraining objectives (registered by name; `ModelConfig.objective` picks one).

    Class attributes:
        name: the registry name.
        uses_mask: whether steps draw a mask (masked modeling) or not (causal next-token prediction).
        causal: whether the encoder runs causally; task models built from this objective's checkpoints do too.
        default_term: the name of an adapter loss returned as a bare tensor rather than named terms.
    """

    name: ClassVar[str]
    uses_mask: ClassVar[bool] = True
    causal: ClassVar[bool] = False
    default_term: ClassVar[str] = "loss"
    config_class: ClassVar[type[Config] | None] = None
    """The config class of `ModelConfig.objective_config`; None = the objective takes no options."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)

    @classmethod
    def check_config(cls, options: Config, model: ModelConfig) -> None:
        """Checks the objective's options against the rest of the model config (e.g. that the modalities they name
        exist); raises ValueError naming the field. Nothing to check by default."""

    @classmethod
    def default_decoder(cls, encoder: TransformerConfig) -> TransformerConfig | None:
        """The decoder a config without one gets (None: the objective has no decoder)."""
        return None

    @property
    def adapters(self) -> nn.ModuleDict:
        """Modality name → adapter."""
        return self.backbone.adapters

    @property
    def adapter(self) -> Adapter:
        """The adapter of a one-modality model (raises ValueError for several)."""
        return self.backbone.adapter

    def tokenize(self, inputs: Any) -> TokenBatch:
        """Validated token batch of raw inputs (a mapping modality → raw input for several modalities)."""
        return self.backbone.tokenize(inputs)

    def draw_mask(self, batch: TokenBatch, masking: MaskingConfig, generator: torch.Generator | None) -> Mask | None:
        """The step's mask (each modality masked by its own strategy); None when the objective uses none."""
        return draw_mask(masking, batch, generator) if self.uses_mask else None

    def build_heads(self, dim: int, initialize: bool = True) -> nn.ModuleDict:
        """One pretraining head per modality on features of width `dim`: the adapter's own, else a linear layer to
        its target width, initialized now or (`initialize=False`) by a later :meth:`initialize_heads`."""
        heads = {name: adapter.build_pretrain_head(dim) for name, adapter in self.backbone.adapters.items()}
        built = nn.ModuleDict(
            {
                name: DefaultHead(dim, self.backbone.adapters[name].target_dim) if head is None else head
                for name, head in heads.items()
            }
        )
        if initialize:
            self.initialize_heads(built)
        return built

    @staticmethod
    def initialize_heads(heads: nn.ModuleDict) -> None:
        """The core's initialization of the default linear heads (adapters' own heads keep theirs)."""
        for head in heads.values():
            if isinstance(head, DefaultHead):
                head.apply(init_weights)

    def apply_heads(self, heads: nn.ModuleDict, features: Tensor, batch: TokenBatch) -> Prediction:
        """Each modality's head applied to its slice of the (B, N, D) features."""
        return Prediction({name: heads[name](f) for name, f in self.backbone.split(features, batch).items()})

    @abstractmethod
    def forward(self, batch: TokenBatch, mask: Mask | None) -> Prediction:
        """Per-modality predictions for every token (never a loss)."""

    @abstractmethod
    def modality_loss(
        self, adapter: Adapter, pred: Tensor, part: TokenBatch, target: Tensor | None
    ) -> Tensor | Mapping[str, Tensor]:
        """One modality's loss: its adapter scores its predictions (`target` (B, N_m) marks what is scored)."""

    def loss(self, batch: TokenBatch, prediction: Prediction, mask: Mask | None) -> dict[str, Tensor]:
        """Named loss terms: each modality's adapter loss (prefixed with the modality for several modalities)."""
        parts = self.backbone.parts(batch)
        slices = self.backbone.slices(batch)
        terms: dict[str, Tensor] = {}
        for name, part in parts.items():
            if self.config.norm_targets and part.targets is not None:
                part = part.replace(targets=normalize_targets(part.targets))
            target = None if mask is None else mask.part(slices[name])
            named = self.modality_terms(name, prediction.preds[name].float(), part, target)
            prefix = f"{name}/" if len(parts) > 1 else ""
            terms.update({prefix + term: loss for term, loss in named.items()})
        return terms

    def modality_terms(self, name: str, pred: Tensor, part: TokenBatch, target: Tensor | None) -> dict[str, Tensor]:
        """One modality's named loss terms: its adapter's `modality_loss` (a bare tensor is named `default_term`);
        objectives that score some modalities otherwise (the 4m objective's quantized ones) override it."""
        value = self.modality_loss(self.backbone.adapters[name], pred, part, target)
        return dict(value) if isinstance(value, Mapping) else {self.default_term: value}

    def step(
        self, inputs: Any, masking: MaskingConfig | None = None, generator: torch.Generator | None = None
    ) -> ObjectiveOutput:
        """Tokenize, mask, predict and score one batch of raw inputs."""
        batch = self.tokenize(inputs)
        mask = self.draw_mask(batch, masking or MaskingConfig(), generator)
        prediction = self(batch, mask)
        terms = self.loss(batch, prediction, mask)
        return ObjectiveOutput(terms, prediction, batch, mask, self.term_weights(terms))

    def term_weights(self, terms: Mapping[str, Tensor]) -> dict[str, float]:
        """Each loss term's weight in the loss (a term not named weighs 1); every term weighs 1 by default."""
        return {}

    @torch.no_grad()
    def embed(self, inputs: Any) -> Tensor:
        """(B, N, D) encoder features of raw inputs with nothing masked."""
        return self.backbone(self.tokenize(inputs))


OBJECTIVES.set_check(concrete_subclass_of(Objective))
