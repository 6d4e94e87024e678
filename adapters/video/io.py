"""Video files and clips: finding, probing and decoding files into float32 clips (T, C, H, W) in [0, 1], batching
clips (`to_clips`, from `clips.py`; `write_video` in `writer.py` makes files for tests, the demo and the examples).

PyAV (which bundles FFmpeg) is imported inside the functions that read or write files, so importing this module
needs only torch and numpy (the model, the export runtime and the front end never read files).

Conventions: a clip is a float32 tensor (T, C, H, W) with values in [0, 1]. Frames are picked by time, not by
index, so variable-frame-rate files are sampled evenly in time: a target time gets the last frame whose timestamp
is at or before it (the first frame for times before it). Times are seconds from the stream's first timestamp. A
time after the end of the video (or after `end`) has no frame: its frame is NaN, the "no data" marker the model
reads as padding (tubes without real pixels become padding tokens). Real pixels are never NaN.

Timestamps are compared with a tolerance of half a tick of the stream's time base (at most a quarter frame), so
times that the container rounded to its ticks (e.g. webm's milliseconds at 30 fps) still pick the intended frame.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from mmsdk.adapters.video.clips import to_clips
from mmsdk.adapters.video.transforms import resize_crop

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoFileError",
    "VideoInfo",
    "find_video_files",
    "probe_video",
    "read_clips",
    "read_video",
    "to_clips",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov")
"""Lower-case extensions `find_video_files` selects. FFmpeg detects the format from the content, so any file it
can demux reads, whatever its name."""

# pixel format of the decoded frames per channel count
_READ_FORMATS = {1: "gray", 3: "rgb24", 4: "rgba"}
_PROBE_PACKETS = 32  # packets whose timestamps `probe_video` inspects for a variable rate

_warned_truncated: set[str] = set()


class VideoFileError(ValueError):
    """A file that cannot be used as video (missing, not a video, corrupt, truncated before any frame, without a
    video stream, or without a decodable frame).

    Raised as `VideoFileError(path, reason)` (message "path: reason"); `VideoFileError(message)` with one argument
    takes a whole message (e.g. a re-raise adding context), `path` then being None.

    Attributes:
        path: the offending file (None when constructed from a message alone).
        reason: what is wrong with it (the message without the path).
    """

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        super().__init__(str(path) if reason is None else f"{path}: {reason}")
        self.path = None if reason is None else Path(path)
        self.reason = str(path) if reason is None else reason


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` found in a file's first video stream.

    Attributes:
        path: the file.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: the stream's average frame rate (frames per second).
        frames: frames in the stream: the count the container states, else estimated as duration * fps, else
            counted (packets, without decoding).
        duration: seconds of video (the stream's, else the container's, else frames / fps).
        codec: FFmpeg's decoder name, e.g. "h264", "vp9", "ffv1".
        pix_fmt: pixel format of the decoded frames, e.g. "yuv420p", "gray", "bgra".
        has_alpha: `pix_fmt` has an alpha plane (webm keeps VP9 alpha in side data that FFmpeg's native decoder
            ignores, so such files report False).
        variable_rate: the timestamp steps of the first packets differ by more than 10% of their median (and more
            than two ticks of the time base): a best-effort heuristic, False for files with fewer than 3 packets.
    """

    path: Path
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    codec: str
    pix_fmt: str
    has_alpha: bool
    variable_rate: bool


@dataclass(frozen=True)
class _Timing:
    """Clock of a stream: seconds = pts * time_base - start."""

    time_base: Fraction
    start: float  # seconds of the stream's first timestamp
    fps: float
    duration: float | None  # seconds, None when neither the stream nor the container says

    @property
    def eps(self) -> float:
        """Tolerance of timestamp comparisons: half a tick, at most a quarter frame."""
        return min(0.5 * float(self.time_base), 0.25 / self.fps) + 1e-9


def _import_av() -> Any:
    try:
        import av
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('reading or writing video files needs PyAV: pip install "mmsdk[video]"') from err
    return av


def _av_errors(av: Any) -> tuple[type[BaseException], ...]:
    """The exceptions PyAV raises for unreadable data (av.error.InvalidDataError, EOFError, ... are FFmpegErrors).

    IndexError: PyAV's demuxer fails so when damaged data (e.g. a corrupt MPEG-TS table) announces a new stream
    after the file was opened.
    """
    return (av.error.FFmpegError, OSError, IndexError)


