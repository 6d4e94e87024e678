"""The audio demo's data and pictures: seeded synthetic sound events written as FLAC, and two plots.

Six classes of short sound events in background noise, each clip 1 s at 16 kHz. Every clip draws its own onset,
duration, pitch, loudness and noise level, so the classes overlap at the edges of their ranges (a slow chirp looks
like a steady tone, a fast pulse train like a noise burst, a shallow vibrato like a plain tone) and a log-mel
spectrogram separates them well but not perfectly.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
"""Sample rate of the demo clips in Hz."""
CLIP_SECONDS = 1.0
"""Length of every demo clip."""

Generator = np.random.Generator


def _log_uniform(rng: Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _envelope(n: int, rng: Generator) -> np.ndarray:
    """(n,) raised-cosine attack (5–30 ms) and release (20–100 ms) around a flat middle."""
    attack = min(n // 2, int(rng.uniform(0.005, 0.03) * SAMPLE_RATE))
    release = min(n - attack, int(rng.uniform(0.02, 0.1) * SAMPLE_RATE))
    env = np.ones(n)
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(1, attack))
    env[n - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / max(1, release))
    return env


def _tone(freq: np.ndarray) -> np.ndarray:
    """A sinusoid following an instantaneous frequency track (n,) in Hz."""
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)


def _chirp(n: int, rng: Generator, rising: bool) -> np.ndarray:
    """An exponential glide over 1.3–4× in frequency, with a weak second harmonic half of the time (faded out
    before it would reach the Nyquist frequency and alias)."""
    f0, ratio = _log_uniform(rng, 300, 1500), rng.uniform(1.3, 4.0)
    track = f0 * ratio ** (np.arange(n) / n)
    track = track if rising else track[::-1]
    if rng.random() >= 0.5:
        return _tone(track)
    below_nyquist = np.clip((0.45 * SAMPLE_RATE - 2 * track) / 500, 0, 1)
    return _tone(track) + rng.uniform(0.1, 0.4) * below_nyquist * _tone(2 * track)


def _beeps(n: int, rng: Generator) -> np.ndarray:
    """Two tones 1.15–1.6× apart in frequency alternating every 60–150 ms, with short gaps between beeps."""
    f1 = _log_uniform(rng, 500, 2500)
    f2 = f1 * rng.uniform(1.15, 1.6) ** rng.choice([-1, 1])
    beep, gap = int(rng.uniform(0.06, 0.15) * SAMPLE_RATE), int(rng.uniform(0.01, 0.04) * SAMPLE_RATE)
    index = np.arange(n) % (2 * (beep + gap))
    track = np.where(index < beep + gap, f1, f2)
    within = index % (beep + gap)  # samples into the current beep (or its gap)
    ramp = 0.005 * SAMPLE_RATE  # 5 ms fades: the tone switches in the silent gaps, without clicks
    gate = np.clip(np.minimum(within, beep - within) / ramp, 0, 1)
    return _tone(track) * gate


def _vibrato(n: int, rng: Generator) -> np.ndarray:
    """A harmonic tone (3–6 partials) whose pitch wobbles at 4–8 Hz by 1–6 %."""
    f0, rate, depth = _log_uniform(rng, 200, 800), rng.uniform(4, 8), rng.uniform(0.01, 0.06)
    track = f0 * (1 + depth * np.sin(2 * np.pi * rate * np.arange(n) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)))
    tilt = rng.uniform(0.5, 1.5)
    partials = [(k, k ** (-tilt)) for k in range(1, int(rng.integers(3, 7)) + 1) if k * f0 * 1.1 < SAMPLE_RATE / 2]
    return sum(weight * _tone(k * track) for k, weight in partials)


def _band_noise(n: int, rng: Generator, low: float, high: float) -> np.ndarray:
    """White noise kept between `low` and `high` Hz (an FFT mask)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _colored_noise(n: int, rng: Generator) -> np.ndarray:
    """Full-band background noise with a random spectral tilt between white and pink (power ∝ 1/f^0…1)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spectrum * (freqs / 1000) ** (-rng.uniform(0, 1) / 2), n)
    return noise / (np.abs(noise).max() + 1e-9)


def _noise_bursts(n: int, rng: Generator) -> np.ndarray:
    """One to three bursts of band-passed noise (a band 1.5–4× wide starting at 300–3000 Hz)."""
    low = _log_uniform(rng, 300, 3000)
    noise = _band_noise(n, rng, low, min(low * rng.uniform(1.5, 4.0), SAMPLE_RATE / 2))
    gate = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        length = int(rng.uniform(0.3, 1.0) * n)
        start = int(rng.integers(0, n - length + 1))
        gate[start : start + length] = np.maximum(gate[start : start + length], _envelope(length, rng))
    return noise * gate


def _pulse_train(n: int, rng: Generator) -> np.ndarray:
    """Clicks (2–6 ms decaying bursts of a 1–5 kHz ringing) at 8–40 per second, with a little timing jitter."""
    rate, carrier = rng.uniform(8, 40), _log_uniform(rng, 1000, 5000)
    length = int(rng.uniform(0.002, 0.006) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    click = np.sin(2 * np.pi * carrier * t) * np.exp(-t / (length / SAMPLE_RATE / 4))
    out = np.zeros(n + length)
    period = SAMPLE_RATE / rate
    start = rng.uniform(0, period)
    while start < n:
        i = int(start)
        out[i : i + length] += click
        start += period * rng.uniform(0.9, 1.1)
    return out[:n]


SOUNDS: dict[str, Callable[[int, Generator], np.ndarray]] = {
    "chirp_up": lambda n, rng: _chirp(n, rng, rising=True),
    "chirp_down": lambda n, rng: _chirp(n, rng, rising=False),
    "two_tone_beeps": _beeps,
    "vibrato_tone": _vibrato,
    "noise_bursts": _noise_bursts,
    "pulse_train": _pulse_train,
}
"""Class name → the event generator `(samples, rng) -> (samples,)`."""


def make_clip(name: str, rng: Generator) -> np.ndarray:
    """One 1 s clip of class `name`: an event of 0.25–0.7 s at a random onset and loudness, in background noise.

    Returns:
        (16000,) float32 in [-1, 1].
    """
    total = round(CLIP_SECONDS * SAMPLE_RATE)
    n = int(rng.uniform(0.25, 0.7) * total)
    onset = int(rng.integers(0, total - n + 1))
    event = SOUNDS[name](n, rng) * _envelope(n, rng)
    event = event / (np.abs(event).max() + 1e-9) * _log_uniform(rng, 0.1, 0.6)
    clip = np.zeros(total)
    clip[onset : onset + n] = event
    hum = _log_uniform(rng, 1e-3, 0.02) * np.sin(2 * np.pi * rng.uniform(50, 120) * np.arange(total) / SAMPLE_RATE)
    background = _log_uniform(rng, 1e-3, 0.015) * _colored_noise(total, rng)
    return np.clip(clip + hum + background, -1, 1).astype(np.float32)


def write_clips(root: Path, num_per_class: int, seed: int) -> list[str]:
    """Writes `num_per_class` seeded clips of every class to `root/<class>/<class>_<i>.flac` (16-bit FLAC),
    replacing what `root` held.

    Returns:
        The class names, in label order.
    """
    import soundfile as sf

    if root.exists():
        shutil.rmtree(root)
    for label, name in enumerate(SOUNDS):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(num_per_class):
            clip = make_clip(name, np.random.default_rng([seed, label, i]))
            sf.write(folder / f"{name}_{i:03d}.flac", clip, SAMPLE_RATE, subtype="PCM_16")
    return list(SOUNDS)


def read_clips(root: Path, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clip under `root/<class>/` through `AudioFolder`: waveforms (M, 16000) float32 and labels (M,)."""
    from mmsdk.adapters.audio.datasets import AudioFolder

    samples = round(CLIP_SECONDS * SAMPLE_RATE)
    folder = AudioFolder(root, SAMPLE_RATE, samples, crop="start", class_names=class_names)
    waves = torch.stack([folder[i][0] for i in range(len(folder))])  # (M, T)
    return waves, torch.tensor(folder.labels)


