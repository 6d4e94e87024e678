"""Audio files and clips: finding and decoding files into mono float32 waveforms at the model's sample rate,
fitting clips to a length and mixing them.

soundfile (libsndfile) decodes files and torchaudio resamples them; both are imported inside the functions that
need them, so importing this module needs neither (the export runtime and the front end never read files).

Conventions: a clip is a 1-D float32 tensor of samples. Padding is NaN: `fit_length` pads a short clip with NaN at
the end, which the model turns into padding tokens, and `mix_clips` keeps it. Real samples are never NaN, so
`load_audio` rejects files that contain NaN or Inf.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AUDIO_EXTENSIONS",
    "CLIP_LEVEL",
    "AudioFileError",
    "AudioHeader",
    "AudioInfo",
    "find_audio_files",
    "fit_length",
    "load_audio",
    "mix_clips",
    "probe_audio",
    "resampled_length",
]

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)
"""Lower-case extensions of the containers libsndfile >= 1.1 decodes (mp3 needs 1.1; older builds fail on mp3 files
with `AudioFileError`). libsndfile detects the format from the content, so the extension only selects files."""

CLIP_LEVEL = 0.999
"""Samples with |x| at or above this (in [-1, 1] full scale) count as clipped in `AudioInfo.clipped_fraction`."""

# libsndfile's log reports a chunk that claims more bytes than the file holds as "<claimed> (should be <actual>)"
_SHOULD_BE = re.compile(r"(\d+)\s*\(should be (\d+)\)")


class AudioFileError(ValueError):
    """A file that cannot be used as audio (missing, not audio, corrupt, empty, or with NaN/Inf samples).

    Attributes:
        path: the offending file.
        reason: what is wrong with it (the message without the path).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioHeader:
    """What a file's header says, read without decoding (`probe_audio`).

    Attributes:
        path: the file.
        sample_rate: the file's sample rate in Hz.
        channels: channels in the file (mixed down to mono on load).
        frames: samples per channel at `sample_rate`. For WAV-like files libsndfile already clamps this to the
            samples actually present when the data chunk was cut; compressed formats report the header's count.
        format: libsndfile's container name, e.g. "WAV" or "FLAC".
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str


@dataclass(frozen=True)
class AudioInfo:
    """What `load_audio` found in a file.

    Attributes:
        path: the file.
        sample_rate: the file's own sample rate in Hz (before resampling).
        channels: channels in the file (the clip is their mean).
        num_samples: samples of the returned clip, i.e. after resampling.
        resampled: whether the clip was resampled to the requested rate.
        clipped_fraction: share of the file's samples (all channels, before mixdown) with |x| >= `CLIP_LEVEL`.
        silent: every sample is exactly 0 (such files are valid input).
        truncated: the file holds fewer samples than its header announces (it was cut); the clip has what is there.
    """

    path: Path
    sample_rate: int
    channels: int
    num_samples: int
    resampled: bool
    clipped_fraction: float
    silent: bool
    truncated: bool = False


def _import_soundfile() -> Any:
    try:
        import soundfile
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading audio files needs soundfile: pip install 'mmsdk[audio]'") from err
    return soundfile


def _soundfile_errors(sf: Any) -> tuple[type[BaseException], ...]:
    """The exceptions soundfile raises for unreadable files (LibsndfileError is a SoundFileError and RuntimeError)."""
    return (sf.SoundFileError, RuntimeError, OSError)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(path, "file not found")
    if not path.is_file():
        raise AudioFileError(path, "not a file")


def find_audio_files(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """The audio files of `sources`, in order: a file is taken as given (whatever its extension), a folder is
    searched recursively in sorted order (deterministic).

    Inside folders, hidden files and folders (names starting with ".", e.g. macOS "._x.wav" resource forks, which
    are not audio) and files whose extension is not in `AUDIO_EXTENSIONS` are skipped, counted at debug level.
    A file reached twice (overlapping folders) is listed once.

    Raises:
        FileNotFoundError: a source does not exist.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    ignored: Counter[str] = Counter()
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        path = Path(source)
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = []
            for file in sorted(path.rglob("*")):
                if not file.is_file():
                    continue
                if any(part.startswith(".") for part in file.relative_to(path).parts):
                    ignored["hidden"] += 1
                elif file.suffix.lower() not in AUDIO_EXTENSIONS:
                    ignored[file.suffix.lower() or "no extension"] += 1
                else:
                    candidates.append(file)
        else:
            raise FileNotFoundError(f"audio file or folder not found: {path}")
        for file in candidates:
            if (key := file.resolve()) not in seen:
                seen.add(key)
                found.append(file)
    if ignored:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(ignored.items()))
        logger.debug("ignored %d files that are hidden or have no audio extension (%s)", sum(ignored.values()), kinds)
    return found