@contextmanager
def _open_video(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) of a file, closed on exit, or VideoFileError."""
    av = _import_av()
    if not path.exists():
        raise VideoFileError(path, "file not found")
    if not path.is_file():
        raise VideoFileError(path, "not a file")
    if path.stat().st_size == 0:
        raise VideoFileError(path, "not a readable video file: the file is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except _av_errors(av) as err:
        raise VideoFileError(path, f"not a readable video file ({err})") from err
    try:
        if not container.streams.video:
            raise VideoFileError(path, "the file has no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _timing(path: Path, container: Any, stream: Any) -> _Timing:
    time_base = stream.time_base or Fraction(1, 1_000_000)
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    duration = float(stream.duration * time_base) if stream.duration else None
    if duration is None and container.duration:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        fps = float(rate)
    elif stream.frames and duration:
        fps = stream.frames / duration
    else:
        raise VideoFileError(path, "the video stream states no frame rate")
    return _Timing(Fraction(time_base), start, fps, duration)


def _decoded_frames(container: Any, stream: Any) -> Iterator[Any]:
    """The decoded frames of `stream` from the container's position on (a seam tests use to count decoding)."""
    yield from container.decode(stream)


def _is_variable(pts: Sequence[int]) -> bool:
    """Whether packet timestamps (in ticks) step unevenly: by more than 10% of the median step and two ticks."""
    steps = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    steps = steps[steps > 0]
    if steps.size < 2:
        return False
    return int(steps.max() - steps.min()) > max(2, 0.1 * float(np.median(steps)))


def probe_video(path: str | Path) -> VideoInfo:
    """Reads a file's stream information, the timestamps of its first packets and its first frame (cheap: the whole
    file is read only when the container states neither a frame count nor a duration, to count packets).

    Raises:
        VideoFileError: the file is missing, not a video FFmpeg recognises, has no video stream, or its first frame
            does not decode (no frames, corrupt data). The message names the file.
    """
    path = Path(path)
    av = _import_av()
    with _open_video(path) as (container, stream):
        timing = _timing(path, container, stream)
        known = stream.frames or (round(timing.duration * timing.fps) if timing.duration else 0)
        pts: list[int] = []
        packets, first = 0, None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                packets += 1
                if packet.pts is not None and len(pts) < _PROBE_PACKETS:
                    pts.append(packet.pts)
                if first is None:
                    first = next(iter(stream.decode(packet)), None)
                if first is not None and len(pts) >= _PROBE_PACKETS and known:
                    break
            if first is None:
                first = next(iter(stream.decode(None)), None)  # flush: codecs with delay hold the first frame
        except _av_errors(av) as err:
            raise VideoFileError(path, f"cannot decode it: corrupt or truncated ({err})") from err
        if first is None:
            raise VideoFileError(path, "the file has no decodable video frames")
        frames = int(known or packets)
        duration = float(timing.duration if timing.duration else frames / timing.fps)
        alpha = any(c.is_alpha for c in first.format.components)
        codec, pix_fmt, variable = str(stream.codec_context.name), first.format.name, _is_variable(pts)
        return VideoInfo(path, first.width, first.height, timing.fps, frames, duration, codec, pix_fmt, alpha, variable)


def _target_times(
    timing: _Timing,
    num_frames: int,
    stride: float,
    start: float,
    end: float | None,
    sampling: str,
    generator: torch.Generator | None,
    path: Path,
) -> list[float]:
    """Ascending seconds (from the stream start) at which frames are taken."""
    if sampling == "stride":
        return [start + i * stride / timing.fps for i in range(num_frames)]
    stop = end if end is not None else timing.duration
    if stop is None:
        raise VideoFileError(path, "uniform sampling needs the video's duration, which the file does not state")
    if stop <= start:
        raise VideoFileError(path, f"no video after start={start:.3f}s (the video lasts {stop:.3f}s)")
    segment = (stop - start) / num_frames
    if generator is None:
        offsets = [0.5] * num_frames
    else:
        offsets = torch.rand(num_frames, generator=generator, dtype=torch.float64).tolist()
    return [start + (i + u) * segment for i, u in enumerate(offsets)]


def _frame_time(frame: Any, timing: _Timing, previous: float | None) -> float:
    """Seconds of a decoded frame from the stream start (the previous frame's plus one frame without timestamps)."""
    ts = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
    if ts is not None:
        return float(ts * timing.time_base) - timing.start
    return 0.0 if previous is None else previous + 1.0 / timing.fps


@dataclass
class _Decoded:
    """What `_decode_at` found: one array (H, W, C) uint8 or None (no frame) per target time."""

    arrays: list[np.ndarray | None]
    first_time: float | None  # seconds of the first decoded frame
    last_end: float | None  # seconds where the last decoded frame ends, when decoding reached the end
    error: BaseException | None  # the decoding error that stopped decoding


