"""Video file reading and writing (codecs, timestamp sampling, seeking, variable rate, padding, every bad input),
batching clips and finding files."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.video import io
from mmsdk.adapters.video.io import (
    VIDEO_EXTENSIONS,
    VideoFileError,
    find_video_files,
    probe_video,
    read_clips,
    read_video,
    to_clips,
)
from mmsdk.adapters.video.writer import write_video

av = pytest.importorskip("av")

STEP = 8  # intensity step between frames: frame i is uniformly i * STEP / 255


def _indexed(num_frames: int, height: int = 32, width: int = 48, channels: int = 3) -> torch.Tensor:
    """(T, C, H, W) frames whose intensity encodes their index."""
    level = torch.arange(num_frames, dtype=torch.float32) * STEP / 255
    return level.view(-1, 1, 1, 1).expand(num_frames, channels, height, width).contiguous()


def _quantized(frames: torch.Tensor) -> torch.Tensor:
    """Frames as 8-bit files store them (write_video rounds in float64)."""
    return ((frames.double() * 255).round() / 255).float()


def _ids(clip: torch.Tensor) -> list[int | None]:
    """The frame index read back from each frame of a clip (None for NaN padding)."""
    return [None if torch.isnan(f).all() else round(float(f.mean()) * 255 / STEP) for f in clip]


def _textured(num_frames: int, height: int = 32, width: int = 48) -> torch.Tensor:
    """(T, 3, H, W) smooth moving gradients (what lossy codecs keep well)."""
    t = torch.arange(num_frames, dtype=torch.float32).view(-1, 1, 1)
    y = torch.linspace(0, 1, height).view(1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, -1)
    shape = (num_frames, height, width)
    r = (0.5 + 0.4 * torch.sin(2 * torch.pi * (x + 0.05 * t))).expand(shape)
    g = (0.2 + 0.6 * y).expand(shape)
    b = 0.5 + 0.3 * torch.cos(2 * torch.pi * (x * y - 0.03 * t))
    return torch.stack([r, g, b], dim=1)


@pytest.fixture(scope="module")
def indexed_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 25 fps, lossless (ffv1, every frame a keyframe)."""
    return write_video(tmp_path_factory.mktemp("v") / "indexed.mkv", _indexed(30))


# ------------------------------------------------------------------------------------------- writing and reading


def test_lossless_round_trip_is_exact(tmp_path: Path) -> None:
    frames = _textured(8)
    clip = read_video(write_video(tmp_path / "a.mkv", frames), num_frames=8, stride=1)
    assert clip.shape == (8, 3, 32, 48) and clip.dtype == torch.float32
    assert torch.allclose(clip, _quantized(frames), atol=1e-6)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mov"])
def test_lossy_round_trip_is_close(tmp_path: Path, suffix: str) -> None:
    frames = _textured(10)
    clip = read_video(write_video(tmp_path / f"a{suffix}", frames), num_frames=10, stride=1)
    assert clip.shape == (10, 3, 32, 48) and clip.dtype == torch.float32
    assert float(clip.min()) >= 0.0 and float(clip.max()) <= 1.0
    assert float((clip - frames).abs().mean()) < 0.03


def test_uint8_frames_and_odd_sizes_are_written(tmp_path: Path) -> None:
    frames = (_textured(6, 31, 47) * 255).round().to(torch.uint8)
    for suffix in (".mp4", ".mkv"):
        clip = read_video(write_video(tmp_path / f"odd{suffix}", frames), num_frames=6, stride=1)
        assert clip.shape == (6, 3, 31, 47)
        assert float((clip - frames / 255).abs().mean()) < 0.03


def test_probe_reports_the_stream(indexed_mkv: Path, tmp_path: Path) -> None:
    info = probe_video(indexed_mkv)
    assert (info.width, info.height, info.frames) == (48, 32, 30)
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(1.2)
    assert info.codec == "ffv1" and info.pix_fmt == "bgr0" and not info.has_alpha and not info.variable_rate
    assert info.path == indexed_mkv
    mp4 = probe_video(write_video(tmp_path / "a.mp4", _indexed(12), fps=30))
    assert mp4.codec == "h264" and mp4.frames == 12 and mp4.fps == pytest.approx(30.0)
    assert mp4.duration == pytest.approx(0.4, abs=0.01)


# ----------------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".webm"])
def test_stride_sampling_takes_every_stride_th_frame(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"i{suffix}", _indexed(30))
    assert _ids(read_video(path, num_frames=8, stride=4)) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert _ids(read_video(path, num_frames=4, stride=2, start=0.5)) == [12, 14, 16, 18]  # 0.5 s = frame 12.5