def probe_audio(path: str | Path) -> AudioHeader:
    """Reads a file's header (cheap: nothing is decoded).

    Raises:
        AudioFileError: the file is missing, is not an audio file soundfile recognises, has a malformed header, or
            announces no samples (an empty file or a WAV header without data).
    """
    path = Path(path)
    _check_exists(path)
    sf = _import_soundfile()
    try:
        info = sf.info(str(path))
    except _soundfile_errors(sf) as err:
        raise AudioFileError(path, f"not a readable audio file ({err})") from err
    if info.frames <= 0:
        raise AudioFileError(path, "the file has no audio samples")
    return AudioHeader(path, int(info.samplerate), int(info.channels), int(info.frames), str(info.format))


def _cut_short(log: str) -> bool:
    """Whether libsndfile's log of a file reports a chunk claiming more bytes than the file holds."""
    return any(int(claimed) > int(actual) for claimed, actual in _SHOULD_BE.findall(log))


def _decode(path: Path) -> tuple[np.ndarray, int, bool]:
    """(samples (frames, channels) float32, sample rate, truncated) of a file, or AudioFileError."""
    sf = _import_soundfile()
    try:
        with sf.SoundFile(str(path)) as f:
            announced = f.frames
            data = f.read(dtype="float32", always_2d=True)
            rate, log = int(f.samplerate), f.extra_info
    except _soundfile_errors(sf) as err:
        raise AudioFileError(path, f"cannot decode it: not audio, corrupt or truncated ({err})") from err
    truncated = data.shape[0] < announced or _cut_short(log)
    return data, rate, truncated