def split_per_class(
    labels: torch.Tensor, test_fraction: float, labels_per_class: int, seed: int
) -> dict[str, np.ndarray]:
    """Indices of a per-class train/test split and of a few-label subset of the training clips.

    The last `test_fraction` of each class (the clips are drawn independently, so any of them is as random as the
    next) is held out for test; `labels_per_class` training clips per class are picked at random.

    Returns:
        `train`, `test` and `labelled` (a subset of `train`) index arrays, sorted.
    """
    rng = np.random.default_rng([seed, labels_per_class])
    train, test, labelled = [], [], []
    for c in torch.unique(labels).tolist():
        members = np.flatnonzero(labels.numpy() == c)
        held = max(1, round(test_fraction * len(members)))
        train.append(members[:-held])
        test.append(members[-held:])
        labelled.append(rng.choice(members[:-held], labels_per_class, replace=False))
    return {
        name: np.sort(np.concatenate(parts))
        for name, parts in (("train", train), ("test", test), ("labelled", labelled))
    }


def plot_examples(waves: torch.Tensor, labels: torch.Tensor, names: list[str], mel_bins: int, path: Path) -> Path:
    """A grid of log-mel spectrograms: two example clips of every class (columns), time on x, mel bins on y."""
    from mmsdk.adapters._plotting import pyplot, save_figure
    from mmsdk.adapters.audio.frontend import Fbank, FbankConfig

    front = Fbank(FbankConfig(sample_rate=SAMPLE_RATE, num_mel_bins=mel_bins))
    plt = pyplot()
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 4.4), sharex=True, sharey=True)
    axes = np.asarray(axes).reshape(2, len(names))
    for col, name in enumerate(names):
        members = torch.nonzero(labels == col).flatten()[:2]
        for row in range(2):
            ax = axes[row, col]
            if row < len(members):
                with torch.no_grad():
                    features, _ = front(waves[members[row]][None])  # (1, F, M)
                ax.imshow(features[0].T.numpy(), origin="lower", aspect="auto", cmap="magma", interpolation="none")
            ax.set_title(name if row == 0 else "", fontsize=9)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("frame (10 ms)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("mel bin", fontsize=8)
    fig.suptitle("demo sound events: log-mel spectrograms of two clips per class", fontsize=10)
    return save_figure(fig, path)


class ShiftedClips(torch.utils.data.Dataset):
    """Labelled clips with a fresh random circular time shift (up to `max_shift` of the clip) and gain (×0.5–2,
    clipped to [-1, 1]) at every draw: waveform augmentation for few-label fine-tuning.

    Args:
        waves: (M, T) float32 clips.
        labels: (M,) class ids.
        max_shift: the largest shift, as a fraction of the clip length.
    """

    def __init__(self, waves: torch.Tensor, labels: torch.Tensor, max_shift: float = 0.25) -> None:
        self.waves, self.labels, self.max_shift = waves, labels, max_shift

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = self.waves[index]
        limit = int(self.max_shift * wave.shape[0])
        shift = int(torch.randint(-limit, limit + 1, ()))
        gain = float(torch.empty(()).uniform_(np.log(0.5), np.log(2.0)).exp())
        return (torch.roll(wave, shift) * gain).clamp(-1, 1), self.labels[index]