def test_uniform_sampling_takes_segment_centres(indexed_mkv: Path) -> None:
    # 1.2 s in 6 segments of 0.2 s (5 frames): centres at 0.1, 0.3, ... s = frames 2.5, 7.5, ...
    assert _ids(read_video(indexed_mkv, num_frames=6, sampling="uniform")) == [2, 7, 12, 17, 22, 27]
    # [0.4, 0.8) in 4 segments of 0.1 s: centres 0.45, 0.55, 0.65, 0.75 s
    assert _ids(read_video(indexed_mkv, num_frames=4, sampling="uniform", start=0.4, end=0.8)) == [11, 13, 16, 18]


def test_uniform_sampling_with_a_generator_is_random_inside_each_segment(indexed_mkv: Path) -> None:
    def draw(seed: int) -> list[int | None]:
        clip = read_video(indexed_mkv, 6, sampling="uniform", generator=torch.Generator().manual_seed(seed))
        return _ids(clip)

    draws = [draw(seed) for seed in range(4)]
    assert draw(0) == draws[0]
    assert len({tuple(d) for d in draws}) > 1
    for ids in draws:
        assert all(5 * i <= frame < 5 * (i + 1) for i, frame in enumerate(ids))


def test_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    pts = [0, 10, 50, 60, 200, 210, 220, 400, 410, 500]  # ms
    path = write_video(tmp_path / "vfr.mkv", _indexed(10), pts=pts)
    info = probe_video(path)
    assert info.variable_rate and info.frames == 10
    assert info.fps == pytest.approx(18.0)  # 9 steps in 0.5 s
    # targets i * 2 / 18 s = 0, 111, 222, 333, 444 ms: the last frame at or before each
    assert _ids(read_video(path, num_frames=5, stride=2)) == [0, 3, 6, 6, 8]
    assert _ids(read_video(path, num_frames=3, stride=1, start=0.45)) == [8, 9, None]  # 450, 506, 561 ms
    # uniform over [0, 0.4): centres 50, 150, 250, 350 ms
    assert _ids(read_video(path, num_frames=4, sampling="uniform", end=0.4)) == [2, 3, 6, 6]


def test_end_of_video_is_nan_padding(indexed_mkv: Path) -> None:
    clip = read_video(indexed_mkv, num_frames=6, stride=6)  # frames 0, 6, ..., 30: frame 30 does not exist
    assert _ids(clip) == [0, 6, 12, 18, 24, None]
    assert torch.isnan(clip[5]).all() and torch.isfinite(clip[:5]).all()
    assert _ids(read_video(indexed_mkv, num_frames=4, stride=2, start=0.8, end=0.9)) == [20, 22, None, None]


def test_a_start_after_the_end_is_an_error(indexed_mkv: Path) -> None:
    with pytest.raises(VideoFileError, match=r"indexed\.mkv.*no video frame at or after start"):
        read_video(indexed_mkv, num_frames=2, start=5.0)


