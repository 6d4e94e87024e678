"""The adapter interface every modality implements.

An adapter owns everything that knows the modality: input validation, normalization, tokenization (raw data →
:class:`~mmsdk.contracts.tokens.TokenBatch`), the absolute position embedding, reconstruction targets and losses,
task heads, its own mask strategies (registered by name) and pictures. The core models compose one or more adapters
with the shared transformer; one contract test suite covers every registered adapter.

Adapters are registered by name (entry-point group `mmsdk.adapters`, or
:func:`~mmsdk.contracts.registry.register_adapter`); configs name them (`adapter: patchtst`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from mmsdk.config import Config
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.losses import masked_mse
from mmsdk.contracts.registry import ADAPTERS, concrete_subclass_of
from mmsdk.contracts.tokens import TokenBatch

LossTerms = Mapping[str, Tensor]
"""Named scalar loss terms of one modality (e.g. `{"infonce": ..., "mse": ...}`); the loss is their sum."""

NonFinitePolicy = Literal["reject", "nan_as_missing", "nan_as_padding"]
"""Where a raw input may hold NaN. Inf is never valid.

- "reject": nowhere; the modality has no notion of a missing value (point clouds).
- "nan_as_missing": anywhere; NaN marks a missing value the adapter excludes (series with gaps, missing pixels).
- "nan_as_padding": only as a trailing run along the last axis of each sample: padding after a clip's end (audio).
"""
NONFINITE_POLICIES: tuple[NonFinitePolicy, ...] = ("reject", "nan_as_missing", "nan_as_padding")
DEFAULT_MAX_ABS_INPUT = 1e15
"""The largest |value| a raw input may hold unless its adapter says otherwise: well inside float32 (3.4e38), so the
squares and sums of normalization statistics and distances cannot overflow."""


@dataclass
class ExportSpec:
    """How an adapter's raw input looks to an exporter.

    Attributes:
        input_name: name of the graph input.
        dynamic_axes: axis index → symbolic name for axes that may vary (batch is always axis 0).
        output_names: names of the graph outputs, per task.
        tolerance: absolute tolerance for eager-vs-runtime verification.
        metadata: facts a serving program needs to feed the graph (e.g. `{"sample_rate": "16000"}`), stored in the
            ONNX metadata as `mmsdk.<key>`.
        min_sizes: axis index → the smallest size the input may have along it (stored as `mmsdk.min_sizes`).
    """

    input_name: str = "inputs"
    dynamic_axes: dict[int, str] = field(default_factory=lambda: {0: "batch"})
    output_names: tuple[str, ...] = ("outputs",)
    tolerance: float = 1e-4
    metadata: dict[str, str] = field(default_factory=dict)
    min_sizes: dict[int, int] = field(default_factory=dict)
    """E.g. the samples of one audio token: the runtime rejects shorter inputs by name. Under the "nan_as_padding"
    policy the real (non-padding) length of every sample along the last axis must reach it too."""


class Adapter(nn.Module, ABC):
    """Base class of modality adapters.

    Subclasses set `name`, `config_class`, `tasks` (and `free_fields`), and implement `target_dim`, `tokenize`,
    `build_head` and `example_input` (abstract: a subclass missing one cannot be instantiated or registered). They
    are constructed with their config and the encoder width `dim`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    tasks: ClassVar[tuple[str, ...]] = ()
    free_fields: ClassVar[tuple[str, ...]] = ()
    """Config fields that may differ between a pretrained checkpoint and the model it initializes because they do
    not change what the backbone's weights compute (dropout rates, head and loss options); every other field must
    match for `load_backbone`."""
    fresh_parameters: ClassVar[tuple[str, ...]] = ()
    """Submodules a fine-tuning model may add to a pretrained backbone (e.g. embeddings of covariates the
    pretraining data had none of): `load_backbone` leaves them at their initialization when the checkpoint lacks
    them, as it does class tokens, and lists them in its report."""
    nonfinite_policy: ClassVar[NonFinitePolicy] = "reject"
    """Where the raw input may hold NaN (see :data:`NonFinitePolicy`); no missing values by default. `tokenize`
    enforces it, and exported models store it per graph input (`mmsdk.nonfinite`) for the runtime to enforce."""
    max_abs_input: ClassVar[float] = DEFAULT_MAX_ABS_INPUT
    """The largest |value| the raw input may hold: beyond it the tokenizer's float32 arithmetic overflows and NaN
    would reach the outputs. `tokenize` rejects larger values (:func:`check_magnitude`); exported models store it
    (`mmsdk.max_abs`) for the runtime."""

    float32_modules: ClassVar[tuple[str, ...]] = ()
    """Submodules (attribute names) whose ops must stay float32 when an exported model is quantized or converted to
    float16, e.g. a front end whose power spectrum spans orders of magnitude; exported models list their scopes
    (`mmsdk.float32_scopes`) and the precision conversions leave those nodes alone."""

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = dim

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """A small valid config (plain fields) for examples, smoke runs and the contract tests, which build every
        registered adapter from it; the default is the config class's defaults."""
        return cls.config_class().to_dict()

    @property
    @abstractmethod
    def target_dim(self) -> int:
        """P: the width of one token's reconstruction target."""

    @abstractmethod
    def tokenize(self, inputs: Any) -> TokenBatch:
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

    def example_task_input(self, head: Any, batch_size: int = 2, generator: torch.Generator | None = None) -> Any:
        """A valid random raw input of a task model with `head` (a HeadConfig): `example_input` by default;
        adapters whose task input depends on the head override it (a covariate forecaster's known covariates cover
        the horizon)."""
        return self.example_input(batch_size, generator)

    def export_spec(self) -> ExportSpec:
        """Input name and dynamic axes for ONNX export."""
        return ExportSpec()

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one raw sample the adapter is built for (without the batch axis): what stands in for the
        modality when a sample lacks it, and how many tokens a model predicting it queries. The shape of
        `example_input` by default; adapters of variable-length inputs return their configured longest one."""
        return tuple(self.example_input(1, torch.Generator().manual_seed(0)).shape[1:])  # leaves the global RNG

    def verification_inputs(self, generator: torch.Generator | None = None) -> list[Tensor]:
        """Extra raw inputs an exported graph is verified on besides `example_input` at several batch sizes: other
        sizes of the dynamic axes (clip lengths, series lengths) and padded inputs. None by default."""
        return []

    def build_pretrain_head(self, dim: int) -> nn.Module | None:
        """The pretraining models' output head on features of width `dim`; None = `nn.Linear(dim, target_dim)`.

        Override when predictions are not target values, e.g. the parameters of a predictive distribution that
        :meth:`reconstruction_loss` and :meth:`next_token_loss` turn into a likelihood. Predictions then have the
        head's output width instead of `target_dim`. Called once per pretraining model (with the decoder width for
        MAE); a returned head is used as is, without the core's weight initialization.
        """
        return None

    def reconstruction_loss(self, pred: Tensor, batch: TokenBatch, target: Tensor) -> Tensor | LossTerms:
        """Loss of masked-token predictions (B, N, P) against `batch.targets` on the target tokens (B, N) only.

        Returns a scalar or named terms (summed into the loss and logged one by one); the default is `{"mse": ...}`
        over real (non-padding) target tokens and observed values.
        """
        if batch.targets is None:
            raise ValueError(f"{type(self).__name__}.tokenize produced no targets; cannot compute a loss")
        if batch.padding_mask is not None:
            target = target & batch.padding_mask
        return {"mse": masked_mse(pred, batch.targets, target, batch.target_mask)}

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> Tensor | LossTerms:
        """Loss of causal predictions: pred[:, t] is compared to the target of the next token of the same
        sequence. The default shifts by one token (`{"mse": ...}`); adapters with several variates override it."""
        if batch.targets is None:
            raise ValueError(f"{type(self).__name__}.tokenize produced no targets; cannot compute a loss")
        valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)[:, 1:]
        if batch.padding_mask is not None:
            valid = valid & batch.padding_mask[:, 1:]
        value_mask = None if batch.target_mask is None else batch.target_mask[:, 1:]
        return {"mse": masked_mse(pred[:, :-1], batch.targets[:, 1:], valid, value_mask)}

    def task_target(self, head: HeadConfig, target: Tensor, batch: TokenBatch) -> Tensor:
        """Maps a dataset's task target into the space the head predicts in (identity by default)."""
        return target

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor | None:
        """Predicted targets (B, N, P) back in raw units and the raw layout (e.g. a (B, L, C) series in data units,
        or (B, S·k, 3) points), so generation and any-to-any prediction return data rather than tokens.

        Uses the batch's context (normalization statistics, positions). None when the adapter has no inverse.
        """
        return None

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        """Draws masked-token predictions of the first sequence of `batch` next to its targets (a PNG at `path`).

        `target` (B, N) marks the predicted tokens. Used by the pretraining plot callback; returns None when the
        adapter has no picture to draw.
        """
        return None


