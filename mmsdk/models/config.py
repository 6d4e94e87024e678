"""The model config: named modalities (each an adapter with its config), the shared encoder, the objective.

```yaml
model:
  modalities:
    series: {adapter: timerxl, adapter_config: {context_length: 96, num_channels: 3, patch_len: 16}}
    cloud: {adapter: pointmae, adapter_config: {num_points: 256, num_groups: 16}}
  encoder: {dim: 128, depth: 4, heads: 4}
  objective: bert
```

A model of one adapter may keep the short form `adapter: patchtst` / `adapter_config: {...}`: it is the one-modality
case, named after its adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmsdk.config import Config, require
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.contracts.registry import ADAPTERS, OBJECTIVES
from mmsdk.contracts.tokens import PRESENT_KEY
from mmsdk.layers.transformer_config import TransformerConfig


@dataclass
class ModalityConfig(Config):
    """One modality of a model: a registered adapter and its config."""

    adapter: str = "patchtst"
    """Registered adapter name (see `mmsdk.available_adapters()`)."""
    adapter_config: dict[str, Any] = field(default_factory=dict)
    """The adapter's own config fields (validated by the adapter's config class)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.adapter in ADAPTERS, self, "adapter", f"unknown adapter {self.adapter!r}; known: {ADAPTERS.names()}"
        )
        cls = get_adapter_class(self.adapter)
        self.adapter_config = cls.config_class.from_dict(self.adapter_config).to_dict()


@dataclass
class ModelConfig(Config):
    """A whole model: its modalities, the encoder, the pretraining objective and (for MAE) the decoder."""

    modalities: dict[str, ModalityConfig] = field(default_factory=dict)
    """Modality name → adapter and config. Names are identifiers; they name state-dict entries, plots, loss terms
    (`train/loss/<modality>/<term>`) and ONNX inputs."""
    adapter: str | None = None
    """Short form of a one-modality model: the adapter name (the modality is named after it)."""
    adapter_config: dict[str, Any] = field(default_factory=dict)
    """Short form: the adapter's config."""
    encoder: TransformerConfig = field(default_factory=TransformerConfig)
    """The shared transformer encoder."""
    objective: str = "mae"
    """A registered objective: mae (encoder sees visible tokens only, light decoder), bert (mask token inside the
    encoder), causal (next-token prediction), or one another package registers."""
    objective_config: dict[str, Any] = field(default_factory=dict)
    """The objective's own options, validated by its config class (e.g. the 4m objective's token budgets and
    Dirichlet concentrations); empty for objectives without options (mae, bert, causal)."""
    decoder: TransformerConfig | None = None
    """The objective's decoder (MAE: defaults to 2 blocks at half the encoder width); unused by the others."""
    norm_targets: bool = False
    """Normalize each target token (per-patch normalized targets, MAE's norm_pix_loss)."""
    shared_time: bool = False
    """Add a sin-cos embedding of each token's `clip_time` (where it lies in the sample's time span), the same for
    every modality, to the encoder's tokens and the decoder's queries: paired modalities then share one clock
    instead of learning how their own position grids line up (adapters without time get none)."""
    max_variates: int = 0
    """Add a learned embedding of each token's variate id inside its modality (ids below `max_variates`); 0 = none.
    A model whose adapter gives the variates of one time step the same positions (timerxl, moirai) needs it when
    tokens are dropped or queried by position alone (mae decoders, the 4m objective)."""
    class_tokens: int = 0
    """Learned tokens prepended to every sequence the encoder sees (ViT's class token; more than one act as
    registers). They attend to all tokens and have no position; a head with `pooling: first` reads the first one's
    features. 0 = none. Not for causal objectives or packed batches. A pretrained checkpoint without them still
    initializes a model with them (the class tokens start fresh)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adapter is not None:
            require(
                not self.modalities,
                self,
                "adapter",
                "give `modalities` or the one-modality short form `adapter`/`adapter_config`, not both",
            )
            self.modalities = {self.adapter: ModalityConfig(self.adapter, self.adapter_config)}
        elif self.adapter_config:
            raise ValueError("ModelConfig.adapter_config: set `adapter` too (or use `modalities`)")
        self.adapter, self.adapter_config = None, {}
        if not self.modalities:  # the default model: one PatchTST modality
            self.modalities = {"patchtst": ModalityConfig()}
        parsed = {}
        for name, modality in self.modalities.items():
            require(
                isinstance(name, str) and name.isidentifier(),
                self,
                "modalities",
                f"modality names must be identifiers (they name weights and ONNX inputs), got {name!r}",
            )
            require(
                name != PRESENT_KEY,
                self,
                "modalities",
                f"{PRESENT_KEY!r} is reserved: an inputs mapping's {PRESENT_KEY!r} entry says which samples have each "
                "modality",
            )
            try:
                parsed[name] = ModalityConfig.from_dict(modality)
            except (ValueError, TypeError) as err:
                raise ValueError(f"ModelConfig.modalities.{name}: {err}") from err
        self.modalities = parsed
        require(self.max_variates >= 0, self, "max_variates", f"must be >= 0, got {self.max_variates}")
        require(self.class_tokens >= 0, self, "class_tokens", f"must be >= 0, got {self.class_tokens}")
        require(
            self.objective in OBJECTIVES,
            self,
            "objective",
            f"unknown objective {self.objective!r}; known: {OBJECTIVES.names()}",
        )
        objective = OBJECTIVES.get(self.objective)
        require(
            not (self.class_tokens and objective.causal),
            self,
            "class_tokens",
            f"objective {self.objective!r} is causal: a class token at the start of a causal sequence sees nothing",
        )
        if objective.config_class is None:
            require(
                not self.objective_config,
                self,
                "objective_config",
                f"objective {self.objective!r} takes no options, got {sorted(self.objective_config)}",
            )
        else:
            try:
                parsed_objective = objective.config_class.from_dict(self.objective_config)
            except (ValueError, TypeError) as err:
                raise ValueError(f"ModelConfig.objective_config: {err}") from err
            objective.check_config(parsed_objective, self)
            self.objective_config = parsed_objective.to_dict()
        if self.decoder is None:
            self.decoder = objective.default_decoder(self.encoder)

    @property
    def modality_names(self) -> list[str]:
        """The modalities in sequence order."""
        return list(self.modalities)

    def only_modality(self) -> tuple[str, ModalityConfig]:
        """(name, config) of a one-modality model.

        Raises:
            ValueError: for a model of several modalities.
        """
        if len(self.modalities) != 1:
            raise ValueError(f"expected a model of one modality, this one has {self.modality_names}")
        return next(iter(self.modalities.items()))

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: `modalities`, never the short form."""
        data = super().to_dict()
        data.pop("adapter")
        data.pop("adapter_config")
        return data