def test_seeking_decodes_from_the_keyframe_not_the_file_start(
    indexed_mkv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[float] = []
    original = io._decoded_frames

    def counting(container, stream):
        for frame in original(container, stream):
            decoded.append(float(frame.time))
            yield frame

    monkeypatch.setattr(io, "_decoded_frames", counting)
    # mp4 indexes every keyframe: a keyframe every 5 frames, so decoding starts at frame 20 (0.8 s)
    mp4 = write_video(tmp_path / "gop5.mp4", _indexed(30), options={"g": "5"})
    assert _ids(read_video(mp4, num_frames=2, stride=2, start=0.8)) == [20, 22]
    assert 0.6 < min(decoded) <= 0.8 and len(decoded) <= 8  # from keyframe 20 (or one inserted at a scene cut)
    decoded.clear()
    # Matroska indexes fewer points (cluster starts); still not from the file start
    assert _ids(read_video(indexed_mkv, num_frames=2, stride=2, start=0.8)) == [20, 22]
    assert 0 < min(decoded) <= 0.8 and len(decoded) < 24
    decoded.clear()
    assert _ids(read_video(indexed_mkv, num_frames=2, stride=2)) == [0, 2]
    assert len(decoded) == 4  # decoding stops at the first frame after the last target


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_clip_starts_in_the_middle_of_a_long_gop(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"gop{suffix}", _indexed(30), options={"g": "10"})
    assert _ids(read_video(path, num_frames=3, stride=3, start=0.6)) == [15, 18, 21]


def test_read_clips_spreads_the_starts(indexed_mkv: Path) -> None:
    clips = read_clips(indexed_mkv, num_clips=3, num_frames=4, stride=2)
    assert clips.shape == (3, 4, 3, 32, 48) and clips.dtype == torch.float32
    assert [_ids(c) for c in clips] == [[0, 2, 4, 6], [11, 13, 15, 17], [23, 25, 27, 29]]
    centre = read_clips(indexed_mkv, num_clips=1, num_frames=4, stride=2, size=16)
    assert centre.shape == (1, 4, 3, 16, 16) and _ids(centre[0]) == [11, 13, 15, 17]


def test_read_clips_overlap_on_short_videos(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mkv", _indexed(5))
    clips = read_clips(path, num_clips=4, num_frames=4, stride=2)
    assert clips.shape == (4, 4, 3, 32, 48)
    assert all(_ids(c) == [0, 2, 4, None] for c in clips)


def test_size_resizes_and_crops(indexed_mkv: Path) -> None:
    clip = read_video(indexed_mkv, num_frames=2, size=16)
    assert clip.shape == (2, 3, 16, 16) and _ids(clip) == [0, 4]
    assert read_video(indexed_mkv, num_frames=2, size=(24, 20)).shape == (2, 3, 24, 20)


def test_random_crop_follows_the_generator(tmp_path: Path) -> None:
    path = write_video(tmp_path / "t.mkv", _textured(4, 32, 64))

    def read(seed: int) -> torch.Tensor:
        return read_video(path, 2, 1, size=32, crop="random", generator=torch.Generator().manual_seed(seed))

    assert torch.equal(read(1), read(1))
    assert any(not torch.equal(read(1), read(seed)) for seed in range(2, 6))


# ----------------------------------------------------------------------------------------------- gray and alpha


def test_grayscale_files(tmp_path: Path) -> None:
    frames = _textured(4)[:, :1]  # (T, 1, H, W)
    path = write_video(tmp_path / "g.mkv", frames)
    assert probe_video(path).pix_fmt == "gray"
    gray = read_video(path, num_frames=4, stride=1, channels=1)
    assert gray.shape == (4, 1, 32, 48) and torch.allclose(gray, _quantized(frames), atol=1e-6)
    rgb = read_video(path, num_frames=4, stride=1)  # FFmpeg repeats the gray in R, G and B
    assert rgb.shape == (4, 3, 32, 48) and torch.equal(rgb[:, :1], rgb[:, 1:2]) and torch.equal(rgb[:, 0], rgb[:, 2])
    assert float((rgb[:, :1] - gray).abs().max()) <= 1 / 255 + 1e-6
    lossy = read_video(write_video(tmp_path / "g.mp4", frames), num_frames=4, stride=1, channels=1)
    assert float((lossy - frames).abs().mean()) < 0.03


@pytest.mark.parametrize(("name", "codec"), [("a.mkv", None), ("a.mov", "png")])
def test_rgba_files_keep_alpha(tmp_path: Path, name: str, codec: str | None) -> None:
    alpha = torch.linspace(0, 1, 48).expand(4, 1, 32, 48)
    frames = torch.cat([_textured(4), alpha], dim=1)  # (T, 4, H, W)
    path = write_video(tmp_path / name, frames, codec=codec)
    assert probe_video(path).has_alpha
    clip = read_video(path, num_frames=4, stride=1, channels=4)
    assert clip.shape == (4, 4, 32, 48) and torch.allclose(clip, _quantized(frames), atol=1e-6)
    assert read_video(path, num_frames=4, stride=1).shape == (4, 3, 32, 48)


def test_files_without_alpha_read_as_opaque(indexed_mkv: Path) -> None:
    clip = read_video(indexed_mkv, num_frames=2, channels=4)
    assert clip.shape == (2, 4, 32, 48) and torch.equal(clip[:, 3], torch.ones(2, 32, 48))


# ------------------------------------------------------------------------------------------------ bad files


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoFileError, match=r"nope\.mp4: file not found") as err:
        read_video(tmp_path / "nope.mp4")
    assert err.value.path == tmp_path / "nope.mp4" and err.value.reason == "file not found"
    with pytest.raises(VideoFileError, match="not a file"):
        probe_video(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a video at all", bytes(range(256)) * 40])
def test_garbage_is_an_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoFileError, match=r"junk\.mp4: not a readable video file"):
        probe_video(path)
    with pytest.raises(VideoFileError, match=r"junk\.mp4"):
        read_video(path)


def test_files_without_frames_or_video_stream(tmp_path: Path) -> None:
    for name, codec in [("zero.mp4", "libx264"), ("zero.mkv", "ffv1")]:
        with av.open(str(tmp_path / name), "w") as container:  # a header and no frame
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
            container.start_encoding()
        for fn in (probe_video, read_video):
            with pytest.raises(VideoFileError, match=name):
                fn(tmp_path / name)
    with av.open(str(tmp_path / "audio.mkv"), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoFileError, match=r"audio\.mkv: the file has no video stream"):
        read_video(tmp_path / "audio.mkv")


def test_truncated_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = write_video(tmp_path / "full.mp4", _indexed(30)).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: unreadable
    with pytest.raises(VideoFileError, match=r"cut\.mp4"):
        read_video(tmp_path / "cut.mp4")
    data = write_video(tmp_path / "full.mkv", _indexed(30)).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="mmsdk.adapters.video.io"):
        first = read_video(cut, num_frames=10, stride=3)
        again = read_video(cut, num_frames=10, stride=3)
    ids = _ids(first)
    assert ids[:3] == [0, 3, 6] and ids[-1] is None and torch.equal(first.nan_to_num(-1), again.nan_to_num(-1))
    real = [i for i in ids if i is not None]
    assert real == list(range(0, 3 * len(real), 3))  # the frames that are there, then padding
    warnings = [r for r in caplog.records if "cut.mkv" in r.getMessage()]
    assert len(warnings) == 1 and "truncated" in warnings[0].getMessage()
    # the frames before the cut read normally, without a warning
    caplog.clear()
    assert _ids(read_video(tmp_path / "full.mkv", num_frames=3, stride=3)) == [0, 3, 6]
    assert not caplog.records


