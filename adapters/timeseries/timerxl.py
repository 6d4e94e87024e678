"""Timer-XL adapter: decoder-only next-patch prediction over flattened multivariate patch tokens.

A series (B, L, C) is cut into N = L / P non-overlapping patches per variate, and all C·N patches form ONE token
sequence (unlike PatchTST's channel independence). Token (c, n) carries `variate_ids` = c and `time_ids` = n, so
with the causal objective the core's attention mask compares time ids: token (c, n) sees every variate's patches
0..n — the multivariate causal mask kron(ones(C, C), tril(N, N)) of Timer-XL. Use `encoder.rope="1d"` (rotary
embedding over the time ids) and `encoder.variate_bias=True` (Timer-XL's learned same/other-variate bias).

Normalization is causal-safe: each variate is normalized with the mean and std of its observed values in the
first `norm_patches` patches only. A prediction at patch n >= norm_patches - 1 therefore depends on patches 0..n
alone; predictions at earlier patches are excluded from the next-token loss. Full-context statistics would leak
the future into every token through the normalization. The same statistics de-normalize forecasts.

Forecasting (`num_outputs` = H) rolls out autoregressively: predict the next patch of every variate from the last
token of each variate, append it to the raw context, drop the oldest patch (fixed length L), and run the backbone
again — ceil(H / P) static steps, so the model exports to ONNX as an unrolled graph.

Covariates (`past_covariates`, `known_covariates`; the input is then a mapping, see
`mmsdk.adapters.timeseries.covariates`) are variates after the targets. Known covariates are read one patch ahead:
their token n carries patch n + 1, so under the multivariate causal mask a target token at patch n, which predicts
patch n + 1, sees the known values of the patch it predicts and nothing later of the targets. Past covariates have
no future: the rollout appends NaN (missing) patches for them and the given values for the known ones. Only the
targets are scored and forecast.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk.adapters.timeseries.covariates import (
    KNOWN,
    PAST,
    SERIES,
    STATIC,
    CovariateConfig,
    CovariateExamples,
    StaticEmbedding,
    future_rows,
)
from mmsdk.adapters.timeseries.patchtst import (
    InstanceNorm,
    check_series,
    patch_indices,
    prefix_normalize,
)
from mmsdk.adapters.timeseries.quantile_outputs import forecast_outputs, output_count
from mmsdk.config import require
from mmsdk.contracts.adapter import Adapter, ExportSpec, LossTerms
from mmsdk.contracts.heads import Encode, HeadConfig, RolloutHead
from mmsdk.contracts.losses import masked_mse
from mmsdk.contracts.tasks import Outputs
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.positions import build_positions
from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)


@dataclass
class TimerXLConfig(CovariateConfig):
    """Timer-XL tokenization of a (B, L, C) series into C·N patch tokens."""

    context_length: int = 672
    """Input length L in time steps; a multiple of `patch_len`."""
    num_channels: int = 7
    """Number of variables C."""
    patch_len: int = 96
    """Time steps per patch P (patches do not overlap: stride = P). Forecasts advance P steps per rollout step."""
    revin: bool = True
    """Instance normalization with causal-safe statistics (see `norm_patches`), undone on forecasts."""
    norm_patches: int = 1
    """How many leading patches give each variate's normalization statistics. Predictions at tokens before the
    last of them are not trained (they would see statistics of their future); num_patches gives full-context
    statistics, which suits forecasting only (causal pretraining then has no token to learn from)."""
    positions: Literal["none", "sincos"] = "none"
    """Absolute time embedding added to tokens: none (use the encoder's rope="1d", as Timer-XL) or sincos of the
    patch index (for encoders without rope)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_channels >= 1, self, "num_channels", f"must be >= 1, got {self.num_channels}")
        require(self.patch_len >= 1, self, "patch_len", f"must be >= 1, got {self.patch_len}")
        require(
            self.context_length >= self.patch_len and self.context_length % self.patch_len == 0,
            self,
            "context_length",
            f"must be a positive multiple of patch_len={self.patch_len}, got {self.context_length}",
        )
        require(
            1 <= self.norm_patches <= self.num_patches,
            self,
            "norm_patches",
            f"must be in [1, num_patches={self.num_patches}], got {self.norm_patches}",
        )

    @property
    def num_patches(self) -> int:
        """N: patches per variate."""
        return self.context_length // self.patch_len

    @property
    def num_variates(self) -> int:
        """V: targets plus covariates, the variates of the token sequence."""
        return self.num_channels + self.past_covariates + self.known_covariates


