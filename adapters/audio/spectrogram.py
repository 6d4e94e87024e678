"""Spectrogram tokens from raw waveforms: the part SSAST and AudioMAE share.

A (B, T) waveform at the model's sample rate becomes tokens in five steps, all inside the model so that one ONNX
graph runs from raw audio:

    waveform (B, T), NaN tail = padding
      → Kaldi log-mel filterbank (B, F, M)            (frontend.Fbank, held to torchaudio)
      → (x − mean) / (2 · std)                        (dataset statistics stored in the config)
      → [SpecAugment, training mode only]
      → patches (B, N, pf·pt), time-major              (16×16 patches or M×2 frames, any stride)
      → linear patch embedding (B, N, D)

Tokens are ordered by time, then frequency. Each token's position is its patch's (frequency, time) start in units
of the patch size, so overlapping strides give fractional positions that the learned table interpolates, and clips
of any length up to `max_frames` read the same table. A patch is real when all its frames come from real samples;
the others are padding tokens, so a clip padded with NaN gives the same output as the clip alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk.adapters.audio.frontend import Fbank, FbankConfig
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import Adapter, ExportSpec, check_magnitude, reject_values
from mmsdk.contracts.heads import HeadConfig, TokenPooledHead
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.positions import InterpolatedPositions, SinCosPositions
from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)

AUDIOSET_MEAN = -4.2677393
"""Mean of the AudioSet log-mel filterbank (128 bins), the AST/SSAST default normalization."""
AUDIOSET_STD = 4.5689974
"""Standard deviation of the AudioSet log-mel filterbank (128 bins)."""
MAX_ABS_SAMPLE = 1e12
"""The largest |sample| a waveform may hold (clips are in [-1, 1]): far below where the float32 power spectrum of a
frame (~N·W·16·x², Parseval) overflows."""


@dataclass
class SpectrogramConfig(Config):
    """Front end, normalization, patching and positions of a spectrogram adapter."""

    fbank: FbankConfig = field(default_factory=FbankConfig)
    """The Kaldi filterbank (sample rate, mel bins, window and shift); the AST/SSAST settings by default."""
    tokens: Literal["patch", "frame"] = "patch"
    """patch: 16×16 (frequency × time) patches; frame: all mel bins × 2 frames (SSAST's frame tokens)."""
    patch_freq: int | None = None
    """Mel bins per token; None = 16 for patches, every mel bin for frames."""
    patch_time: int | None = None
    """Frames per token; None = 16 for patches, 2 for frames."""
    stride_freq: int | None = None
    """Mel-bin step between tokens; None = the patch size (no overlap). SSAST fine-tunes with overlap (10)."""
    stride_time: int | None = None
    """Frame step between tokens; None = the patch size."""
    max_frames: int = 1024
    """The longest clip in frames (1024 = 10.24 s at a 10 ms shift): the size of the learned position table."""
    positions: Literal["learned", "sincos"] = "learned"
    """learned: a table over the patch grid (SSAST), interpolated at fractional positions; sincos: fixed 2-D
    sin-cos of the (frequency, time) position (AudioMAE), for any clip length."""
    norm_mean: float = AUDIOSET_MEAN
    """Dataset mean of the log-mel features; inputs become (x − mean) / (2 · std). Compute yours with
    `mmsdk.adapters.audio.fbank_statistics` (the default is AudioSet's)."""
    norm_std: float = AUDIOSET_STD
    """Dataset standard deviation of the log-mel features."""
    freq_mask: int = 0
    """SpecAugment: the widest band of mel bins zeroed per clip while training (0 = off; AST uses 48 of 128)."""
    time_mask: int = 0
    """SpecAugment: the widest run of frames zeroed per clip while training (0 = off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        mels = self.fbank.num_mel_bins
        pf, pt = self.patch_size
        require(1 <= pf <= mels, self, "patch_freq", f"must be in [1, num_mel_bins={mels}], got {pf}")
        require(1 <= pt <= self.max_frames, self, "patch_time", f"must be in [1, max_frames], got {pt}")
        sf, st = self.stride
        require(1 <= sf <= pf, self, "stride_freq", f"must be in [1, patch_freq={pf}], got {sf}")
        require(1 <= st <= pt, self, "stride_time", f"must be in [1, patch_time={pt}], got {st}")
        require(self.norm_std > 0, self, "norm_std", f"must be > 0, got {self.norm_std}")
        require(
            0 <= self.freq_mask < mels, self, "freq_mask", f"must be in [0, num_mel_bins={mels}), got {self.freq_mask}"
        )
        require(self.time_mask >= 0, self, "time_mask", f"must be >= 0, got {self.time_mask}")

    @property
    def patch_size(self) -> tuple[int, int]:
        """(mel bins, frames) per token."""
        default = (16, 16) if self.tokens == "patch" else (self.fbank.num_mel_bins, 2)
        return (self.patch_freq or default[0], self.patch_time or default[1])

    @property
    def stride(self) -> tuple[int, int]:
        """(mel-bin, frame) steps between tokens."""
        pf, pt = self.patch_size
        return (self.stride_freq or pf, self.stride_time or pt)

    @property
    def freq_tokens(self) -> int:
        """Tokens per time step (patches along the mel axis)."""
        return (self.fbank.num_mel_bins - self.patch_size[0]) // self.stride[0] + 1

    @property
    def min_samples(self) -> int:
        """The shortest clip (in samples) that gives one token: one patch of frames."""
        return self.fbank.window_samples + (self.patch_size[1] - 1) * self.fbank.shift_samples

    def samples_for(self, frames: int) -> int:
        """Samples of a clip of `frames` frames."""
        return self.fbank.window_samples + (frames - 1) * self.fbank.shift_samples


def check_waveform(waveform: object, config: SpectrogramConfig, max_abs: float = MAX_ABS_SAMPLE) -> Tensor:
    """Checks a (B, T) float waveform batch and returns each clip's real length (B,): the samples before its NaN
    tail (padding). Runs only in eager mode (value checks cannot be traced).

    Raises:
        ValueError: for a non-tensor, wrong rank or dtype, an empty batch or clip, NaN inside a clip (only a
            trailing run of NaN is padding), Inf, samples beyond ±max_abs, or a clip shorter than one token.
    """
    if not isinstance(waveform, Tensor):
        raise ValueError(f"audio: the waveform must be a torch.Tensor (B, T), got {type(waveform).__name__}")
    shape = tuple(waveform.shape)
    if waveform.dim() == 1:
        raise ValueError(
            f"audio: the waveform must be a batch (B, T), got one clip of shape {shape}; add a batch dimension "
            "with .unsqueeze(0)"
        )
    if waveform.dim() != 2:
        raise ValueError(f"audio: the waveform must be (B, T) mono samples, got shape {shape} (mix channels down)")
    if not waveform.is_floating_point():
        raise ValueError(f"audio: the waveform must be floating point in [-1, 1], got dtype {waveform.dtype}")
    if shape[0] == 0:
        raise ValueError(f"audio: empty batch (shape {shape})")
    if shape[1] == 0:
        raise ValueError(
            f"audio: the clips have no samples (shape {shape}); the shortest clip this model tokenizes has "
            f"{config.min_samples} samples"
        )
    lengths = real_lengths(waveform)
    real = torch.arange(shape[1], device=waveform.device) < lengths[:, None]
    inner_nan = (torch.isnan(waveform) & real).any(dim=1)
    if bool(inner_nan.any()):
        rows = inner_nan.nonzero().flatten().tolist()
        raise ValueError(f"audio: clip(s) {rows[:5]} have NaN samples before their end; only a NaN tail is padding")
    advice = "only a trailing run of NaN is padding"
    reject_values(waveform, torch.isinf(waveform), "audio: the waveform's Inf sample(s)", advice)
    check_magnitude(waveform, "audio: the waveform", max_abs)
    short = lengths < config.min_samples
    if bool(short.any()):
        rows = short.nonzero().flatten().tolist()
        rate = config.fbank.sample_rate
        raise ValueError(
            f"audio: clip(s) {rows[:5]} have {int(lengths[rows[0]])} real samples; the shortest clip this model "
            f"tokenizes is one patch of {config.patch_size[1]} frames = {config.min_samples} samples "
            f"({config.min_samples / rate:.3f} s at {rate} Hz)"
        )
    return lengths


def real_lengths(waveform: Tensor) -> Tensor:
    """(B,) long: one past each clip's last non-NaN sample (the rest is padding)."""
    index = torch.arange(1, waveform.shape[1] + 1, device=waveform.device)  # (T,)
    return torch.where(torch.isnan(waveform), 0, index).amax(dim=1)  # (B,)


def spec_augment(x: Tensor, frames: Tensor, freq_width: int, time_width: int) -> Tensor:
    """Zeroes one random band of mel bins and one random run of real frames per clip (SpecAugment's frequency and
    time masking) in normalized features (0 = the dataset mean). x: (B, F, M); frames: (B,) real frames."""
    b, f, m = x.shape
    keep = torch.ones(b, f, m, dtype=torch.bool, device=x.device)
    if freq_width > 0:
        width = torch.randint(0, freq_width + 1, (b, 1), device=x.device)  # (B, 1)
        start = (torch.rand(b, 1, device=x.device) * (m - width + 1)).floor()
        bins = torch.arange(m, device=x.device)  # (M,)
        keep = keep & ~((bins >= start) & (bins < start + width))[:, None, :]
    if time_width > 0:
        width = torch.minimum(torch.randint(0, time_width + 1, (b, 1), device=x.device), frames[:, None])
        start = (torch.rand(b, 1, device=x.device) * (frames[:, None] - width + 1)).floor()
        steps = torch.arange(f, device=x.device)  # (F,)
        keep = keep & ~((steps >= start) & (steps < start + width))[:, :, None]
    return x * keep


class SpectrogramAdapter(Adapter):
    """Base of the spectrogram adapters: waveform (B, T) → Kaldi fbank → normalized patches → tokens (B, N, D).

    Positions: (B, N, 2) (frequency, time) patch starts in patch units. Targets: (B, N, pf·pt) normalized
    spectrogram patches (mel-bin major). Context: the normalized spectrogram (B, F, M) and real frames (B,).
    """

    config_class = SpectrogramConfig
    tasks = ("classification", "multilabel", "regression")
    free_fields = ("stride_freq", "stride_time", "freq_mask", "time_mask")
    nonfinite_policy = "nan_as_padding"
    max_abs_input = MAX_ABS_SAMPLE
    float32_modules = ("fbank",)  # its power spectrum spans many orders of magnitude: int8/fp16 would flatten it
    config: SpectrogramConfig

    def __init__(self, config: SpectrogramConfig, dim: int) -> None:
        super().__init__(config, dim)
        self.fbank = Fbank(config.fbank)
        pf, pt = config.patch_size
        self.embed = nn.Linear(pf * pt, dim)  # a (pf, pt) conv with stride, on gathered patches

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64}

    @property
    def target_dim(self) -> int:
        pf, pt = self.config.patch_size
        return pf * pt

    def spectrogram(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized log-mel features (B, F, M), zero on padded frames, and each clip's real frames (B,)."""
        cfg = self.config
        lengths = real_lengths(waveform) if is_tracing() else check_waveform(waveform, cfg, self.max_abs_input)
        features, frames = self.fbank(waveform, lengths)  # (B, F, M), (B,)
        x = (features - cfg.norm_mean) / (2 * cfg.norm_std)
        if not is_tracing() and bool((frames > cfg.max_frames).any()) and cfg.positions == "learned":
            raise ValueError(
                f"audio: a clip has {int(frames.max())} frames but max_frames={cfg.max_frames} (the learned "
                "position table); crop clips or pretrain with a larger max_frames"
            )
        real = torch.arange(x.shape[1], device=x.device)[None, :] < frames[:, None]  # (B, F)
        x = x * real[..., None]
        if self.training and (cfg.freq_mask or cfg.time_mask):
            x = spec_augment(x, frames, cfg.freq_mask, cfg.time_mask)
        return x, frames

    def patches(self, x: Tensor, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Time-major patches (B, N, pf·pt), positions (N, 2) and the padding mask (B, N) of features (B, F, M)."""
        cfg = self.config
        (pf, pt), (sf, st) = cfg.patch_size, cfg.stride
        b, f, _ = x.shape
        nf = cfg.freq_tokens
        nt = (f - pt) // st + 1
        t_start = torch.arange(nt, device=x.device) * st  # (Nt,)
        f_start = torch.arange(nf, device=x.device) * sf  # (Nf,)
        t_index = t_start[:, None] + torch.arange(pt, device=x.device)  # (Nt, pt)
        f_index = f_start[:, None] + torch.arange(pf, device=x.device)  # (Nf, pf)
        patches = x[:, t_index][..., f_index]  # (B, Nt, pt, Nf, pf)
        patches = patches.permute(0, 1, 3, 4, 2).reshape(b, nt * nf, pf * pt)  # (B, N, pf·pt)
        positions = torch.stack(
            [(f_start / pf)[None, :].expand(nt, nf), (t_start / pt)[:, None].expand(nt, nf)], dim=-1
        ).reshape(nt * nf, 2)  # (N, 2) (frequency, time)
        real = (t_start + pt)[None, :] <= frames[:, None]  # (B, Nt)
        padding = real[:, :, None].expand(b, nt, nf).reshape(b, nt * nf)  # (B, N)
        return patches, positions.float(), padding

    def clip_time(self, x: Tensor, frames: Tensor) -> Tensor:
        """(B, N) where each token's frames lie in its clip: the patch's centre frame over the clip's real frames."""
        cfg = self.config
        (_, pt), (_, st) = cfg.patch_size, cfg.stride
        nt = (x.shape[1] - pt) // st + 1
        centre = torch.arange(nt, device=x.device) * st + pt / 2  # (Nt,)
        time = centre[None, :] / frames[:, None].clamp_min(1).to(centre.dtype)  # (B, Nt)
        return time[:, :, None].expand(-1, -1, cfg.freq_tokens).reshape(x.shape[0], -1)

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        x, frames = self.spectrogram(inputs)  # (B, F, M), (B,)
        patches, positions, padding = self.patches(x, frames)
        b = patches.shape[0]
        padding_mask: Tensor | None = padding
        if not is_tracing() and bool(padding.all()):
            padding_mask = None  # nothing padded: the attention takes its fastest path
        return TokenBatch(
            tokens=self.embed(patches),  # (B, N, D)
            positions=positions.expand(b, -1, -1),  # (B, N, 2)
            padding_mask=padding_mask,
            clip_time=self.clip_time(x, frames),  # (B, N)
            targets=patches,  # (B, N, pf·pt)
            context={"spectrogram": x, "frames": frames},
        )

    def build_positions(self, dim: int) -> nn.Module | None:
        cfg = self.config
        if cfg.positions == "sincos":
            return SinCosPositions(dim, ndim=2)
        pf, pt = cfg.patch_size
        grid = ((cfg.fbank.num_mel_bins - pf) // pf + 1, (cfg.max_frames - pt) // pt + 1)
        return InterpolatedPositions(dim, grid)

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task not in self.tasks:
            raise ValueError(f"HeadConfig.task={head.task!r}: {self.name} supports {list(self.tasks)}")
        return ClipHead(head, dim)

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Predicted patches (B, N, pf·pt) → a log-mel spectrogram (B, F, M) in the filterbank's units (overlapping
        patches are averaged; frames no token covers are NaN)."""
        x = batch.context["spectrogram"]
        folded = fold_patches(pred.float(), x.shape[1], self.config)  # normalized units
        return folded * (2 * self.config.norm_std) + self.config.norm_mean

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        """Log-mel spectrogram, the masked input and the reconstruction of the first clip side by side (a PNG)."""
        from mmsdk.adapters.audio.plots import plot_spectrogram_reconstruction

        if "spectrogram" not in batch.context:
            return None
        p = self.target_dim
        if pred.shape[-1] < p:
            logger.warning("%s plot: predictions of width %d are not %d patch values", self.name, pred.shape[-1], p)
            return None
        x = batch.context["spectrogram"][:1]  # (1, F, M)
        frames = int(batch.context["frames"][0])
        hidden = fold_patches(target[:1, :, None].float().expand(-1, -1, p), x.shape[1], self.config)  # (1, F, M)
        recon = fold_patches(pred[:1, :, :p].float(), x.shape[1], self.config)
        return plot_spectrogram_reconstruction(
            x[0, :frames],
            hidden[0, :frames].nan_to_num(0.0) > 0.5,
            recon[0, :frames],
            path,
            title=f"{self.name} reconstruction: {int(target[0].sum())} of {target.shape[1]} tokens masked",
        )

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        cfg = self.config
        samples = cfg.samples_for(min(cfg.max_frames, 4 * cfg.patch_size[1]))
        return example_waveform(batch_size, samples, cfg.fbank.sample_rate, generator)

    def input_shape(self) -> tuple[int, ...]:
        """A clip of `max_frames` frames: what a multimodal model queries when it predicts this modality."""
        return (self.config.samples_for(self.config.max_frames),)

    def verification_inputs(self, generator: torch.Generator | None = None) -> list[Tensor]:
        """A shorter and a longer clip length, and a batch whose second clip is NaN-padded."""
        cfg = self.config
        rate, pt = cfg.fbank.sample_rate, cfg.patch_size[1]
        short = example_waveform(2, cfg.samples_for(pt) + 37, rate, generator)
        long = example_waveform(3, cfg.samples_for(min(cfg.max_frames, 6 * pt)) + 11, rate, generator)
        padded = long.clone()
        padded[1, cfg.samples_for(2 * pt) :] = float("nan")
        return [short, long, padded]

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            input_name="waveform",
            dynamic_axes={0: "batch", 1: "samples"},
            output_names=("logits",),
            tolerance=1e-3,
            metadata={"sample_rate": str(self.config.fbank.sample_rate), "input_units": "waveform in [-1, 1]"},
            min_sizes={1: self.config.min_samples},  # one token; also the real length of a NaN-padded clip
        )


def example_waveform(batch_size: int, samples: int, sample_rate: int, generator: torch.Generator | None) -> Tensor:
    """Random test clips (B, T): a few decaying tones plus noise, peak around 0.5."""
    t = torch.arange(samples) / sample_rate  # (T,)
    freqs = 200 + 3000 * torch.rand(batch_size, 3, 1, generator=generator)  # (B, 3, 1)
    tones = torch.sin(2 * torch.pi * freqs * t).sum(dim=1) * torch.exp(-3 * t)  # (B, T)
    noise = 0.05 * torch.randn(batch_size, samples, generator=generator)
    return 0.15 * tones + noise


def fold_patches(patches: Tensor, frames: int, config: SpectrogramConfig) -> Tensor:
    """Time-major patches (B, N, pf·pt) back to features (B, frames, M), averaging overlaps; NaN where no patch."""
    (pf, pt), (sf, st) = config.patch_size, config.stride
    b, n, _ = patches.shape
    m, nf = config.fbank.num_mel_bins, config.freq_tokens
    nt = n // nf
    values = patches.reshape(b, nt, nf, pf, pt)
    t_index = torch.arange(nt)[:, None, None, None] * st + torch.arange(pt)[None, None, None, :]  # (Nt, 1, 1, pt)
    f_index = torch.arange(nf)[None, :, None, None] * sf + torch.arange(pf)[None, None, :, None]  # (1, Nf, pf, 1)
    flat = (t_index * m + f_index).expand(nt, nf, pf, pt).reshape(-1).to(patches.device)  # (Nt·Nf·pf·pt,)
    total = torch.zeros(b, frames * m, dtype=patches.dtype, device=patches.device)
    count = torch.zeros(frames * m, dtype=patches.dtype, device=patches.device)
    total.index_add_(1, flat, values.reshape(b, -1))
    count.index_add_(0, flat, torch.ones_like(flat, dtype=patches.dtype))
    out = total / count.where(count > 0, torch.tensor(float("nan"), dtype=patches.dtype, device=patches.device))
    return out.reshape(b, frames, m)


class ClipHead(TokenPooledHead):
    """AST's head: the mean over real tokens (or the class token) → LayerNorm → dropout → linear."""