def reject_values(x: Tensor, bad: Tensor, what: str, advice: str) -> None:
    """Raises ValueError when the boolean map `bad` (shaped like `x`) flags any value: how many, the input's shape,
    the first index, and what to do (e.g. `reject_values(x, torch.isinf(x), "Inf value(s)", "use NaN ...")`).

    Args:
        x: the raw input.
        bad: which values are invalid.
        what: the message's start, naming the input and the kind of value ("PatchTST input: Inf value(s)").
        advice: what the user should do instead.
    """
    if torch.compiler.is_compiling() or not bool(bad.any()):
        return
    first = tuple(int(i) for i in bad.nonzero()[0])
    raise ValueError(
        f"{what}: {int(bad.sum())} found (input shape {tuple(x.shape)}, the first at index {first}); {advice}"
    )


def check_magnitude(x: Tensor, what: str, limit: float) -> None:
    """Raises ValueError when a value of a floating-point input exceeds `limit` in magnitude (NaN is ignored).

    Args:
        x: the raw input.
        what: how messages name it (e.g. "PatchTST input").
        limit: the largest |value| allowed (the adapter's `max_abs_input`).
    """
    if not x.is_floating_point() or torch.compiler.is_compiling():
        return
    big = x.abs() > limit  # NaN compares False
    if bool(big.any()):
        first = tuple(int(i) for i in big.nonzero()[0])
        raise ValueError(
            f"{what} holds {int(big.sum())} value(s) beyond ±{limit:.0e} (input shape {tuple(x.shape)}; the first, "
            f"{float(x[first]):.3g}, at index {first}): the model computes in float32 and would overflow; rescale "
            "the input"
        )


ADAPTERS.set_check(concrete_subclass_of(Adapter))


def get_adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered as `name` (raises ValueError listing the known adapters)."""
    return ADAPTERS.get(name)


def build_adapter(name: str, config: Mapping[str, Any] | Config | None, dim: int) -> Adapter:
    """Builds an adapter from its name and (dict or typed) config."""
    cls = get_adapter_class(name)
    return cls(cls.config_class.from_dict(config), dim)
