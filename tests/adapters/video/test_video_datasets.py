"""Video datasets over tiny generated files: class folders, manifests with segments, unlabelled files, bad files,
training and evaluation clip sampling, and the collate function."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mmsdk.adapters.video.datasets import VideoFiles, VideoFolder, VideoManifest, collate_clips

pytest.importorskip("av")
io = pytest.importorskip("mmsdk.adapters.video.io")
writer = pytest.importorskip("mmsdk.adapters.video.writer")

LOGGER = "mmsdk.adapters.video.datasets"
FPS = 10
FRAMES = 20  # 2 s files


def _write(path: Path, frames: int = FRAMES, size: tuple[int, int] = (16, 16), base: int = 0) -> Path:
    """A lossless file whose frame k is a flat gray of level (base + k) / 255, so a clip tells which frames it has."""
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = (base + torch.arange(frames, dtype=torch.float32)) / 255
    writer.write_video(path, levels[:, None, None, None].expand(frames, 3, *size), fps=FPS)
    return path


def _frames(clip: torch.Tensor, base: int = 0) -> list[float]:
    """The frame indices of a clip of `_write` (NaN for padding)."""
    return [float("nan") if v != v else round(v * 255) - base for v in clip[:, 0, 0, 0].tolist()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    for c, name in enumerate(("cat", "dog")):
        for i in range(3):
            _write(root / name / f"{i}.mkv", base=10 * c)
    return root


def test_folder_reads_classes_with_random_training_clips_and_fixed_evaluation_clips(folder: Path) -> None:
    ds = VideoFolder(folder, num_frames=4, stride=2, size=8, train=True, seed=0)
    assert ds.class_names == ["cat", "dog"] and ds.labels == [0, 0, 0, 1, 1, 1]
    assert ds.column("label") == ["cat"] * 3 + ["dog"] * 3 and ds.column("path")[3].endswith("dog/0.mkv")
    clip, label = ds[0]
    assert clip.shape == (4, 3, 8, 8) and clip.dtype == torch.float32 and label == 0
    starts = [_frames(ds[0][0])[0] for _ in range(12)]
    assert len(set(starts)) > 2 and min(starts) >= 0 and max(starts) <= FRAMES - 7  # the clip spans 7 frames
    picked = _frames(ds[0][0])
    assert picked == [picked[0] + k for k in (0, 2, 4, 6)]
    same_seed = VideoFolder(folder, num_frames=4, stride=2, size=8, train=True, seed=0)
    assert [_frames(same_seed[0][0])[0] for _ in range(13)][1:] == starts  # reproducible draws, new at every read
    ev = VideoFolder(folder, num_frames=4, stride=2, size=8)
    assert _frames(ev[4][0], base=10) == [6, 8, 10, 12] == _frames(ev[4][0], base=10)  # the centre clip
    assert ev[4][1] == 1 and ev.collate_fn is collate_clips
    unseeded = VideoFolder(folder, num_frames=4, stride=2, size=8, train=True)
    assert len({_frames(unseeded[1][0])[0] for _ in range(12)}) > 2  # torch's global RNG
    with pytest.raises(IndexError):
        ds[6]


def test_uniform_sampling_spreads_frames_over_the_file(folder: Path) -> None:
    ev = VideoFolder(folder, num_frames=4, stride=1, size=None, sampling="uniform")
    assert _frames(ev[0][0]) == [2, 7, 12, 17]  # centres of four 0.5 s parts
    clip = VideoFolder(folder, num_frames=4, stride=1, size=None, sampling="uniform", train=True, seed=3)[0][0]
    assert clip.shape == (4, 3, 16, 16)
    assert all(5 * k <= f < 5 * (k + 1) for k, f in enumerate(_frames(clip)))


def test_manifest_segments_bound_the_clips_and_extra_columns_are_kept(tmp_path: Path) -> None:
    _write(tmp_path / "videos" / "a.mkv")
    _write(tmp_path / "videos" / "b.mkv", frames=10)
    rows = [
        {"path": "videos/a.mkv", "label": "wave", "start": "1.0", "end": "1.5", "subject": "s1"},
        {"path": "videos/a.mkv", "label": "clap", "start": "", "end": "", "subject": "s2"},
        {"path": "videos/b.mkv", "label": "wave", "start": "0.5", "end": "9", "subject": "s1"},
    ]
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ev = VideoManifest(manifest, num_frames=4, stride=1, size=8)
    assert ev.class_names == ["clap", "wave"] and ev.labels == [1, 0, 1]
    assert ev.column("subject") == ["s1", "s2", "s1"] and ev.segments == [(1.0, 1.5), (0.0, 2.0), (0.5, 1.0)]
    assert _frames(ev[0][0]) == [10, 11, 12, 13]  # the centre (rounded down) of frames 10..14
    assert _frames(ev[1][0]) == [8, 9, 10, 11]
    train = VideoManifest(manifest, num_frames=4, stride=1, size=8, train=True, seed=1)
    starts = {_frames(train[0][0])[0] for _ in range(16)}
    assert starts == {10.0, 11.0}  # every start inside [1.0 s, 1.5 s - 4 frames]
    long = VideoManifest(manifest, num_frames=8, stride=1, size=8)[0][0]
    assert _frames(long)[:5] == [10, 11, 12, 13, 14] and torch.isnan(long[5:]).all()  # past `end`: NaN padding
    with pytest.raises(ValueError, match="no column 'speaker'"):
        ev.column("speaker")


def test_bad_manifest_rows_and_missing_files_are_named(tmp_path: Path) -> None:
    _write(tmp_path / "a.mkv")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,start,end\na.mkv,x,1.5,1.0\n")
    with pytest.raises(ValueError, match=r"line 2: end \(1 s\) must be after start"):
        VideoManifest(manifest, 4, 1, 8)
    manifest.write_text("path,label,start\na.mkv,x,soon\n")
    with pytest.raises(ValueError, match="start must be a number of seconds"):
        VideoManifest(manifest, 4, 1, 8)
    manifest.write_text("path,label\na.mkv,x\nmissing.mkv,y\n")
    with pytest.raises(io.VideoFileError, match=r"missing\.mkv: file not found"):
        VideoManifest(manifest, 4, 1, 8)
    kept = VideoManifest(manifest, 4, 1, 8, skip_bad=True)
    assert len(kept) == 1 and kept.class_names == ["x", "y"] and kept.column("label") == ["x"]
    manifest.write_text("file,label\na.mkv,x\n")
    with pytest.raises(ValueError, match="no column 'path'"):
        VideoManifest(manifest, 4, 1, 8)


def test_skip_bad_drops_unreadable_files_with_one_warning(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (folder / "cat" / "broken.mp4").write_text("not a video")
    (folder / "dog" / "empty.webm").write_bytes(b"")
    with pytest.raises(io.VideoFileError, match=r"broken\.mp4.*\(and 1 file more\); construct VideoFolder with skip"):
        VideoFolder(folder, 4, 2, 8)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = VideoFolder(folder, 4, 2, 8, skip_bad=True)
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1 and "skipped 2 files of 8" in warnings[0] and "broken.mp4" in warnings[0]
    assert len(ds) == 6 and ds.labels == [0, 0, 0, 1, 1, 1]


def test_video_files_are_found_recursively_and_batch_with_the_collate_function(tmp_path: Path) -> None:
    _write(tmp_path / "corpus" / "a.mp4", frames=12)
    _write(tmp_path / "corpus" / "deep" / "b.webm", frames=6, size=(12, 20))
    (tmp_path / "corpus" / "notes.txt").write_text("not a video")
    (tmp_path / "corpus" / ".hidden.mp4").write_text("resource fork")
    ds = VideoFiles(tmp_path / "corpus", num_frames=4, stride=2, size=None, train=True, seed=0)
    assert [p.name for p in ds.files] == ["a.mp4", "b.webm"]
    short = ds[1]
    assert short.shape == (4, 3, 12, 20) and torch.isnan(short[3:]).all()  # 6 frames: the 4th pick is past the end
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)))
    assert batch.shape == (2, 4, 3, 16, 20)
    assert torch.isnan(batch[0, :, :, :, 16:]).all() and torch.isnan(batch[1, :, :, 12:]).all()
    assert not torch.isnan(batch[0, :, :, :, :16]).any()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VideoFiles([tmp_path / "nowhere"], 4, 2, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        VideoFiles(tmp_path / "empty", 4, 2, None)


def test_collate_pads_with_nan_and_rejects_mixed_channel_counts() -> None:
    a, b = torch.rand(4, 3, 8, 8), torch.rand(2, 3, 6, 10)
    clips, labels = collate_clips([(a, 1), (b, 0)])
    assert clips.shape == (2, 4, 3, 8, 10) and labels.tolist() == [1, 0] and labels.dtype == torch.int64
    torch.testing.assert_close(clips[0, :, :, :, :8], a)
    torch.testing.assert_close(clips[1, :2, :, :6, :10], b)
    assert (
        torch.isnan(clips[1, 2:]).all()
        and torch.isnan(clips[1, :, :, 6:]).all()
        and torch.isnan(clips[0, ..., 8:]).all()
    )
    same = collate_clips([a, a])
    assert same.shape == (2, 4, 3, 8, 8) and not torch.isnan(same).any()
    with pytest.raises(ValueError, match=r"items 0, 2 have 3 channels; item 1 has 1 channel$"):
        collate_clips([a, torch.rand(4, 1, 8, 8), a])
    with pytest.raises(ValueError, match="not a clip"):
        collate_clips([torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="mix bare clips"):
        collate_clips([a, (a, 0)])
