"""Video datasets: class folders and CSV manifests for fine-tuning, unlabelled files for pretraining, and the
collate function that batches clips of different sizes.

Items are clips (T, C, H, W) float32 in [0, 1] decoded by `io.read_video` (PyAV): `num_frames` frames `stride`
frames apart ("stride" sampling) or spread evenly over the file or manifest segment ("uniform"), resized and
cropped to `size`. Frames past the end of a short file (or segment) are NaN, which the model reads as padding.

Clip sampling: in training mode (`train=True`) every `__getitem__` draws a new clip start inside
[start, end - clip duration] (snapped to a frame; "uniform" sampling spans the whole segment and draws a random
time inside each of its `num_frames` equal parts instead) and a random crop, so each epoch sees other clips of each
video. The draws come from a generator seeded
from (seed, index, DataLoader worker id, how many times this item was read in this process) when `seed` is an int:
a run is reproducible and no two reads of an item repeat a draw; with `seed=None` they come from torch's global
RNG (which DataLoader seeds per worker and epoch). Evaluation mode (`train=False`) reads the centre clip of the
segment ("uniform": the centre of each part) with a centre crop: the same item every time.

Bad files: construction probes every file once (`io.probe_video`, headers only). A missing or unreadable file
raises `io.VideoFileError` naming it (and counting the others); `skip_bad=True` drops them instead with ONE warning
giving their count and the first few names. A file that fails only when decoded raises `VideoFileError` naming it
and the item when its item is read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate, get_worker_info

from mmsdk.config import require
from mmsdk.contracts.data import read_manifest

if TYPE_CHECKING:
    from mmsdk.adapters.video.io import VideoInfo

__all__ = ["VideoFiles", "VideoFolder", "VideoManifest", "collate_clips"]

logger = logging.getLogger(__name__)

Sampling = Literal["stride", "uniform"]
Size = int | tuple[int, int] | None

_NAMED = 3  # files named in a summary warning


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _columns(columns: Sequence[str]) -> str:
    """A manifest's column names for messages, each cut to 40 characters (the first 20)."""
    cut = [c if len(c) <= 40 else f"{c[:37]}..." for c in columns[:20]]
    return f"{cut}" + (f" (+{len(columns) - 20} more)" if len(columns) > 20 else "")


def _some(items: Sequence[object]) -> str:
    more = f" and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
    return ", ".join(str(x) for x in items[:_NAMED]) + more


def _io() -> Any:
    """The `io` module (PyAV decoding), imported on first use."""
    from mmsdk.adapters.video import io

    return io