def test_bad_arguments(indexed_mkv: Path) -> None:
    for kwargs in [{"num_frames": 0}, {"stride": 0}, {"start": -1.0}, {"start": 0.5, "end": 0.5}]:
        with pytest.raises(ValueError):
            read_video(indexed_mkv, **kwargs)
    for kwargs in [{"sampling": "dense"}, {"crop": "left"}, {"channels": 2}]:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            read_video(indexed_mkv, **kwargs)
    with pytest.raises(ValueError, match="num_clips"):
        read_clips(indexed_mkv, 0)


def test_write_video_rejects_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        write_video(tmp_path / "a.mkv", torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        write_video(tmp_path / "a.mkv", torch.zeros(2, 8, 8, 3))
    with pytest.raises(ValueError, match="alpha"):
        write_video(tmp_path / "a.mp4", torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="strictly increasing"):
        write_video(tmp_path / "a.mkv", torch.zeros(3, 3, 8, 8), pts=[0, 40, 40])
    with pytest.raises(ValueError, match="codec"):
        write_video(tmp_path / "a.xyz", torch.zeros(2, 3, 8, 8))


# ----------------------------------------------------------------------------------------- to_clips, files


def test_to_clips_layouts_and_scaling() -> None:
    clip = np.random.default_rng(0).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)  # (T, H, W, C)
    out = to_clips(clip)
    assert out.shape == (1, 4, 3, 8, 10) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255)
    batch = torch.rand(2, 4, 3, 8, 10, dtype=torch.float64)
    assert torch.allclose(to_clips(batch), batch.float()) and to_clips(batch).dtype == torch.float32
    assert to_clips(batch.half()).dtype == torch.float32
    assert to_clips(np.ones((2, 4, 3, 8, 8), np.float16)).shape == (2, 4, 3, 8, 8)
    assert float(to_clips(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)).max()) == 1.0  # scaled once


def test_to_clips_errors() -> None:
    for bad in (np.zeros((4, 8, 8, 3), bool), torch.zeros(4, 8, 8, 3, dtype=torch.int64), np.zeros((2, 4, 4, 3), int)):
        with pytest.raises(ValueError, match="uint8 or float"):
            to_clips(bad)
    with pytest.raises(ValueError, match=r"\(T, H, W, C\).*\(B, T, C, H, W\).*\(8, 8, 3\)"):
        to_clips(np.zeros((8, 8, 3), np.uint8))


def test_find_video_files(tmp_path: Path) -> None:
    for name in ["b/clip.MP4", "a.mkv", "b/c/d.webm", "x.avi", "y.mov", "notes.txt", ".hidden/e.mp4", "._f.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_video_files(tmp_path)
    assert found == sorted(found)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.mkv",
        "b/c/d.webm",
        "b/clip.MP4",
        "x.avi",
        "y.mov",
    ]
    assert set(VIDEO_EXTENSIONS) == {".mp4", ".webm", ".avi", ".mkv", ".mov"}
    with pytest.raises(FileNotFoundError, match="missing"):
        find_video_files(tmp_path / "missing")


def test_importing_the_module_does_not_import_av() -> None:
    code = "import sys, mmsdk.adapters.video.io, mmsdk.adapters.video.transforms; assert 'av' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
