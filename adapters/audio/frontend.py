"""Kaldi-compatible log-mel filterbank front end, written with exportable torch ops only.

:class:`Fbank` turns a batch of raw waveforms (B, T) into log-mel filterbank features (B, F, M) the way
``torchaudio.compliance.kaldi.fbank`` (Kaldi's ``compute-fbank-feats``) does with the options SSAST and AST use:
Hanning window, power spectrum, HTK mel scale (``mel = 1127 ln(1 + f / 700)``), FFT size rounded up to a power of two,
``snip_edges=True`` framing, no dither, and Kaldi's floor ``log(max(energy, float32 eps))``. Per clip it first removes
the clip's waveform mean (SSAST's ``waveform - waveform.mean()``), over real samples only, so a clip padded into a
batch gets the same features on its own frames as the clip alone.

Unlike the torchaudio reference, which handles one clip at a time with ``as_strided`` views and Python branches,
everything here is batched and traceable: frames are gathered with ``torch.arange`` indices, the spectrum is
``torch.fft.rfft`` (ONNX ``DFT``) and the mel projection is one ``matmul``. The graph has no data-dependent shapes, so
it exports with ``torch.onnx.export(..., dynamo=True)`` with dynamic batch and sample axes, compiles with
``torch.compile(fullgraph=True)``, and one ONNX graph can run from raw waveform to encoder output.

Frame arithmetic (Kaldi's ``snip_edges=True``): a clip of ``n`` samples has ``0`` frames if ``n`` is shorter than one
window, else ``1 + (n - window) // shift``; frame ``f`` covers samples ``[f * shift, f * shift + window)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.config import Config, require
from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)

_LOG_FLOOR = torch.finfo(torch.float32).eps
"""Kaldi's floor on mel energies before the log: ``std::numeric_limits<float>::epsilon()``."""


def _mel(freq: Tensor) -> Tensor:
    """HTK mel scale as in Kaldi: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(freq / 700.0)


@dataclass
class FbankConfig(Config):
    """Kaldi log-mel filterbank options (defaults: SSAST / AST, 128 bins of 25 ms frames every 10 ms at 16 kHz)."""

    sample_rate: int = 16000
    """Sampling rate of the waveforms in Hz; clips at another rate must be resampled first."""
    num_mel_bins: int = 128
    """Number of triangular mel bins M (Kaldi requires at least 3)."""
    frame_length_ms: float = 25.0
    """Frame (window) length in milliseconds; the window is ``int(sample_rate * frame_length_ms / 1000)`` samples."""
    frame_shift_ms: float = 10.0
    """Hop between frame starts in milliseconds; ``int(sample_rate * frame_shift_ms / 1000)`` samples."""
    low_freq: float = 20.0
    """Lower edge of the first mel bin in Hz, in [0, Nyquist)."""
    high_freq: float = 0.0
    """Upper edge of the last mel bin in Hz; a value <= 0 is an offset from the Nyquist frequency, as in Kaldi."""
    preemphasis: float = 0.97
    """Pre-emphasis coefficient in [0, 1]: ``x[j] -= c * x[j - 1]`` within each frame (``x[-1] = x[0]``); 0 = off."""
    remove_dc_offset: bool = True
    """Subtract each frame's mean before pre-emphasis and windowing (Kaldi's ``remove_dc_offset``)."""
    subtract_clip_mean: bool = True
    """Subtract each clip's waveform mean over its real samples first (SSAST's ``waveform - waveform.mean()``). With
    ``remove_dc_offset`` on, every frame loses its own mean anyway, so this changes features only by rounding."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("remove_dc_offset", "subtract_clip_mean"):
            value = getattr(self, name)
            require(isinstance(value, bool), self, name, f"must be a bool, got {value!r}")
        require(
            isinstance(self.sample_rate, int) and self.sample_rate >= 1,
            self,
            "sample_rate",
            f"must be a positive int (Hz), got {self.sample_rate!r}",
        )
        require(
            isinstance(self.num_mel_bins, int) and self.num_mel_bins >= 3,
            self,
            "num_mel_bins",
            f"must be an int >= 3, got {self.num_mel_bins!r}",
        )
        require(
            self.frame_length_ms > 0 and self.window_samples >= 2,
            self,
            "frame_length_ms",
            f"must give a window of at least 2 samples at {self.sample_rate} Hz, got {self.frame_length_ms} ms "
            f"({self.window_samples} samples)",
        )
        require(
            self.frame_shift_ms > 0 and self.shift_samples >= 1,
            self,
            "frame_shift_ms",
            f"must give a shift of at least 1 sample at {self.sample_rate} Hz, got {self.frame_shift_ms} ms "
            f"({self.shift_samples} samples)",
        )
        nyquist = 0.5 * self.sample_rate
        require(
            0.0 <= self.low_freq < nyquist,
            self,
            "low_freq",
            f"must be in [0, Nyquist={nyquist:g}) Hz, got {self.low_freq}",
        )
        require(
            self.low_freq < self.mel_high_freq <= nyquist,
            self,
            "high_freq",
            f"gives an upper edge of {self.mel_high_freq:g} Hz (<= 0 means Nyquist + high_freq), which must be in "
            f"(low_freq={self.low_freq:g}, Nyquist={nyquist:g}] Hz; got high_freq={self.high_freq}",
        )
        require(0.0 <= self.preemphasis <= 1.0, self, "preemphasis", f"must be in [0, 1], got {self.preemphasis}")

    @property
    def window_samples(self) -> int:
        """Samples per frame (Kaldi truncates: ``int(sample_rate * frame_length_ms * 0.001)``; 400 at 16 kHz)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def shift_samples(self) -> int:
        """Samples between frame starts (``int(sample_rate * frame_shift_ms * 0.001)``; 160 at 16 kHz)."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def fft_size(self) -> int:
        """FFT length: the window length rounded up to a power of two (512 for a 400-sample window)."""
        return 1 << (self.window_samples - 1).bit_length()

    @property
    def mel_high_freq(self) -> float:
        """Upper edge of the last mel bin in Hz, with ``high_freq <= 0`` resolved against the Nyquist frequency."""
        return self.high_freq + 0.5 * self.sample_rate if self.high_freq <= 0.0 else self.high_freq

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of `num_samples` samples: 0 if shorter than one window, else
        ``1 + (num_samples - window) // shift``."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples


def mel_filterbank(config: FbankConfig) -> Tensor:
    """Kaldi's triangular mel filters over the FFT bins, as a (K, M) float32 matrix (K = fft_size // 2 + 1).

    Bins are equally spaced on the HTK mel scale between ``low_freq`` and the resolved high frequency (M + 2 edges);
    each filter rises linearly in mel from its left edge to its centre and falls to its right edge. As in Kaldi, the
    Nyquist FFT bin gets weight 0. Computed in float64 and rounded once.

    A filter narrower than the FFT bin spacing can cover no bin at all and then always gives ``log(eps)``, exactly
    as in Kaldi: with the SSAST defaults (128 bins, 512-point FFT at 16 kHz) that is bin 3.
    """
    n_fft, num_bins = config.fft_size, config.num_mel_bins
    mel_low = math.log1p(config.low_freq / 700.0) * 1127.0
    mel_high = math.log1p(config.mel_high_freq / 700.0) * 1127.0
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * torch.arange(num_bins + 2, dtype=torch.float64)  # (M + 2,)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    bin_width = config.sample_rate / n_fft
    fft_mel = _mel(bin_width * torch.arange(n_fft // 2, dtype=torch.float64))[None, :]  # (1, K - 1)
    rising = (fft_mel - left) / (center - left)  # (M, K - 1)
    falling = (right - fft_mel) / (right - center)  # (M, K - 1)
    weights = torch.minimum(rising, falling).clamp(min=0.0)  # (M, K - 1)
    weights = F.pad(weights, (0, 1))  # (M, K): the Nyquist bin has no weight
    return weights.T.contiguous().to(torch.float32)  # (K, M)


def dft_basis(window: Tensor, n_fft: int) -> Tensor:
    """(W, 2K) float32: the real-input DFT of an `n_fft`-point zero-padded frame as a matrix, the window folded in:
    `frame @ basis` = [Re, Im] of `rfft(window · frame, n_fft)`. Angles are reduced modulo `n_fft` in integers and
    computed in float64, so the basis carries no large-argument cos/sin error."""
    n = torch.arange(window.numel(), dtype=torch.int64)[:, None]  # (W, 1)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.int64)[None, :]  # (1, K)
    angle = (2 * math.pi / n_fft) * ((n * k) % n_fft).to(torch.float64)  # (W, K)
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1)  # (W, 2K)
    return (window.to(torch.float64)[:, None] * basis).to(torch.float32)


class Fbank(nn.Module):
    """Batched, exportable Kaldi log-mel filterbank: waveforms (B, T) → features (B, F, M) and frame counts (B,).

    The Hanning window and the mel matrix are computed once and kept as non-persistent buffers: they follow the
    module across devices but never enter a checkpoint (they are a function of the config).

    Args:
        config: filterbank options; None = :class:`FbankConfig` defaults (SSAST / AST).
    """

    window: Tensor
    mel_matrix: Tensor
    dft_basis: Tensor

    def __init__(self, config: FbankConfig | None = None) -> None:
        super().__init__()
        self.config = FbankConfig.from_dict(config)
        window = torch.hann_window(self.config.window_samples, periodic=False, dtype=torch.float64)
        self.register_buffer("window", window.to(torch.float32), persistent=False)  # (W,)
        self.register_buffer("mel_matrix", mel_filterbank(self.config), persistent=False)  # (K, M)
        self.register_buffer("dft_basis", dft_basis(window, self.config.fft_size), persistent=False)  # (W, 2K)
        logger.debug(
            "Fbank: %d-sample window, %d-sample shift, %d-point FFT, %d mel bins",
            self.config.window_samples,
            self.config.shift_samples,
            self.config.fft_size,
            self.config.num_mel_bins,
        )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"sample_rate={c.sample_rate}, num_mel_bins={c.num_mel_bins}, window={c.window_samples}, "
            f"shift={c.shift_samples}, fft_size={c.fft_size}"
        )

    def _check(self, waveform: object, lengths: object) -> None:
        """Raises ValueError for inputs `forward` cannot take (static checks always, value checks outside tracing)."""
        if not isinstance(waveform, Tensor):
            raise ValueError(f"Fbank: waveform must be a torch.Tensor (B, T), got {type(waveform).__name__}")
        if not waveform.is_floating_point():
            raise ValueError(f"Fbank: waveform must be floating point (B, T), got dtype {waveform.dtype}")
        if waveform.dim() != 2:
            hint = "; add a batch dimension with .unsqueeze(0)" if waveform.dim() == 1 else ""
            raise ValueError(
                f"Fbank: waveform must be a batch of mono clips (B, T), got rank {waveform.dim()} shape "
                f"{tuple(waveform.shape)}{hint}"
            )
        if lengths is not None:
            if not isinstance(lengths, Tensor) or lengths.dtype not in (torch.int32, torch.int64):
                kind = lengths.dtype if isinstance(lengths, Tensor) else type(lengths).__name__
                raise ValueError(f"Fbank: lengths must be an int64 (or int32) tensor (B,), got {kind}")
            if tuple(lengths.shape) != (waveform.shape[0],):
                raise ValueError(
                    f"Fbank: lengths must be (B,) = ({waveform.shape[0]},) for waveform {tuple(waveform.shape)}, got "
                    f"shape {tuple(lengths.shape)}"
                )
        if is_tracing():
            return
        window, num_samples = self.config.window_samples, waveform.shape[1]
        if num_samples < window:
            raise ValueError(
                f"Fbank: waveform has T={num_samples} samples, fewer than one {self.config.frame_length_ms} ms frame; "
                f"need at least {window} samples at {self.config.sample_rate} Hz"
            )
        if lengths is not None and bool(((lengths < 0) | (lengths > num_samples)).any()):
            raise ValueError(f"Fbank: lengths must be in [0, T={num_samples}], got {lengths.tolist()}")
        bad = ~torch.isfinite(waveform)
        if lengths is not None:  # padding may hold anything
            bad = bad & (torch.arange(num_samples, device=waveform.device)[None, :] < lengths[:, None])
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"Fbank: waveform {tuple(waveform.shape)} holds {int(bad.sum())} NaN or Inf sample(s) among its real "
                f"samples, the first at index {first}; pass lengths to mark a NaN tail as padding"
            )

    def power_spectrum(self, frames: Tensor, method: Literal["fft", "matmul"] = "fft") -> Tensor:
        """|rfft(window · frame, N)|² of frames (B, F, W) → (B, F, K).

        "fft" runs torch's FFT (eager); "matmul" multiplies by the window-folded DFT basis (W, 2K) instead, which
        exported graphs use: ONNX Runtime's DFT kernel is ~3x slower than this matmul on CPU at the SSAST sizes
        (32 clips × 98 frames of 400 samples). Both agree to float32 rounding (tested).
        """
        if method not in ("fft", "matmul"):
            raise ValueError(f"Fbank.power_spectrum: method must be 'fft' or 'matmul', got {method!r}")
        if method == "matmul":
            spectrum = frames @ self.dft_basis.to(torch.float32)  # (B, F, 2K): real parts, then imaginary parts
            real, imag = spectrum.chunk(2, dim=-1)  # (B, F, K) each
            return real * real + imag * imag
        frames = frames * self.window.to(torch.float32)  # (B, F, W); float32 even after module.double()
        spectrum = torch.view_as_real(torch.fft.rfft(frames, n=self.config.fft_size, dim=-1))  # (B, F, K, 2) 0-padded
        real, imag = spectrum[..., 0], spectrum[..., 1]  # (B, F, K) each
        return real * real + imag * imag  # (B, F, K); 9x faster than a sum over the pair axis

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Computes log-mel filterbank features.

        Args:
            waveform: (B, T) floating-point mono clips at ``config.sample_rate``; computed in float32, also under
                autocast, so mixed-precision training sees the features evaluation and the exported graph see.
            lengths: (B,) integer number of real samples per clip; samples from ``lengths[b]`` on are padding,
                whatever their values (NaN included: they are zeroed before anything else). None = all real.

        Returns:
            ``(features, num_frames)``: features (B, F, M) float32 with F = frames of the full T, and num_frames (B,)
            int64, the frames of each clip's own samples. Frames from ``num_frames[b]`` on touch padding and are
            meaningless; callers mask them.

        Raises:
            ValueError: for a waveform that is not a floating-point (B, T) tensor, T shorter than one window or
                NaN/Inf among the real samples (both checked outside tracing), or lengths that are not an integer
                (B,) tensor in [0, T].
        """
        self._check(waveform, lengths)
        if torch.is_autocast_enabled(waveform.device.type):  # under bf16/fp16 mixed precision: features stay float32
            with torch.autocast(waveform.device.type, enabled=False):
                return self._features(waveform, lengths)
        return self._features(waveform, lengths)

    def _features(self, waveform: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """The filterbank of `forward`, in float32 (autocast off)."""
        c = self.config
        window, shift = c.window_samples, c.shift_samples
        x = waveform.to(torch.float32)  # (B, T)
        num_samples = x.shape[1]
        if lengths is None:
            if c.subtract_clip_mean:
                x = x - x.mean(dim=1, keepdim=True)  # (B, T)
            lengths = torch.full((x.shape[0],), num_samples, dtype=torch.long, device=x.device)  # (B,)
        else:
            lengths = lengths.to(device=x.device, dtype=torch.long)  # (B,)
            real = torch.arange(num_samples, device=x.device)[None, :] < lengths[:, None]  # (B, T)
            x = torch.where(real, x, 0.0)  # (B, T) padding zeroed first, so NaN there never propagates
            if c.subtract_clip_mean:
                count = lengths.clamp(min=1).to(torch.float32)[:, None]  # (B, 1)
                x = torch.where(real, x - x.sum(dim=1, keepdim=True) / count, 0.0)  # (B, T) mean of real samples
        num_frames = torch.where(
            lengths >= window, torch.div(lengths - window, shift, rounding_mode="floor") + 1, 0
        )  # (B,)
        if torch.onnx.is_in_onnx_export():  # a gather, which every ONNX runtime has
            total = (num_samples - window) // shift + 1  # F, frames of the full T
            starts = torch.arange(total, device=x.device) * shift  # (F,)
            index = starts[:, None] + torch.arange(window, device=x.device)[None, :]  # (F, W)
            frames = x[:, index]  # (B, F, W)
        else:
            frames = x.unfold(1, window, shift)  # (B, F, W) a strided view of the same frames (no gather)
        if c.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)  # (B, F, W)
        if c.preemphasis != 0.0:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # (B, F, W), x[-1] = x[0]
            frames = frames - c.preemphasis * previous  # (B, F, W)
        power = self.power_spectrum(frames, "matmul" if torch.onnx.is_in_onnx_export() else "fft")  # (B, F, K)
        energies = torch.matmul(power, self.mel_matrix.to(torch.float32))  # (B, F, M)
        features = energies.clamp(min=_LOG_FLOOR).log()  # (B, F, M)
        return features, num_frames