def _decode_at(
    container: Any, stream: Any, timing: _Timing, targets: Sequence[float], fmt: str, seek: float | None
) -> _Decoded:
    """Decodes from `seek` seconds (None: from the container's position) until every target time is passed."""
    av = _import_av()
    if seek is not None:
        offset = math.floor((timing.start + seek) / timing.time_base)
        container.seek(offset, stream=stream, backward=True)
    eps, n = timing.eps, len(targets)
    arrays: list[np.ndarray | None] = [None] * n
    cache: tuple[Any, np.ndarray] | None = None  # the last converted frame, reused by consecutive targets

    def convert(frame: Any) -> np.ndarray:
        nonlocal cache
        if cache is None or cache[0] is not frame:
            size = {} if cache is None else {"width": cache[1].shape[1], "height": cache[1].shape[0]}
            array = frame.to_ndarray(format=fmt, **size)
            cache = (frame, array if array.ndim == 3 else array[:, :, None])  # (H, W, C)
        return cache[1]

    prev, prev_t, first_t, j, error = None, None, None, 0, None
    try:
        for frame in _decoded_frames(container, stream):
            t = _frame_time(frame, timing, prev_t)
            first_t = t if first_t is None else first_t
            while j < n and targets[j] + eps < t:  # frame is after target j: target j gets the frame before
                arrays[j] = convert(prev if prev is not None else frame)
                j += 1
            if j == n:
                return _Decoded(arrays, first_t, None, None)
            prev, prev_t = frame, t
    except _av_errors(av) as err:
        error = err
    last_end = None
    if prev is not None:
        duration = float(prev.duration * timing.time_base) if prev.duration else 1.0 / timing.fps
        last_end = prev_t + duration
        while j < n and targets[j] + eps < last_end:
            arrays[j] = convert(prev)
            j += 1
    return _Decoded(arrays, first_t, last_end, error)


def _check_read_args(
    num_frames: int, stride: float, start: float, end: float | None, sampling: str, crop: str, channels: int
) -> None:
    for ok, problem in [
        (num_frames >= 1, f"num_frames must be >= 1, got {num_frames}"),
        (stride > 0, f"stride must be > 0, got {stride}"),
        (start >= 0, f"start must be >= 0 seconds, got {start}"),
        (end is None or end > start, f"end must be after start ({start}), got {end}"),
        (sampling in ("stride", "uniform"), f"sampling must be 'stride' or 'uniform', got {sampling!r}"),
        (crop in ("center", "random"), f"crop must be 'center' or 'random', got {crop!r}"),
        (channels in _READ_FORMATS, f"channels must be 1 (gray), 3 (RGB) or 4 (RGBA), got {channels}"),
    ]:
        if not ok:
            raise ValueError(f"read_video: {problem}")


def _decode_targets(
    path: Path, container: Any, stream: Any, timing: _Timing, targets: list[float], fmt: str, start: float
) -> _Decoded:
    """`_decode_at` with a seek to `start`, decoding again from the stream start when the seek overshot."""
    decoded = _decode_at(container, stream, timing, targets, fmt, seek=start if start > 0 else None)
    overshot = decoded.first_time is not None and decoded.first_time > targets[0] + timing.eps
    if start > 0 and overshot:
        logger.debug("%s: seeking to %.3fs landed after it; decoding from the start", path, start)
        decoded = _decode_at(container, stream, timing, targets, fmt, seek=0.0)
    if all(a is None for a in decoded.arrays):
        if decoded.error is not None:
            raise VideoFileError(path, f"cannot decode it: corrupt or truncated ({decoded.error})") from decoded.error
        if decoded.first_time is None and start == 0:
            raise VideoFileError(path, "the file has no decodable video frames (corrupt or truncated)")
        lasts = f" (the video lasts {decoded.last_end:.3f}s)" if decoded.last_end is not None else ""
        raise VideoFileError(path, f"no video frame at or after start={start:.3f}s{lasts}")
    cut = decoded.last_end is not None and timing.duration is not None
    cut = cut and decoded.last_end < timing.duration - 1.5 / timing.fps
    if (decoded.error is not None or cut) and str(path) not in _warned_truncated:
        _warned_truncated.add(str(path))
        why = f"decoding failed: {decoded.error}" if decoded.error is not None else "frames end early"
        logger.warning("%s: truncated or damaged file (%s); frames after %.3fs are NaN", path, why, decoded.last_end)
    return decoded