def resampled_length(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """Samples after resampling `num_samples` from `orig_rate` to `new_rate` Hz, as torchaudio's resample gives."""
    if orig_rate == new_rate:
        return num_samples
    g = math.gcd(orig_rate, new_rate)
    return -(-num_samples * (new_rate // g) // (orig_rate // g))


def _read(path: str | Path, sample_rate: int | None) -> tuple[Tensor, AudioInfo]:
    """`load_audio` without the truncation warning (datasets warn once per file themselves)."""
    path = Path(path)
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"load_audio: sample_rate must be a positive number of Hz, got {sample_rate}")
    _check_exists(path)
    data, rate, truncated = _decode(path)
    if data.size == 0:
        raise AudioFileError(path, "the file has no audio samples")
    finite = np.isfinite(data)
    if not finite.all():
        nan, inf = int(np.isnan(data).sum()), int((~finite).sum() - np.isnan(data).sum())
        raise AudioFileError(path, f"the file has {nan} NaN and {inf} Inf samples (real samples must be finite)")
    magnitude = np.abs(data)
    clipped = float((magnitude >= CLIP_LEVEL).mean())
    silent = bool(magnitude.max() == 0)
    clip = torch.from_numpy(data.mean(axis=1, dtype=np.float32))  # (frames,) mono mixdown
    resampled = sample_rate is not None and sample_rate != rate
    if resampled:
        import torchaudio.functional

        clip = torchaudio.functional.resample(clip, rate, sample_rate).contiguous()
    info = AudioInfo(path, rate, data.shape[1], int(clip.shape[0]), resampled, clipped, silent, truncated)
    return clip, info


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[Tensor, AudioInfo]:
    """Decodes an audio file into a mono float32 clip, resampled to `sample_rate`.

    Multi-channel files (stereo, 5.1, ...) are mixed down to mono as the mean of their channels. Integer formats
    are scaled to [-1, 1) by soundfile; float files keep their values (they may exceed 1). Resampling uses
    torchaudio's band-limited sinc interpolation (`torchaudio.functional.resample`).

    A file that was cut short (e.g. an interrupted copy) but still decodes gives the samples that are there, with
    a warning naming the file; `AudioInfo.truncated` is set. libsndfile itself already shortens WAV/AIFF/AU files
    whose data chunk was cut (its log says so, which is how it is detected), and decodes the frames present in a
    cut mp3; a cut FLAC or Ogg file usually fails to decode and raises.

    Args:
        path: the file.
        sample_rate: rate of the returned clip in Hz; None = the file's own rate.

    Returns:
        clip (num_samples,) float32 and an `AudioInfo`.

    Raises:
        AudioFileError: the file is missing, not audio, corrupt (soundfile fails; the soundfile error is the
            cause), has no samples, or has NaN or Inf samples. The message names the file.
        ValueError: `sample_rate` is not positive.
    """
    clip, info = _read(path, sample_rate)
    if info.truncated:
        seconds = info.num_samples / (sample_rate or info.sample_rate)
        logger.warning("%s: truncated file (fewer samples than its header says); using the %.3f s there", path, seconds)
    if info.resampled:
        logger.debug("%s: resampled from %d Hz to %d Hz", info.path, info.sample_rate, sample_rate)
    return clip, info


def fit_length(
    clip: Tensor,
    num_samples: int,
    crop: Literal["random", "center", "start"] = "random",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crops or NaN-pads a clip to exactly `num_samples` samples.

    A longer clip is cropped to a window starting at a uniformly random offset ("random"), in the middle
    ("center", the earlier sample when the excess is odd) or at the first sample ("start"). A shorter clip is padded
    at the end with NaN, the padding marker the model turns into padding tokens. The result is a new tensor (never
    a view of `clip`), so changing it leaves a cached clip intact.

    Args:
        clip: (T,) real samples (no NaN padding yet).
        num_samples: length of the result.
        crop: where a longer clip is cut.
        generator: randomness of the "random" offset; None = torch's global RNG (which a DataLoader seeds per
            worker and epoch).

    Returns:
        (num_samples,) tensor of the clip's dtype.
    """
    if clip.ndim != 1:
        raise ValueError(f"fit_length: expected a 1-D clip, got shape {tuple(clip.shape)}")
    if num_samples < 1:
        raise ValueError(f"fit_length: num_samples must be >= 1, got {num_samples}")
    if crop not in ("random", "center", "start"):
        raise ValueError(f"fit_length: crop must be 'random', 'center' or 'start', got {crop!r}")
    excess = clip.shape[0] - num_samples
    if excess < 0:
        pad = torch.full((-excess,), float("nan"), dtype=clip.dtype, device=clip.device)
        return torch.cat([clip, pad])
    if crop == "start":
        start = 0
    elif crop == "center":
        start = excess // 2
    else:
        start = int(torch.randint(0, excess + 1, (1,), generator=generator).item())
    return clip[start : start + num_samples].clone()


def mix_clips(a: Tensor, b: Tensor, lam: float) -> Tensor:
    """`lam * a + (1 - lam) * b` of two NaN-padded clips of one length.

    Padding counts as silence where the other clip is real, so the mix spans the longer real extent; it is NaN
    (padding) only where both clips are padding.
    """
    if a.shape != b.shape:
        raise ValueError(f"mix_clips: clips must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    pad_a, pad_b = torch.isnan(a), torch.isnan(b)
    mixed = lam * torch.where(pad_a, 0.0, a) + (1 - lam) * torch.where(pad_b, 0.0, b)
    return mixed.masked_fill(pad_a & pad_b, float("nan"))