def collate_clips(items: Sequence[Any]) -> Any:
    """Batches clips (T, C, H, W), or (clip, target, ...) tuples, into (B, T, C, H, W) (and collated targets).

    Clips of different (T, H, W) are padded with NaN at the end of time, at the bottom and at the right to the
    largest in the batch: NaN pixels are padding, which the model reads as padding tokens (a tube with any NaN
    pixel is padding). Targets and further tuple elements go through torch's default collation.

    Raises:
        ValueError: for an empty batch, a clip that is not 4-D, items mixing bare clips and tuples, or clips with
            different channel counts (naming the item indices and their channel counts).
    """
    if len(items) == 0:
        raise ValueError("collate_clips: empty batch")
    tupled = [isinstance(item, (tuple, list)) for item in items]
    if any(tupled) and not all(tupled):
        raise ValueError("collate_clips: items mix bare clips and (clip, target) tuples")
    clips: list[Tensor] = [item[0] if tupled[0] else item for item in items]
    for i, clip in enumerate(clips):
        if not isinstance(clip, Tensor) or clip.dim() != 4:
            shape = tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
            raise ValueError(f"collate_clips: item {i} is not a clip (T, C, H, W): {shape}")
    by_channels: dict[int, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        by_channels[clip.shape[1]].append(i)
    if len(by_channels) > 1:
        parts = "; ".join(
            f"items {_some(ids)} have {c} channels"
            if len(ids) > 1
            else f"item {ids[0]} has {c} channel{'s' * (c != 1)}"
            for c, ids in sorted(by_channels.items(), key=lambda kv: kv[1][0])
        )
        raise ValueError(f"collate_clips: clips of one batch need the same channel count: {parts}")
    shapes = {tuple(c.shape) for c in clips}
    if len(shapes) == 1:
        batch = torch.stack(clips)  # (B, T, C, H, W)
    else:
        steps, height, width = (max(c.shape[d] for c in clips) for d in (0, 2, 3))
        batch = clips[0].new_full((len(clips), steps, clips[0].shape[1], height, width), float("nan"))
        for i, clip in enumerate(clips):
            batch[i, : clip.shape[0], :, : clip.shape[2], : clip.shape[3]] = clip
    if not tupled[0]:
        return batch
    rest = [default_collate([item[k] for item in items]) for k in range(1, len(items[0]))]
    return (batch, *rest)


collate_clips.shard_rebuildable = True  # type: ignore[attr-defined]  # shards may name it in a manifest


class _ClipDataset(Dataset):
    """Probing, bad-file handling and clip sampling shared by the datasets (arguments as in `VideoFiles`)."""

    collate_fn = staticmethod(collate_clips)

    def __init__(
        self,
        files: Sequence[Path],
        num_frames: int,
        stride: int,
        size: Size,
        channels: int,
        train: bool,
        sampling: Sampling,
        seed: int | None,
        skip_bad: bool,
        segments: Sequence[tuple[float, float | None]] | None = None,
    ) -> None:
        require(num_frames >= 1, self, "num_frames", f"must be >= 1, got {num_frames}")
        require(stride >= 1, self, "stride", f"must be >= 1, got {stride}")
        require(channels >= 1, self, "channels", f"must be >= 1, got {channels}")
        require(sampling in ("stride", "uniform"), self, "sampling", f"must be stride or uniform, got {sampling!r}")
        if size is not None:
            sizes = (size, size) if isinstance(size, int) else tuple(size)
            require(len(sizes) == 2 and min(sizes) >= 1, self, "size", f"must be an int or (height, width), got {size}")
        self.num_frames, self.stride, self.size, self.channels = num_frames, stride, size, channels
        self.train, self.sampling, self.seed, self.skip_bad = train, sampling, seed, skip_bad
        self._reads: dict[int, int] = defaultdict(int)  # item -> reads so far in this process (training draws)
        bounds = list(segments) if segments is not None else [(0.0, None)] * len(files)
        self._kept = self._probe(list(files))
        self.segments: list[tuple[float, float]] = [self._segment(i, *bounds[k]) for i, k in enumerate(self._kept)]
        self._ends = [bounds[k][1] for k in self._kept]  # the given ends (None: read to the file's end)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _probe(self, files: list[Path]) -> list[int]:
        """Probes every file, sets `files` and `infos`, and returns the positions of the kept ones."""
        io = _io()
        kept: list[int] = []
        infos: list[VideoInfo] = []
        bad: list[Any] = []  # the VideoFileErrors
        for position, path in enumerate(files):
            try:
                info = io.probe_video(path)
                if not info.fps > 0:
                    raise io.VideoFileError(path, "the video stream states no frame rate")
            except io.VideoFileError as err:
                bad.append(err if err.path is not None else io.VideoFileError(path, err.reason))
                continue
            kept.append(position)
            infos.append(info)
        if bad and not self.skip_bad:
            more = f" (and {_files(len(bad) - 1)} more)" if len(bad) > 1 else ""
            hint = f"{more}; construct {self._name} with skip_bad=True to skip unreadable files"
            raise io.VideoFileError(bad[0].path, bad[0].reason + hint) from bad[0]
        if bad:
            named = _some([f"{err.path} ({err.reason})" for err in bad])
            logger.warning(
                "%s: skipped %s of %d that cannot be read: %s", self._name, _files(len(bad)), len(files), named
            )
        if not kept:
            raise ValueError(f"{self._name}: none of the {_files(len(files))} could be read as video")
        self.files: list[Path] = [files[i] for i in kept]
        self.infos: list[VideoInfo] = infos
        return kept

    def _segment(self, item: int, start: float, end: float | None) -> tuple[float, float]:
        """(start, end) seconds of an item's segment, end bounded by the file's duration."""
        duration = float(self.infos[item].duration or self.infos[item].frames / self.infos[item].fps)
        if start >= duration:
            raise ValueError(f"{self._name}: {self.files[item]} starts at {start:g} s, past its end ({duration:g} s)")
        return start, duration if end is None else min(end, duration)

    def __len__(self) -> int:
        return len(self.files)

    def _index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self._name}: index {index} out of range for {len(self)} items")
        return index % len(self)

    def _generator(self, index: int) -> torch.Generator:
        """The generator of a training read of `index` (see the module docstring)."""
        if self.seed is None:
            return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        worker = get_worker_info()
        key = [self.seed, index, 0 if worker is None else worker.id + 1, self._reads[index]]
        self._reads[index] += 1
        return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]))

    def clip_start(self, index: int, generator: torch.Generator | None = None) -> float:
        """Where item `index`'s clip starts (seconds): drawn with `generator` (training) or the centre clip."""
        start, end = self.segments[index]
        if self.sampling == "uniform":
            return start
        fps = float(self.infos[index].fps)
        span = (self.num_frames - 1) * self.stride + 1  # frames the clip covers
        slack = int(np.floor((end - start) * fps + 1e-6)) - span  # frame offsets the clip can start at, beyond 0
        if slack <= 0:
            return start
        offset = slack // 2 if generator is None else int(torch.randint(0, slack + 1, (1,), generator=generator))
        return start + offset / fps

    def _clip(self, index: int) -> Tensor:
        """The item's clip (T, C, H, W): a fresh random clip and crop in training mode, the centre one otherwise."""
        generator = self._generator(index) if self.train else None
        io = _io()
        try:
            return io.read_video(
                self.files[index],
                num_frames=self.num_frames,
                stride=self.stride,
                size=self.size,
                start=self.clip_start(index, generator),
                end=self._ends[index],
                sampling=self.sampling,
                crop="random" if self.train else "center",
                channels=self.channels,
                generator=generator,
            )
        except io.VideoFileError as err:
            path = err.path if err.path is not None else self.files[index]
            raise io.VideoFileError(path, f"{err.reason} (item {index} of {self._name})") from err