def read_video(
    path: str | Path,
    num_frames: int = 16,
    stride: float = 4,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    end: float | None = None,
    sampling: Literal["stride", "uniform"] = "stride",
    crop: Literal["center", "random"] = "center",
    channels: int = 3,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Decodes a clip of `num_frames` frames, picked by time, from a video file.

    Target times (seconds from the stream start):
        - "stride": `start + i * stride / fps` for i in range(num_frames), fps being the stream's average rate; for
          constant-rate video this is every `stride`-th frame from the frame at `start`.
        - "uniform": [start, end or duration) split into `num_frames` equal segments, the centre of each
          (VideoMAE's test-time sampling), or with a `generator` a uniformly random time inside each (training).

    Each target gets the last frame whose timestamp is at or before it (the first frame for earlier times). The
    file is sought to `start` (the keyframe at or before it), so a clip from the middle of a long file decodes only
    from the nearest keyframe, and decoding stops once every target time is passed; only the kept frames are
    converted to arrays. Times at or after the end of the video, or at or after `end`, get NaN frames (padding).
    A file whose decoding fails after some frames (truncated or damaged) gives those frames and NaN after, with
    a warning naming the file (once per file); so does a file whose frames end well before its stated duration.

    Channels: 3 gives RGB, 1 gray (luma), 4 RGBA (alpha kept; files without alpha read as opaque). FFmpeg converts
    the file's pixel format, e.g. a grayscale file read with channels=3 repeats the gray in R, G and B. Values are
    8-bit (higher bit depths are rounded) scaled to [0, 1].

    Args:
        path: the file.
        num_frames: frames T of the clip.
        stride: frames (of the average rate) between targets for "stride"; unused by "uniform".
        size: None keeps the native size; an int (square) or (H, W) resizes to cover it keeping the aspect ratio
            and crops it out (`transforms.resize_crop`).
        start: seconds from the stream start of the clip's beginning.
        end: seconds where the clip ends (exclusive); None = the end of the video.
        sampling: "stride" or "uniform".
        crop: "center" or "random" (from `generator`) window of the resize.
        channels: 1, 3 or 4.
        generator: randomness of uniform sampling and of the random crop; with "uniform", None = segment centres.

    Returns:
        (T, C, H, W) float32 in [0, 1], NaN for frames without data.

    Raises:
        VideoFileError: the file is missing, not a video, has no video stream, cannot be decoded, or has no frame
            at or after `start`. The message names the file.
        ValueError: invalid arguments.
    """
    path = Path(path)
    _check_read_args(num_frames, stride, start, end, sampling, crop, channels)
    with _open_video(path) as (container, stream):
        timing = _timing(path, container, stream)
        targets = _target_times(timing, num_frames, stride, start, end, sampling, generator, path)
        inside = [t for t in targets if end is None or t < end]  # ascending, so a prefix
        decoded = _decode_targets(path, container, stream, timing, inside, _READ_FORMATS[channels], start)
    arrays = decoded.arrays + [None] * (num_frames - len(inside))
    H, W = next(a for a in arrays if a is not None).shape[:2]
    clip = torch.full((num_frames, H, W, channels), float("nan"), dtype=torch.float32)  # (T, H, W, C)
    for i, array in enumerate(arrays):
        if array is not None:
            clip[i] = torch.from_numpy(array).to(torch.float32) / 255.0
    clip = clip.permute(0, 3, 1, 2).contiguous()  # (T, C, H, W)
    if size is not None:
        clip = resize_crop(clip, size, crop=crop, generator=generator)
    return clip


def read_clips(
    path: str | Path,
    num_clips: int,
    num_frames: int = 16,
    stride: float = 4,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
) -> Tensor:
    """`num_clips` stride-sampled clips with evenly spaced starts, for test-time multi-clip evaluation.

    The starts run from the first frame to the last start whose clip ends inside the video; one clip is centred.
    Clips overlap when the video is shorter than `num_clips` clips (and all start at 0, NaN-padded at the end, when
    it is shorter than one).

    Returns:
        (K, T, C, H, W) float32 in [0, 1] (center crop when `size` is given).

    Raises:
        VideoFileError: as `read_video`.
    """
    if num_clips < 1:
        raise ValueError(f"read_clips: num_clips must be >= 1, got {num_clips}")
    info = probe_video(path)
    span = ((num_frames - 1) * stride + 1) / info.fps  # seconds one clip covers
    last = max(info.duration - span, 0.0)
    starts = [last / 2] if num_clips == 1 else [last * k / (num_clips - 1) for k in range(num_clips)]
    clips = [read_video(path, num_frames, stride, size, start=s, channels=channels) for s in starts]
    return torch.stack(clips)  # (K, T, C, H, W)


def find_video_files(root: str | Path) -> list[Path]:
    """The video files under `root`, recursively, sorted (deterministic); a file `root` is returned as given.

    Files are selected by extension (`VIDEO_EXTENSIONS`, case-insensitive); hidden files and folders (names starting
    with ".", e.g. macOS "._x.mp4" resource forks) are skipped.

    Raises:
        FileNotFoundError: `root` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"video file or folder not found: {root}")
    found = []
    for file in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in file.relative_to(root).parts)
        if file.is_file() and not hidden and file.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(file)
    return found
