"""PatchTST adapter: instance normalization, patching, channel independence.

A multivariate series (B, L, C) becomes B·C independent token sequences of N patches each (channel independence
with shared weights). Missing values (NaN) are allowed: they are excluded from the normalization statistics and
from losses, and replaced by 0 after normalization so nothing NaN reaches the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk.adapters.timeseries.quantile_outputs import forecast_outputs, output_count
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import DEFAULT_MAX_ABS_INPUT, Adapter, ExportSpec, check_magnitude, reject_values
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tasks import Outputs
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.pooling import pool_tokens
from mmsdk.layers.positions import FixedPositions, build_positions, normalized_sincos_table


@dataclass
class PatchTSTConfig(Config):
    """PatchTST tokenization of a (B, L, C) series."""

    context_length: int = 336
    """Input length L in time steps."""
    num_channels: int = 7
    """Number of variables C."""
    patch_len: int = 16
    """Time steps per patch P."""
    stride: int = 8
    """Step between patch starts (stride < patch_len gives overlapping patches)."""
    padding_patch: Literal["none", "end"] = "end"
    """"end" repeats the last value `stride` times so one more patch covers the series end (PatchTST/42). "none"
    aligns the patches to the end of the context: when (context_length - patch_len) % stride != 0 the oldest steps
    are dropped, never the most recent ones (as in Hugging Face PatchTST)."""
    revin: bool = True
    """Instance normalization: subtract each series' mean and divide by its std, undone on forecasts."""
    affine: bool = False
    """Learn a per-channel scale and shift after instance normalization (RevIN's affine option)."""
    positions: Literal["learned", "sincos", "sincos_normalized"] = "sincos"
    """Patch position embedding: fixed sin-cos, a learned table (initialized from sin-cos), or fixed
    "sincos_normalized": the interleaved sin-cos table at zero mean and std 0.1 (Hugging Face PatchTST's
    positional_encoding_type="sincos")."""
    positional_dropout: float = 0.0
    """Dropout on patch embeddings + positions before the encoder (PatchTST's positional dropout)."""
    mask_value: Literal["token", "zero_patch"] = "token"
    """What hidden patches become under the bert objective: a learned mask token, or the embedding of an all-zero
    (normalized) patch, i.e. the value embedding's bias (PatchTST's mask_value=0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_channels >= 1, self, "num_channels", f"must be >= 1, got {self.num_channels}")
        require(self.patch_len >= 1, self, "patch_len", f"must be >= 1, got {self.patch_len}")
        require(self.stride >= 1, self, "stride", f"must be >= 1, got {self.stride}")
        require(
            0.0 <= self.positional_dropout < 1.0,
            self,
            "positional_dropout",
            f"must be in [0, 1), got {self.positional_dropout}",
        )
        require(
            self.context_length >= self.patch_len,
            self,
            "context_length",
            f"{self.context_length} is shorter than one patch (patch_len={self.patch_len})",
        )

    @property
    def num_patches(self) -> int:
        """N: patches per channel."""
        extra = self.stride if self.padding_patch == "end" else 0
        return (self.context_length + extra - self.patch_len) // self.stride + 1


class InstanceNorm(nn.Module):
    """RevIN: per-series normalization over observed time steps, with an exact inverse."""

    def __init__(self, num_channels: int, affine: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: Tensor, observed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalizes x (B, L, C); returns (normalized with 0 at missing points, loc (B,1,C), scale (B,1,C))."""
        weight = observed.to(x.dtype)
        count = weight.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, C)
        filled = torch.where(observed, x, torch.zeros_like(x))
        loc = filled.sum(dim=1, keepdim=True) / count
        var = (((filled - loc) * weight) ** 2).sum(dim=1, keepdim=True) / count
        scale = (var + self.eps).sqrt()
        z = (filled - loc) / scale * weight
        if self.weight is not None:
            z = z * self.weight + self.bias
        return z, loc, scale

    def inverse(self, z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """Maps normalized values (B, H, C) back to the data scale."""
        if self.weight is not None:
            z = (z - self.bias) / (self.weight + self.eps * self.eps)
        return z * scale + loc


def prefix_normalize(norm: InstanceNorm, x: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalizes x (B, L, C) with the statistics of the observed values of its first `steps` time steps only.

    Causal-safe statistics for Timer-XL and leak-free ones for Moirai's masked tails: later values never reach
    loc/scale. A variate with nothing observed in the prefix keeps its values (loc 0, scale 1) rather than being
    divided by ~0. `norm`'s affine transform is not applied.

    Returns:
        (normalized x with 0 at missing points, observed mask (B, L, C), loc (B, 1, C), scale (B, 1, C)).
    """
    observed = ~torch.isnan(x)
    filled = torch.where(observed, x, torch.zeros_like(x))
    _, loc, scale = norm(x[:, :steps], observed[:, :steps])  # (B, 1, C) each
    seen = observed[:, :steps].any(dim=1, keepdim=True)  # (B, 1, C)
    scale = torch.where(seen, scale, torch.ones_like(scale))
    return (filled - loc) / scale * observed.to(x.dtype), observed, loc, scale


def check_series(
    x: Tensor,
    model: str,
    context_length: int | None = None,
    num_channels: int | None = None,
    max_abs: float = DEFAULT_MAX_ABS_INPUT,
) -> None:
    """Validates a raw (B, L, C) series batch for a time-series adapter; NaN (missing) is allowed, Inf is not.

    Args:
        x: the input.
        model: the model name used in messages.
        context_length: the required L, or None when any length is fine.
        num_channels: the required C, or None when any variate count is fine.
        max_abs: the largest |value| allowed (larger values overflow the float32 normalization statistics).

    Raises:
        ValueError: naming the model, the expected and the actual shape or dtype, or the count and first index of
            Inf or too large values.
    """
    if isinstance(x, Mapping):
        raise ValueError(
            f"{model} takes one (batch, time, channels) tensor, got a mapping with keys {sorted(x)}: {model} is "
            "channel-independent and does not use covariates (past_covariates / known_covariates); forecast with "
            "the moirai or timerxl adapter configured with covariates, or pass the target series alone"
        )
    if not isinstance(x, Tensor):
        raise ValueError(f"{model} expects a torch.Tensor series (batch, time, channels), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{model} expects series of shape (batch, time, channels), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{model} got an empty batch (batch size 0)")
    if context_length is not None and x.shape[1] != context_length:
        raise ValueError(
            f"{model} expects context_length={context_length} time steps, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)}); pad or crop the series, or change context_length"
        )
    if num_channels is not None and x.shape[2] != num_channels:
        raise ValueError(
            f"{model} was built for num_channels={num_channels}, got {x.shape[2]} channels "
            f"(input shape {tuple(x.shape)})"
        )
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{model} got an empty series (input shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"{model} expects a floating-point series, got dtype {x.dtype}")
    reject_values(x, torch.isinf(x), f"{model} input: Inf value(s)", "use NaN for missing values")
    check_magnitude(x, f"{model} input", max_abs)


def example_series(batch_size: int, length: int, channels: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, L, C) noisy sines with random phases and periods of 8-24 steps: valid input for every series adapter."""
    t = torch.arange(length, dtype=torch.float32).view(1, -1, 1)
    phase = torch.rand(batch_size, 1, channels, generator=generator) * 6.28
    period = 8.0 + 16.0 * torch.rand(batch_size, 1, channels, generator=generator)
    noise = 0.1 * torch.randn(batch_size, length, channels, generator=generator)
    return torch.sin(2 * math.pi * t / period + phase) + noise


def patch_indices(length: int, patch_len: int, stride: int, align: Literal["start", "end"] = "start") -> Tensor:
    """(N, P) time indices of every patch; gather with these instead of `Tensor.unfold` (exports to ONNX).

    `align="end"` makes the last patch end at the last step, skipping (length - patch_len) % stride leading steps.
    """
    offset = (length - patch_len) % stride if align == "end" else 0
    starts = torch.arange(offset, length - patch_len + 1, stride)  # (N,)
    return starts.unsqueeze(1) + torch.arange(patch_len).unsqueeze(0)


class PatchTSTAdapter(Adapter):
    """Channel-independent patch tokens for multivariate series (B, L, C).

    Tokens: B·C sequences × N patches, embedded by a shared linear layer. Targets: the normalized patches
    (B·C, N, P). Context: `loc` and `scale` (B, 1, C) to undo the normalization.
    """

    name = "patchtst"
    config_class = PatchTSTConfig
    tasks = ("forecast", "classification", "regression", "multilabel")
    free_fields = ("positional_dropout", "context_length", "num_channels")
    nonfinite_policy = "nan_as_missing"
    config: PatchTSTConfig

    def __init__(self, config: PatchTSTConfig, dim: int) -> None:
        super().__init__(config, dim)
        self.norm = InstanceNorm(config.num_channels, config.affine) if config.revin else None
        self.value_embedding = nn.Linear(config.patch_len, dim)
        if config.padding_patch == "end":
            index = patch_indices(config.context_length + config.stride, config.patch_len, config.stride)
        else:
            index = patch_indices(config.context_length, config.patch_len, config.stride, align="end")
        self.register_buffer("index", index, persistent=False)  # (N, P)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8}

    @property
    def target_dim(self) -> int:
        return self.config.patch_len

    def check_input(self, x: Tensor) -> None:
        """Raises ValueError for inputs that are not (B, context_length, num_channels) finite-or-NaN floats."""
        check_series(x, "PatchTST", self.config.context_length, self.config.num_channels, self.max_abs_input)

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(normalized x with 0 at missing points, observed mask, loc, scale) for x (B, L, C)."""
        observed = ~torch.isnan(x)
        if self.norm is None:
            ones = torch.ones_like(x[:, :1])
            return torch.where(observed, x, torch.zeros_like(x)), observed, ones * 0, ones
        z, loc, scale = self.norm(x, observed)
        return z, observed, loc, scale

    def patchify(self, z: Tensor) -> Tensor:
        """(B, L, C) → (B·C, N, P) patches, channel-independent."""
        b, _, c = z.shape
        z = z.transpose(1, 2)  # (B, C, L)
        if self.config.padding_patch == "end":
            z = torch.cat([z, z[..., -1:].expand(-1, -1, self.config.stride)], dim=-1)  # (B, C, L + S)
        patches = z[..., self.index]  # (B, C, N, P)
        return patches.reshape(b * c, *patches.shape[2:])

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        if not torch.compiler.is_compiling():
            self.check_input(inputs)
        inputs = inputs.to(self.value_embedding.weight.dtype)  # float16/64 series in a float32 model
        z, observed, loc, scale = self.normalize(inputs)  # (B, L, C)
        patches = self.patchify(z)  # (B·C, N, P)
        observed_patches = self.patchify(observed.to(z.dtype)) > 0.5  # (B·C, N, P)
        bc, n = patches.shape[:2]
        positions = torch.arange(n, device=inputs.device).view(1, n, 1).expand(bc, n, 1)
        channel = torch.arange(inputs.shape[2], device=inputs.device).repeat(inputs.shape[0])  # (B·C,)
        return TokenBatch(
            tokens=self.value_embedding(patches),  # (B·C, N, D)
            positions=positions,
            variate_ids=channel.view(bc, 1).expand(bc, n),  # each sequence is one channel
            targets=patches,
            target_mask=observed_patches,
            context={"loc": loc, "scale": scale},
        )

    def mask_embedding(self) -> Tensor | None:
        if self.config.mask_value == "zero_patch":
            return self.value_embedding.bias  # value_embedding(zeros(P)) = bias, (D,)
        return None

    def embedding_dropout(self) -> float:
        return self.config.positional_dropout

    def build_positions(self, dim: int) -> nn.Module | None:
        if self.config.positions == "sincos":
            return build_positions("sincos", dim, ndim=1)
        if self.config.positions == "sincos_normalized":
            return FixedPositions(normalized_sincos_table(self.config.num_patches, dim))
        return build_positions("learned", dim, grid=(self.config.num_patches,))

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task == "forecast":
            return ForecastHead(self, head, dim)
        return ChannelPooledHead(self.config, head, dim)

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        return example_series(batch_size, self.config.context_length, self.config.num_channels, generator)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(input_name="series", output_names=("outputs",), tolerance=1e-4)

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Patch predictions (B·C, N, P) in normalized units → the (B, L, C) series in data units.

        Overlapping patches (stride < patch_len) are averaged; the padding patch of `padding_patch="end"` is
        dropped, and with `padding_patch="none"` the leading steps no patch covers are NaN.
        """
        cfg = self.config
        c = cfg.num_channels
        length = cfg.context_length + (cfg.stride if cfg.padding_patch == "end" else 0)
        index = self.index.reshape(-1)  # (N·P,) time step of every patch value
        values = pred.float().reshape(pred.shape[0], -1)  # (B·C, N·P)
        total = values.new_zeros(values.shape[0], length).index_add_(1, index, values)
        count = values.new_zeros(length).index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
        z = total / count  # (B·C, L'); 0/0 = NaN where no patch reaches
        z = z.view(-1, c, length)[..., : cfg.context_length].transpose(1, 2)  # (B, L, C)
        loc, scale = batch.context["loc"], batch.context["scale"]
        if self.norm is None:
            return z
        return self.norm.inverse(z, loc, scale)

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        from mmsdk.adapters.timeseries.evaluation import plot_reconstruction

        if batch.targets is None:
            return None
        channel = min(self.config.num_channels, batch.batch_size) - 1  # sequence of the first sample's last channel
        return plot_reconstruction(
            batch.targets[channel].detach().cpu().numpy(),
            pred[channel].detach().float().cpu().numpy(),
            target[channel].cpu().numpy(),
            self.config.stride,
            path,
            title=f"masked-patch reconstruction (channel {channel}, normalized)",
        )


class ForecastHead(nn.Module):
    """PatchTST's forecast head: (B·C, N, D) → pool per channel (flatten by default, or mean/max over patches as
    in HF's pooling_type) → linear → (B, horizon, C), de-normalized to the input's scale.

    With `HeadConfig.quantiles` the linear layer also predicts the Q quantiles of every step (see
    :mod:`~mmsdk.adapters.timeseries.quantile_outputs`) and the head returns {"forecast", "quantiles"}.
    """

    def __init__(self, adapter: PatchTSTAdapter, head: HeadConfig, dim: int) -> None:
        super().__init__()
        self.channels = adapter.config.num_channels
        self.horizon = head.num_outputs
        self.head = head
        self.values = output_count(head)  # 1 + Q per step
        self.pooling = head.pooling or "flatten"
        if self.pooling not in ("flatten", "mean", "max"):
            raise ValueError(f"HeadConfig.pooling={self.pooling!r}: PatchTST forecasts use flatten, mean or max")
        self.dropout = nn.Dropout(head.dropout)
        width = adapter.config.num_patches * dim if self.pooling == "flatten" else dim
        self.linear = nn.Linear(width, head.num_outputs * self.values)
        self.norm = adapter.norm  # shared with the adapter (same parameters), for the inverse

    def forward(self, hidden: Tensor, batch: TokenBatch) -> Outputs:
        bc, h, v = hidden.shape[0], self.horizon, self.values
        z = self.linear(self.dropout(pool_tokens(hidden, self.pooling)))  # (B·C, V·H)
        z = z.view(bc // self.channels, self.channels, v * h).transpose(1, 2)  # (B, V·H, C)
        if self.norm is not None:
            z = self.norm.inverse(z, batch.context["loc"], batch.context["scale"])
        return forecast_outputs(z.reshape(z.shape[0], v, h, self.channels), self.head)  # from (B, V, H, C)


class ChannelPooledHead(nn.Module):
    """Classification/regression: pool patches per channel, concatenate channels, linear → (B, outputs)."""

    def __init__(self, config: PatchTSTConfig, head: HeadConfig, dim: int) -> None:
        super().__init__()
        self.channels, self.pooling = config.num_channels, head.pooling or "mean"
        width = {"mean_max": 2 * dim, "flatten": dim * config.num_patches}.get(self.pooling, dim)
        self.dropout = nn.Dropout(head.dropout)
        self.linear = nn.Linear(width * config.num_channels, head.num_outputs)

    def forward(self, hidden: Tensor, batch: TokenBatch) -> Tensor:
        pooled = pool_tokens(hidden, self.pooling, class_features=batch.class_features)  # (B·C, W)
        pooled = pooled.reshape(pooled.shape[0] // self.channels, -1)  # (B, C·W)
        return self.linear(self.dropout(pooled))