def _sources(root_or_list: str | Path | Sequence[str | Path]) -> list[Path]:
    """Video files of folders (recursively, `io.find_video_files`) and files named directly, each once."""
    io = _io()
    sources = [root_or_list] if isinstance(root_or_list, (str, Path)) else list(root_or_list)
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += io.find_video_files(source)
        elif source.is_file():
            found.append(source)
        else:
            raise FileNotFoundError(f"video file or folder not found: {source}")
    return list(dict.fromkeys(found))


class VideoFiles(_ClipDataset):
    """Unlabelled videos for pretraining: every video file under the given folders (recursively) or given directly.

    Items are clips (T, C, H, W) float32 in [0, 1]. Clip sampling and bad files: see the module docstring.

    Args:
        root_or_list: a folder or file, or a sequence of them (files named directly are used whatever their
            extension; folders are searched with `io.find_video_files`).
        num_frames: frames T per clip.
        stride: frames between the clip's frames ("stride" sampling).
        size: the frames' size, an int (square) or (height, width); None = the files' own size.
        channels: C: 3 = RGB, 1 = grayscale, 4 = RGBA (as `io.read_video`).
        train: random clips and crops, new at every read; False = the centre clip and crop, fixed.
        sampling: "stride" (a clip of consecutive strided frames) or "uniform" (frames spread over the segment).
        seed: seed of the training draws; None = torch's global RNG.
        skip_bad: drop files that cannot be probed, with one warning; False = raise `VideoFileError`.

    Attributes:
        files: the files in item order. infos: their `io.VideoInfo`. segments: (start, end) seconds of each.

    Raises:
        FileNotFoundError: a given file or folder does not exist.
        ValueError: no video files, or none readable.
    """

    def __init__(
        self,
        root_or_list: str | Path | Sequence[str | Path],
        num_frames: int,
        stride: int,
        size: Size,
        channels: int = 3,
        train: bool = False,
        sampling: Sampling = "stride",
        seed: int | None = None,
        skip_bad: bool = False,
    ) -> None:
        files = _sources(root_or_list)
        if not files:
            raise ValueError(f"VideoFiles: no video files ({', '.join(_io().VIDEO_EXTENSIONS)}) in {root_or_list}")
        super().__init__(files, num_frames, stride, size, channels, train, sampling, seed, skip_bad)

    def __getitem__(self, index: int) -> Tensor:
        return self._clip(self._index(index))


class VideoFolder(_ClipDataset):
    """Labelled videos laid out as `root/<class_name>/**/<video>`; items are (clip (T, C, H, W), label int).

    Labels index `class_names`: the sorted sub-folder names of `root` (hidden ones excluded), or the given list
    (to share one mapping between roots). Video files directly in `root` belong to no class and are ignored with a
    warning. Other arguments as in `VideoFiles`.

    Attributes:
        class_names: class of each label id. labels: label id of each item. files, infos, segments: as `VideoFiles`.

    Raises:
        FileNotFoundError: `root` or a listed class folder is missing.
        ValueError: no class folders, or no (readable) video files.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int,
        stride: int,
        size: Size,
        channels: int = 3,
        train: bool = False,
        sampling: Sampling = "stride",
        seed: int | None = None,
        skip_bad: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        io = _io()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VideoFolder: folder not found: {self.root}")
        if class_names is None:
            class_names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise ValueError(f"VideoFolder: {self.root} has no class folders (expected root/<class_name>/<videos>)")
        if loose := [p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in io.VIDEO_EXTENSIONS]:
            logger.warning("VideoFolder: %s directly in %s, in no class folder, ignored", _files(len(loose)), self.root)
        self.class_names = list(class_names)
        files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.class_names):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"VideoFolder: class folder not found: {folder}")
            found = io.find_video_files(folder)
            if not found:
                logger.warning("VideoFolder: class folder %s has no video files", folder)
            files += found
            labels += [label] * len(found)
        if not files:
            raise ValueError(f"VideoFolder: no video files ({', '.join(io.VIDEO_EXTENSIONS)}) under {self.root}")
        super().__init__(files, num_frames, stride, size, channels, train, sampling, seed, skip_bad)
        self.labels: list[int] = [labels[i] for i in self._kept]

    def column(self, name: str) -> list[str]:
        """Per item: "path" (the file) or "label" (the class name), as a manifest's columns."""
        if name == "path":
            return [str(p) for p in self.files]
        if name == "label":
            return [self.class_names[label] for label in self.labels]
        raise ValueError(f"VideoFolder: no column {name!r}; a folder has the columns ['path', 'label']")

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = self._index(index)
        return self._clip(index), self.labels[index]