class TimerXLAdapter(CovariateExamples, Adapter):
    """Flattened multivariate patch tokens (B, C·N, D) for causal next-patch prediction.

    Token c·N + n embeds patch n of variate c with a linear layer shared by all variates. Targets: the normalized
    patches (B, C·N, P). Context: `loc` and `scale` (B, 1, C) to undo the normalization, and the raw `inputs`
    (B, L, C) that the forecast rollout extends.
    """

    name = "timerxl"
    config_class = TimerXLConfig
    tasks = ("forecast",)
    free_fields = ("context_length", "num_channels", "past_covariates", "known_covariates", "static_categoricals")
    fresh_parameters = ("static_embedding",)
    nonfinite_policy = "nan_as_missing"
    config: TimerXLConfig

    def __init__(self, config: TimerXLConfig, dim: int) -> None:
        super().__init__(config, dim)
        c, n = config.num_variates, config.num_patches
        self.norm = InstanceNorm(c, affine=False) if config.revin else None
        self.value_embedding = nn.Linear(config.patch_len, dim)
        self.register_buffer("index", patch_indices(config.context_length, config.patch_len, config.patch_len), False)
        self.register_buffer("time_ids", torch.arange(n).repeat(c), persistent=False)  # (C·N,) patch n
        self.register_buffer("variate_ids", torch.arange(c).repeat_interleave(n), persistent=False)  # (C·N,) c
        statics = config.static_categoricals
        self.static_embedding = StaticEmbedding(statics, dim) if statics else None

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"context_length": 32, "num_channels": 2, "patch_len": 8}

    @property
    def target_dim(self) -> int:
        return self.config.patch_len

    def check_input(self, x: Tensor) -> None:
        """Raises ValueError for inputs that are not (B, context_length, num_channels) finite-or-NaN floats."""
        check_series(x, "TimerXL", self.config.context_length, self.config.num_channels, self.max_abs_input)

    def joined(self, inputs: Tensor | Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(the (B, L, V) window of targets, past and one-patch-ahead known covariates, the raw known covariates
        (B, L + F, Kk) or None, the static ids (B, S) or None) of raw inputs; a model without covariates gets its
        checked tensor back."""
        cfg = self.config
        if not (isinstance(inputs, Mapping) or cfg.has_covariates):
            if not torch.compiler.is_compiling():
                self.check_input(inputs)
            return inputs, None, None
        parts = self.covariate_parts(inputs, "TimerXL")
        if not is_tracing():
            self.check_input(parts.series)
        length, p = parts.context_length, cfg.patch_len
        blocks = [parts.series] + ([parts.past] if parts.past is not None else [])
        if parts.known is not None:  # token n of a known covariate carries patch n + 1
            known = parts.known.to(parts.series.dtype)
            blocks.append(torch.cat([known[:, p:length], future_rows(known, length, p)], dim=1))
        window = torch.cat([b.to(parts.series.dtype) for b in blocks], dim=-1)  # (B, L, V)
        return window, parts.known, parts.static

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(normalized x with 0 at missing points, observed mask, loc, scale) for x (B, L, C).

        loc and scale (B, 1, C) come from the observed values of the first `norm_patches` patches; a variate with
        none observed there keeps its values (loc 0, scale 1) rather than being divided by ~0.
        """
        if self.norm is None:
            observed = ~torch.isnan(x)
            ones = torch.ones_like(x[:, :1])
            return torch.where(observed, x, torch.zeros_like(x)), observed, ones * 0, ones
        return prefix_normalize(self.norm, x, self.config.norm_patches * self.config.patch_len)

    def patchify(self, z: Tensor) -> Tensor:
        """(B, L, C) → (B, C·N, P) patches in variate-major order (token c·N + n is patch n of variate c)."""
        b = z.shape[0]
        patches = z.transpose(1, 2)[..., self.index]  # (B, C, N, P)
        return patches.reshape(b, -1, self.config.patch_len)

    def tokenize(self, inputs: Tensor | Mapping[str, Tensor]) -> TokenBatch:
        inputs, known, static = self.joined(inputs)
        inputs = inputs.to(self.value_embedding.weight.dtype)  # float16/64 series in a float32 model
        z, observed, loc, scale = self.normalize(inputs)  # (B, L, C)
        patches = self.patchify(z)  # (B, C·N, P)
        b, cn = patches.shape[:2]
        time_ids = self.time_ids.unsqueeze(0).expand(b, cn)  # (B, C·N)
        tokens = self.value_embedding(patches)  # (B, C·N, D)
        context = {"loc": loc, "scale": scale, "inputs": inputs}
        if known is not None:
            context["known"] = known.to(inputs.dtype)
        if static is not None and self.static_embedding is not None:  # every token of the sample
            tokens = tokens + self.static_embedding(static.long()).unsqueeze(1)
            context["static"] = static
        return TokenBatch(
            tokens=tokens,
            positions=time_ids.unsqueeze(-1),  # (B, C·N, 1)
            variate_ids=self.variate_ids.unsqueeze(0).expand(b, cn),
            time_ids=time_ids,
            clip_time=(time_ids.float() + 0.5) / self.config.num_patches,  # the patch's centre in the context
            targets=patches,
            target_mask=self.patchify(observed.to(z.dtype)) > 0.5,  # (B, C·N, P)
            context=context,
        )

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> LossTerms:
        """MSE of the prediction at token (c, n) against patch n + 1 of the same variate c.

        Pairs with n = N - 1 (no next patch), n < norm_patches - 1 (their input depends on the normalization
        statistics of later patches) and unobserved target values are excluded.

        Raises:
            ValueError: without targets, or when no (n, n + 1) pair is left to train on.
        """
        if batch.targets is None:
            raise ValueError("TimerXLAdapter.next_token_loss needs batch.targets (from TimerXLAdapter.tokenize)")
        cfg = self.config
        v, c, n, p = cfg.num_variates, cfg.num_channels, cfg.num_patches, cfg.patch_len
        first = cfg.norm_patches - 1 if cfg.revin else 0
        if n - 1 - first < 1:
            raise ValueError(
                f"TimerXL next-patch pretraining needs num_patches > norm_patches (context_length / patch_len = {n}, "
                f"norm_patches = {cfg.norm_patches}); lengthen the context or shorten patch_len"
            )
        b = pred.shape[0]
        # the targets' pairs only (covariates are inputs, not scored)
        source = pred.reshape(b, v, n, p)[:, :c, first:-1].reshape(b, -1, p)  # (B, C·(N-1-first), P)
        target = batch.targets.reshape(b, v, n, p)[:, :c, first + 1 :].reshape(b, -1, p)
        value_mask = None
        if batch.target_mask is not None:
            value_mask = batch.target_mask.reshape(b, v, n, p)[:, :c, first + 1 :].reshape(b, -1, p)
        valid = torch.ones(source.shape[:2], dtype=torch.bool, device=pred.device)
        return {"mse": masked_mse(source, target, valid, value_mask)}

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Patch values (B, C·N, P) in normalized units → the (B, L, C) series in data units."""
        b, v = pred.shape[0], self.config.num_variates
        z = pred.float().reshape(b, v, -1).transpose(1, 2)  # (B, L, V)
        return z * batch.context["scale"] + batch.context["loc"]

    def build_positions(self, dim: int) -> nn.Module | None:
        return build_positions(self.config.positions, dim, ndim=1)

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task != "forecast":
            raise ValueError(f"TimerXL supports the forecast task only, got {head.task!r}")
        return TimerXLForecastHead(self, head, dim)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(input_name="series", output_names=("outputs",), tolerance=1e-4)


class TimerXLForecastHead(RolloutHead):
    """Next-patch head with autoregressive rollout: (B, C·N, D) features → (B, H, C) forecasts in data units.

    Each step maps the last token of every variate to its next patch (B, C, P), de-normalizes it with the
    statistics of the current window, and appends it to the raw window, whose oldest patch drops out; the task
    model's `encode` then re-runs tokenization and the backbone. ceil(H / P) steps; the result is cropped to H.

    With `HeadConfig.quantiles` every step also predicts the Q quantiles of the next patch (the point forecast is
    what the rollout feeds back) and the head returns {"forecast", "quantiles"} (see
    :mod:`~mmsdk.adapters.timeseries.quantile_outputs`).
    """

    def __init__(self, adapter: TimerXLAdapter, head: HeadConfig, dim: int) -> None:
        super().__init__()
        cfg = adapter.config
        self.channels, self.patch_len, self.num_patches = cfg.num_channels, cfg.patch_len, cfg.num_patches
        self.variates, self.past, self.known = cfg.num_variates, cfg.past_covariates, cfg.known_covariates
        self.mapping = cfg.has_covariates  # the model's input is a mapping
        self.uses_context_features = not self.mapping  # a covariate model re-encodes its cropped inputs
        self.horizon = head.num_outputs
        self.steps = math.ceil(head.num_outputs / cfg.patch_len)
        self.dropout = nn.Dropout(head.dropout)
        self.head, self.values = head, output_count(head)  # 1 + Q values per step
        self.linear = nn.Linear(dim, cfg.patch_len * self.values)

    def next_patch(self, hidden: Tensor, batch: TokenBatch) -> Tensor:
        """The next patch of every variate in data units: (B, 1 + Q, P, C), the point forecast first."""
        b, c = hidden.shape[0], self.channels
        last = hidden.reshape(b, self.variates, self.num_patches, -1)[:, :c, -1]  # (B, C, D) of the targets
        z = self.linear(self.dropout(last)).view(b, c, self.values, self.patch_len).permute(0, 2, 3, 1)
        return z * batch.context["scale"][..., :c].unsqueeze(1) + batch.context["loc"][..., :c].unsqueeze(1)

    def covariate_inputs(self, batch: TokenBatch) -> dict[str, Tensor]:
        """The raw input mapping of a covariate batch, with the known covariates cropped to the horizon (rows after
        it are never read)."""
        window, known = batch.context["inputs"], batch.context.get("known")  # (B, L, V), (B, L + F, Kk)
        length, c, kp = window.shape[1], self.channels, self.past
        inputs = {SERIES: window[..., :c]}
        if kp:
            inputs[PAST] = window[..., c : c + kp]
        if known is not None:
            if not is_tracing() and known.shape[1] < length + self.horizon:
                raise ValueError(
                    f"TimerXL inputs: 'known_covariates' gives {known.shape[1] - length} rows after the context; the "
                    f"forecast needs the known values of all {self.horizon} horizon steps"
                )
            inputs[KNOWN] = known[:, : length + self.horizon]
        if "static" in batch.context:
            inputs[STATIC] = batch.context["static"]
        return inputs

    def advance(self, inputs: Tensor | dict[str, Tensor], patch: Tensor) -> Tensor | dict[str, Tensor]:
        """The raw inputs one patch later: the oldest patch dropped, the predicted target patch appended (a NaN
        patch for past covariates; the known ones move on to their next rows)."""
        p = self.patch_len
        if isinstance(inputs, Tensor):  # (B, L, C)
            return torch.cat([inputs[:, p:], patch.to(inputs.dtype)], dim=1)
        series = inputs[SERIES]
        moved = {SERIES: torch.cat([series[:, p:], patch.to(series.dtype)], dim=1)}
        if PAST in inputs:
            past = inputs[PAST]
            moved[PAST] = torch.cat([past[:, p:], torch.full_like(past[:, :p], float("nan"))], dim=1)
        if KNOWN in inputs:
            moved[KNOWN] = inputs[KNOWN][:, p:]
        if STATIC in inputs:
            moved[STATIC] = inputs[STATIC]
        return moved

    def forward(self, hidden: Tensor | None, batch: TokenBatch, encode: Encode) -> Outputs:
        covariates = self.mapping
        inputs: Tensor | dict[str, Tensor] = self.covariate_inputs(batch) if covariates else batch.context["inputs"]
        patches = []
        for step in range(self.steps):  # static: unrolled when exported
            if step > 0 or covariates:  # a covariate model encodes its cropped inputs from the first step
                hidden, batch = encode(inputs)  # (B, V·N, D)
            patch = self.next_patch(hidden, batch)  # type: ignore[arg-type]  # (B, 1 + Q, P, C)
            patches.append(patch)
            if step + 1 < self.steps:
                inputs = self.advance(inputs, patch[:, 0])
        return forecast_outputs(torch.cat(patches, dim=2)[:, :, : self.horizon], self.head)  # from (B, 1 + Q, H, C)
