"""The adapter interface every modality implements, and the registry that resolves adapter names.

An adapter owns everything that knows the modality: input validation, normalization, tokenization (raw data →
:class:`~mmsdk.tokens.TokenBatch`), the absolute position embedding, reconstruction targets and losses, and task
heads. The core models compose an adapter with the shared transformer; one contract test covers every adapter.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmsdk.config import Config
from mmsdk.heads import HeadConfig
from mmsdk.losses import masked_mse
from mmsdk.tokens import TokenBatch

_ADAPTERS: dict[str, type[Adapter]] = {}
# Built-in adapter families, imported on first use so `import mmsdk` stays light.
_BUILTIN_MODULES: dict[str, str] = {
    "patchtst": "mmsdk.adapters.timeseries",
    "timerxl": "mmsdk.adapters.timeseries.timerxl",
    "moirai": "mmsdk.adapters.timeseries.moirai",
    "pointmae": "mmsdk.adapters.pointcloud.pointmae",
}


@dataclass
class ExportSpec:
    """How an adapter's raw input looks to an exporter.

    Attributes:
        input_name: name of the graph input.
        dynamic_axes: axis index → symbolic name for axes that may vary (batch is always axis 0).
        output_names: names of the graph outputs, per task.
        tolerance: absolute tolerance for eager-vs-runtime verification.
    """

    input_name: str = "inputs"
    dynamic_axes: dict[int, str] = field(default_factory=lambda: {0: "batch"})
    output_names: tuple[str, ...] = ("outputs",)
    tolerance: float = 1e-4


class Adapter(nn.Module, ABC):
    """Base class of modality adapters.

    Subclasses set `name`, `config_class` and `tasks`, and implement `tokenize`, `target_dim`, `build_head` and
    `example_input`. They are constructed with their config and the encoder width `dim`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = dim

    @property
    @abstractmethod
    def target_dim(self) -> int:
        """P: the width of one token's reconstruction target."""

    @abstractmethod
    def tokenize(self, inputs: Tensor) -> TokenBatch:
        """Raw inputs → TokenBatch with content embeddings (no absolute positions), targets and context."""

    def build_positions(self, dim: int) -> nn.Module | None:
        """The absolute position module mapping `TokenBatch.positions` to (B, N, dim); None for no positions.

        Called once for the encoder width and once for a decoder width, so MAE decoders get positions too.
        """
        return None

    def mask_embedding(self) -> Tensor | None:
        """The (D,) embedding that replaces hidden tokens under the bert objective; None = a learned mask token.

        Override to define masking in the adapter's input space, e.g. the embedding of an all-zero patch (PatchTST's
        mask_value=0). The returned tensor may depend on parameters, so it is fetched on every forward.
        """
        return None

    def embedding_dropout(self) -> float:
        """Dropout rate on the embedded tokens (content + absolute positions) before the encoder; 0 = none."""
        return 0.0

    @abstractmethod
    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        """A task head `head(hidden (B, N, D), batch) -> output` for one of `self.tasks`."""

    @abstractmethod
    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        """A valid random raw input (for contract tests, export tracing and verification)."""

    def export_spec(self) -> ExportSpec:
        """Input name and dynamic axes for ONNX export."""
        return ExportSpec()

    def build_pretrain_head(self, dim: int) -> nn.Module | None:
        """The pretraining models' output head on features of width `dim`; None = `nn.Linear(dim, target_dim)`.

        Override when predictions are not target values, e.g. the parameters of a predictive distribution that
        :meth:`reconstruction_loss` and :meth:`next_token_loss` turn into a likelihood. `Prediction.pred` then has
        the head's output width instead of `target_dim`. Called once per pretraining model (with the decoder width
        for MAE); a returned head is used as is, without the core's weight initialization.
        """
        return None

    def reconstruction_loss(self, pred: Tensor, batch: TokenBatch, hidden: Tensor) -> Tensor:
        """Loss of masked-token predictions (B, N, P) against `batch.targets` on hidden tokens (B, N) only."""
        if batch.targets is None:
            raise ValueError(f"{type(self).__name__}.tokenize produced no targets; cannot compute a loss")
        if batch.padding_mask is not None:
            hidden = hidden & batch.padding_mask
        return masked_mse(pred, batch.targets, hidden, batch.target_mask)

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Loss of causal predictions: pred[:, t] is compared to the target of the next token of the same
        sequence. The default shifts by one token; adapters with several variates override it."""
        if batch.targets is None:
            raise ValueError(f"{type(self).__name__}.tokenize produced no targets; cannot compute a loss")
        valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)[:, 1:]
        if batch.padding_mask is not None:
            valid = valid & batch.padding_mask[:, 1:]
        value_mask = None if batch.target_mask is None else batch.target_mask[:, 1:]
        return masked_mse(pred[:, :-1], batch.targets[:, 1:], valid, value_mask)

    def task_target(self, head: HeadConfig, target: Tensor, batch: TokenBatch) -> Tensor:
        """Maps a dataset's task target into the space the head predicts in (identity by default)."""
        return target

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, hidden: Tensor, path: Path) -> Path | None:
        """Draws masked-token predictions of the first sequence of `batch` next to its targets (a PNG at `path`).

        Used by the pretraining plot callback; returns None when the adapter has no picture to draw.
        """
        return None


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: makes an adapter resolvable by its `name` (used by configs and checkpoints)."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered")
    _ADAPTERS[cls.name] = cls
    return cls


def get_adapter_class(name: str) -> type[Adapter]:
    """Resolves an adapter name, importing its built-in family on first use.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _ADAPTERS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _ADAPTERS:
        known = sorted(set(_ADAPTERS) | set(_BUILTIN_MODULES))
        raise ValueError(f"unknown adapter {name!r}; known adapters: {known}")
    return _ADAPTERS[name]


def available_adapters() -> list[str]:
    """Names of every built-in and registered adapter."""
    return sorted(set(_ADAPTERS) | set(_BUILTIN_MODULES))


def build_adapter(name: str, config: dict[str, Any] | Config | None, dim: int) -> Adapter:
    """Builds an adapter from its name and (dict or typed) config."""
    cls = get_adapter_class(name)
    return cls(cls.config_class.from_dict(config), dim)
