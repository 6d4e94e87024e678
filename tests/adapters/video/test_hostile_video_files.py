"""Empty, garbage and damaged video files and manifests give errors naming the file, never showing its contents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmsdk.adapters.video import io
from mmsdk.adapters.video.datasets import VideoManifest
from mmsdk.adapters.video.io import VideoFileError, probe_video, read_video
from mmsdk.adapters.video.writer import write_video

av = pytest.importorskip("av")

SECRET = "hunter2-do-not-print"


def test_empty_and_garbage_files_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for read in (probe_video, lambda p: read_video(p, num_frames=2)):
        with pytest.raises(VideoFileError, match=r"empty\.mp4: not a readable video file: the file is empty"):
            read(empty)
        with pytest.raises(VideoFileError, match=r"garbage\.mp4: not a readable video file"):
            read(garbage)


def test_a_demuxer_index_error_becomes_a_video_file_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV raises IndexError when damaged data (e.g. a corrupt MPEG-TS table) announces a stream mid-file."""
    path = write_video(tmp_path / "damaged.mkv", torch.rand(6, 3, 16, 16), fps=10)

    def failing(container: Any, stream: Any) -> Iterator[Any]:
        raise IndexError("list index out of range")
        yield  # a generator, like the real seam

    monkeypatch.setattr(io, "_decoded_frames", failing)
    with pytest.raises(VideoFileError, match=r"damaged\.mkv: cannot decode it") as info:
        read_video(path, num_frames=2)
    assert isinstance(info.value.__cause__, IndexError)


def _manifest(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("latin.csv", "path,label\nclip.mp4,caf\xe9\n".encode("latin-1"), r"latin\.csv is not UTF-8 text"),
        ("blob.csv", b"path,label\n\x00\x01\x02\x00garbage\n", r"blob\.csv is not a readable CSV manifest"),
        ("start.csv", f"path,label,start\nclip.mp4,cat,{SECRET}\n", r"start\.csv line 2: start must be a number"),
        ("end.csv", f"path,label,end\nclip.mp4,cat,-{SECRET}\n", r"end\.csv line 2: end must be a number"),
    ],
)
def test_bad_manifests_are_named_without_their_contents(tmp_path: Path, name: str, content: bytes, match: str):
    path = _manifest(tmp_path / name, content)
    with pytest.raises(ValueError, match=match) as info:
        VideoManifest(path, num_frames=2, stride=1, size=None)
    assert SECRET not in str(info.value) and "garbage" not in str(info.value)