def _seconds(cell: str, column: str, where: str) -> float | None:
    """A start/end cell in seconds (>= 0), None when empty."""
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{where}: {column} must be a number of seconds") from None
    if not value >= 0:
        raise ValueError(f"{where}: {column} must be >= 0 seconds, got {value:g}")
    return value


class VideoManifest(_ClipDataset):
    """Labelled videos listed in a CSV file with a header `path,label[,start,end]` plus any other columns; items are
    (clip (T, C, H, W), label int).

    Relative paths are resolved against `root`, else the CSV's folder. `start`/`end` (seconds, optional, empty =
    the file's start/end) bound where the item's clips are cut: the same file may appear on several rows with
    different segments. An `end` past the file's end is the file's end; a `start` past it is an error. Extra
    columns are kept for `column` (e.g. a subject id for group splits). A missing listed file counts as unreadable;
    rows of skipped files are dropped from `labels` and `column` alike. Other arguments as in `VideoFiles`.

    Args:
        path: the manifest.
        root: folder that relative paths start from; None = the CSV's folder.
        class_names: the classes in label order; None = every label of the manifest, sorted (taken before bad
            files are skipped, so the mapping does not depend on which files are readable).

    Attributes:
        class_names, labels: as `VideoFolder`. columns: the manifest's columns.

    Raises:
        FileNotFoundError: the manifest is missing.
        ValueError: a missing path or label column, an empty path or label cell, a bad start/end, a label not in
            `class_names`.
    """

    def __init__(
        self,
        path: str | Path,
        num_frames: int,
        stride: int,
        size: Size,
        channels: int = 3,
        train: bool = False,
        sampling: Sampling = "stride",
        seed: int | None = None,
        skip_bad: bool = False,
        root: str | Path | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.csv_path = Path(path)
        self.columns, rows = read_manifest(self.csv_path, "VideoManifest")
        for column in ("path", "label"):
            self._check_column(column)
        if not rows:
            raise ValueError(f"VideoManifest: {self.csv_path} lists no files")
        base = Path(root) if root is not None else self.csv_path.parent
        files: list[Path] = []
        segments: list[tuple[float, float | None]] = []
        for line, row in enumerate(rows, start=2):
            where = f"VideoManifest: {self.csv_path} line {line}"
            for column in ("path", "label"):
                if not row[column]:
                    raise ValueError(f"{where}: empty {column!r}")
            files.append(Path(row["path"]) if Path(row["path"]).is_absolute() else base / row["path"])
            start = _seconds(row.get("start", ""), "start", where) or 0.0
            end = _seconds(row.get("end", ""), "end", where)
            if end is not None and end <= start:
                raise ValueError(f"{where}: end ({end:g} s) must be after start ({start:g} s)")
            segments.append((start, end))
        names = sorted({row["label"] for row in rows}) if class_names is None else list(class_names)
        ids = {name: i for i, name in enumerate(names)}
        require(len(ids) == len(names), self, "class_names", "has duplicate names")
        if unknown := sorted({row["label"] for row in rows} - ids.keys()):
            raise ValueError(f"VideoManifest: {self.csv_path} has labels not in class_names: {unknown[:10]}")
        self.class_names = names
        super().__init__(files, num_frames, stride, size, channels, train, sampling, seed, skip_bad, segments)
        self._rows = [rows[i] for i in self._kept]
        self.labels: list[int] = [ids[row["label"]] for row in self._rows]

    def _check_column(self, name: str) -> None:
        if name not in self.columns:
            columns = _columns(self.columns)
            raise ValueError(f"VideoManifest: {self.csv_path} has no column {name!r}; its columns are {columns}")

    def column(self, name: str) -> list[str]:
        """The manifest column `name`, one string per item (in item order, skipped files left out)."""
        self._check_column(name)
        return [row[name] for row in self._rows]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = self._index(index)
        return self._clip(index), self.labels[index]
