"""Audio datasets: unlabelled folders for pretraining, class folders and CSV manifests for fine-tuning, a
group-disjoint split (`splits`) and waveform mixup (`mixup`) live beside them.

Items are clips of exactly `clip_samples` float32 samples at `sample_rate` (`io.load_audio`: mono mixdown,
resampling), cropped from longer files, NaN-padded at the end of shorter ones. Files are decoded lazily, so a corpus
of any size fits; `cache=True` keeps decoded clips in memory (per DataLoader worker).

Bad files: construction reads every header once (nothing decoded), which finds missing files, non-audio files
(text renamed .wav), empty files and malformed headers. By default (`skip_bad=False`) the first of them raises
`AudioFileError` (its message counts the others); a file that fails only when decoded (corrupt or cut data, NaN/Inf
samples) raises `AudioFileError` naming it when its item is loaded. `skip_bad=True` decodes every file at
construction instead and drops unreadable ones with ONE warning counting them and naming the first few. Silent and
clipped files are kept; clipped, truncated, resampled, multi-channel and too short files are each reported once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsdk.adapters.audio.io import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    AudioHeader,
    AudioInfo,
    _read,
    find_audio_files,
    fit_length,
    probe_audio,
    resampled_length,
)
from mmsdk.config import require
from mmsdk.contracts.data import read_manifest

__all__ = [
    "CLIPPED_FILE_FRACTION",
    "AudioFiles",
    "AudioFolder",
    "AudioManifest",
]

logger = logging.getLogger(__name__)

Crop = Literal["random", "center", "start"]

CLIPPED_FILE_FRACTION = 1e-3
"""A file counts as clipped when more than this share of its samples sits at full scale (`io.CLIP_LEVEL`); a
peak-normalised file touches full scale at a handful of samples, which is not clipping."""

_NAMED = 3  # files named in a summary warning
_NOTES = {
    "clipped": f"clipped (over {100 * CLIPPED_FILE_FRACTION:g}% of samples at full scale), kept",
    "truncated": "truncated (fewer samples than the header says), the samples there are used",
}


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _columns(columns: Sequence[str]) -> str:
    """A manifest's column names for messages, each cut to 40 characters (the first 20)."""
    cut = [c if len(c) <= 40 else f"{c[:37]}..." for c in columns[:20]]
    return f"{cut}" + (f" (+{len(columns) - 20} more)" if len(columns) > 20 else "")


def _some(items: Sequence[object]) -> str:
    more = f" and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
    return ", ".join(str(x) for x in items[:_NAMED]) + more


def _check_index(dataset: Any, index: int) -> int:
    """`index` in [0, len) (negative ones count from the end), or IndexError."""
    if not -len(dataset) <= index < len(dataset):
        raise IndexError(f"{type(dataset).__name__}: index {index} out of range for {len(dataset)} items")
    return index % len(dataset)


def _item_rng(seed: int | None, index: int) -> np.random.Generator:
    """Fixed per (seed, index) when seeded; else drawn from torch's RNG, which DataLoader seeds per worker/epoch."""
    if seed is not None:
        return np.random.default_rng([seed, index])
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class _ClipDataset(Dataset):
    """Probing, bad-file handling, caching and cropping shared by the datasets (arguments as in `AudioFiles`)."""

    def __init__(
        self,
        files: Sequence[Path],
        sample_rate: int,
        clip_samples: int,
        crop: Crop,
        seed: int | None,
        min_samples: int,
        skip_bad: bool,
        cache: bool,
    ) -> None:
        require(sample_rate > 0, self, "sample_rate", f"must be > 0 Hz, got {sample_rate}")
        require(clip_samples >= 1, self, "clip_samples", f"must be >= 1, got {clip_samples}")
        require(crop in ("random", "center", "start"), self, "crop", f"must be random, center or start, got {crop!r}")
        bounds = f"must be in [0, clip_samples={clip_samples}], got {min_samples}"
        require(0 <= min_samples <= clip_samples, self, "min_samples", bounds)
        self.sample_rate, self.clip_samples, self.crop, self.seed = sample_rate, clip_samples, crop, seed
        self.min_samples, self.skip_bad = min_samples, skip_bad
        self.noticed: dict[str, set[Path]] = {"clipped": set(), "truncated": set(), "silent": set()}
        self._warned = set(_NOTES) if skip_bad else set()  # kinds of `_NOTES` reported (all, with skip_bad)
        self._cache: dict[int, Tensor] | None = {} if cache else None
        self._kept = self._probe(list(files))

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _probe(self, files: list[Path]) -> list[int]:
        """Checks every file (header, or a full decode with skip_bad), sets `files`/`headers`, returns the kept ones."""
        kept: list[int] = []
        headers: list[AudioHeader] = []
        infos: list[AudioInfo] = []
        clips: list[Tensor] = []
        bad: list[AudioFileError] = []
        for position, path in enumerate(files):
            try:
                header = probe_audio(path)
                if self.skip_bad:
                    clip, info = _read(path, self.sample_rate)
                    infos.append(info)
                    clips.append(clip)
            except AudioFileError as err:
                bad.append(err)
                continue
            kept.append(position)
            headers.append(header)
        if bad and not self.skip_bad:
            more = f" (and {_files(len(bad) - 1)} more)" if len(bad) > 1 else ""
            hint = f"{more}; construct {self._name} with skip_bad=True to skip unreadable files"
            raise AudioFileError(bad[0].path, bad[0].reason + hint) from bad[0]
        if bad:
            named = _some([f"{err.path} ({err.reason})" for err in bad])
            logger.warning(
                "%s: skipped %s of %d that cannot be read: %s", self._name, _files(len(bad)), len(files), named
            )
        if not kept:
            raise ValueError(f"{self._name}: none of the {_files(len(files))} could be read as audio")
        self.files: list[Path] = [files[i] for i in kept]
        self.headers: list[AudioHeader] = headers
        if self._cache is not None:
            self._cache.update(enumerate(clips))
        self._summarize(headers, infos)
        return kept

    def _summarize(self, headers: list[AudioHeader], infos: list[AudioInfo]) -> None:
        """One log line per kind of notable file: resampled, mixed down, short, and (after a full read) clipped,
        truncated and silent."""
        rates = Counter(h.sample_rate for h in headers if h.sample_rate != self.sample_rate)
        if rates:
            parts = ", ".join(f"{_files(n)} at {rate} Hz" for rate, n in sorted(rates.items()))
            logger.info("%s: %s resampled to %d Hz", self._name, parts, self.sample_rate)
        if multi := sum(h.channels > 1 for h in headers):
            logger.info("%s: %s with several channels mixed down to mono", self._name, _files(multi))
        if infos:
            lengths = [info.num_samples for info in infos]
        else:
            lengths = [resampled_length(h.frames, h.sample_rate, self.sample_rate) for h in headers]
        if short := sum(n < self.min_samples for n in lengths):
            note = "shorter than min_samples=%d are zero-padded to it (then NaN-padded)"
            logger.warning("%s: %s " + note, self._name, _files(short), self.min_samples)
        for info in infos:
            self._record(info)
        for kind in [k for k in _NOTES if k in self._warned]:  # with skip_bad every file was read: one warning each
            if paths := sorted(self.noticed[kind]):
                logger.warning("%s: %s %s: %s", self._name, _files(len(paths)), _NOTES[kind], _some(paths))
        if silent := len(self.noticed["silent"]):
            logger.debug("%s: %s entirely silent (kept)", self._name, _files(silent))

    def _record(self, info: AudioInfo) -> list[str]:
        """Adds a decoded file to `noticed`; returns the kinds ("clipped", "truncated") it is newly noticed as."""
        flags = {"clipped": info.clipped_fraction > CLIPPED_FILE_FRACTION, "truncated": info.truncated}
        new = [kind for kind, flag in flags.items() if flag and info.path not in self.noticed[kind]]
        for kind in [*new, "silent"] if info.silent else new:
            self.noticed[kind].add(info.path)
        return new

    def _load(self, index: int) -> Tensor:
        path = self.files[index]
        try:
            clip, info = _read(path, self.sample_rate)
        except AudioFileError as err:
            hint = "" if self.skip_bad else "; construct with skip_bad=True to drop unreadable files up front"
            raise AudioFileError(path, f"{err.reason} (item {index} of {self._name}{hint})") from err
        for kind in self._record(info):  # one warning per kind and dataset; later files at debug level
            if kind in self._warned:
                logger.debug("%s: %s is %s", self._name, path, kind)
            else:
                self._warned.add(kind)
                logger.warning("%s: %s %s (later ones: .noticed[%r])", self._name, path, _NOTES[kind], kind)
        return clip

    def __len__(self) -> int:
        return len(self.files)

    def _index(self, index: int) -> int:
        return _check_index(self, index)

    def _clip(self, index: int) -> Tensor:
        """The item's clip: decoded (or cached), zero-padded to min_samples, cropped or NaN-padded to clip_samples."""
        clip = self._cache.get(index) if self._cache is not None else None
        if clip is None:
            clip = self._load(index)
            if self._cache is not None:
                self._cache[index] = clip
        if clip.shape[0] < self.min_samples:
            clip = torch.cat([clip, clip.new_zeros(self.min_samples - clip.shape[0])])
        generator = None
        if self.seed is not None and self.crop == "random":
            generator = torch.Generator().manual_seed(int(_item_rng(self.seed, index).integers(0, 2**62)))
        return fit_length(clip, self.clip_samples, self.crop, generator)


class AudioFiles(_ClipDataset):
    """Unlabelled audio for pretraining: every audio file under the given folders (recursively) or given directly.

    Items are clips (clip_samples,) float32 at `sample_rate`, NaN-padded at the end when the file is shorter. Folder
    contents are sorted (a deterministic order); hidden files and files whose extension is not in
    `io.AUDIO_EXTENSIONS` are ignored (counted at debug level). Files named directly are used whatever their
    extension. Bad files: see the module docstring (default: the first unreadable header raises `AudioFileError`).

    Args:
        paths_or_folders: one folder or file, or a sequence of them.
        sample_rate: rate of the clips in Hz; other files are resampled (one info line counts them).
        clip_samples: samples per clip.
        crop: where longer files are cut: "random" (training), "center" or "start".
        seed: None = random crops drawn from torch's RNG (new every epoch; DataLoader seeds it per worker); an int
            fixes each item's crop (reproducible evaluation).
        min_samples: files shorter than this (after resampling) are zero-padded to it before the NaN padding, so a
            model whose smallest patch needs that many samples still sees a real one; one warning counts them.
        skip_bad: decode every file at construction and drop unreadable ones with one warning (costs a full read).
        cache: keep decoded (resampled, unpadded) clips in memory after their first read.

    Attributes:
        files: the files in item order. headers: their `io.AudioHeader`s.
        noticed: files seen so far to be "clipped", "truncated" or "silent" (all of them with skip_bad).

    Raises:
        FileNotFoundError: a given file or folder does not exist.
        ValueError: no audio files, or none readable.
        AudioFileError: an unreadable file (without skip_bad).
    """

    def __init__(
        self,
        paths_or_folders: str | Path | Sequence[str | Path],
        sample_rate: int,
        clip_samples: int,
        crop: Crop = "random",
        seed: int | None = None,
        min_samples: int = 0,
        skip_bad: bool = False,
        cache: bool = False,
    ) -> None:
        sources = [paths_or_folders] if isinstance(paths_or_folders, (str, Path)) else list(paths_or_folders)
        require(len(sources) > 0, self, "paths_or_folders", "needs at least one file or folder")
        files = find_audio_files(sources)
        if not files:
            where = ", ".join(str(s) for s in sources)
            raise ValueError(f"AudioFiles: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {where}")
        super().__init__(files, sample_rate, clip_samples, crop, seed, min_samples, skip_bad, cache)

    def __getitem__(self, index: int) -> Tensor:
        return self._clip(self._index(index))


class AudioFolder(_ClipDataset):
    """Labelled audio laid out as `root/<class_name>/**/<file>`; items are (clip (clip_samples,) float32, label int).

    Labels index `class_names`: the sorted sub-folder names of `root` (hidden ones excluded), or the given list, to
    share one mapping between a train and a test root. Each class folder is searched recursively as in
    `AudioFiles`; audio files directly in `root` belong to no class and are ignored with a warning. A class folder
    without audio files logs a warning. Other arguments, bad-file handling and attributes as in `AudioFiles`.

    Attributes:
        class_names: class of each label id. labels: label id of each item.

    Raises:
        FileNotFoundError: `root` or a listed class folder is missing.
        ValueError: no class folders, or no (readable) audio files.
    """

    def __init__(
        self,
        root: str | Path,
        sample_rate: int,
        clip_samples: int,
        crop: Crop = "random",
        class_names: Sequence[str] | None = None,
        seed: int | None = None,
        min_samples: int = 0,
        skip_bad: bool = False,
        cache: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"AudioFolder: folder not found: {self.root}")
        if class_names is None:
            class_names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise ValueError(f"AudioFolder: {self.root} has no class folders (expected root/<class_name>/<files>)")
        if loose := [p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]:
            logger.warning("AudioFolder: %s directly in %s, in no class folder, ignored", _files(len(loose)), self.root)
        self.class_names = list(class_names)
        files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.class_names):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"AudioFolder: class folder not found: {folder}")
            found = find_audio_files(folder)
            if not found:
                logger.warning("AudioFolder: class folder %s has no audio files", folder)
            files += found
            labels += [label] * len(found)
        if not files:
            raise ValueError(f"AudioFolder: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {self.root}")
        super().__init__(files, sample_rate, clip_samples, crop, seed, min_samples, skip_bad, cache)
        self.labels: list[int] = [labels[i] for i in self._kept]

    def column(self, name: str) -> list[str]:
        """Per item: "path" (the file) or "label" (the class name), as a manifest's columns."""
        if name == "path":
            return [str(p) for p in self.files]
        if name == "label":
            return [self.class_names[label] for label in self.labels]
        raise ValueError(f"AudioFolder: no column {name!r}; a folder has the columns ['path', 'label']")

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = self._index(index)
        return self._clip(index), self.labels[index]


class AudioManifest(_ClipDataset):
    """Labelled audio listed in a CSV file with a header, e.g. `path,label,speaker`; items are (clip, target).

    The target is the label id (int) or, with `multilabel=True` (tagging), a multi-hot float32 (C,) tensor of the
    row's labels, which are separated by `label_separator` (an empty cell = no tag). Relative paths are resolved
    against `root`, or else the CSV's folder. Extra columns are kept for `column` (e.g. speakers for `group_split`).
    Other arguments, bad-file handling (a missing listed file counts as unreadable) and attributes as in
    `AudioFiles`; rows of skipped files are dropped from `labels` and `column` alike.

    Args:
        csv_path: the manifest.
        root: folder relative paths start from; None = the CSV's folder.
        path_column, label_column: the columns holding the file and its label(s).
        class_names: the classes in label order; None = every label in the manifest, sorted (taken before bad
            files are skipped, so the mapping does not depend on which files are readable).
        multilabel: targets are multi-hot vectors of several labels per row.
        label_separator: separates the labels of a row when `multilabel`.

    Attributes:
        class_names: class of each label id. labels: per item, the label id (or, multilabel, the list of ids).
        columns: the manifest's columns.

    Raises:
        FileNotFoundError: the manifest is missing.
        ValueError: a missing column, an empty path or (single-label) label cell, a label not in `class_names`.
    """

    def __init__(
        self,
        csv_path: str | Path,
        sample_rate: int,
        clip_samples: int,
        root: str | Path | None = None,
        path_column: str = "path",
        label_column: str = "label",
        class_names: Sequence[str] | None = None,
        multilabel: bool = False,
        label_separator: str = ";",
        crop: Crop = "random",
        seed: int | None = None,
        min_samples: int = 0,
        skip_bad: bool = False,
        cache: bool = False,
    ) -> None:
        self.csv_path = Path(csv_path)
        self.columns, rows = read_manifest(self.csv_path, "AudioManifest")
        self.multilabel = multilabel
        for column in (path_column, label_column):
            self._check_column(column)
        if not rows:
            raise ValueError(f"AudioManifest: {self.csv_path} lists no files")
        base = Path(root) if root is not None else self.csv_path.parent
        files: list[Path] = []
        tokens: list[list[str]] = []
        for line, row in enumerate(rows, start=2):
            where = f"AudioManifest: {self.csv_path} line {line}"
            if not (cell := row[path_column].strip()):
                raise ValueError(f"{where}: empty {path_column!r}")
            files.append(Path(cell) if Path(cell).is_absolute() else base / cell)
            label = row[label_column].strip()
            if not multilabel and not label:
                raise ValueError(f"{where}: empty {label_column!r}")
            names = [t.strip() for t in label.split(label_separator)] if multilabel else [label]
            tokens.append(list(dict.fromkeys(t for t in names if t)))
        self.class_names = list(class_names) if class_names is not None else sorted({t for ts in tokens for t in ts})
        ids = {name: i for i, name in enumerate(self.class_names)}
        require(len(ids) == len(self.class_names), self, "class_names", "has duplicate names")
        if unknown := sorted({t for ts in tokens for t in ts} - ids.keys()):
            raise ValueError(f"AudioManifest: {self.csv_path} has labels not in class_names: {unknown[:10]}")
        super().__init__(files, sample_rate, clip_samples, crop, seed, min_samples, skip_bad, cache)
        self._rows = [rows[i] for i in self._kept]
        kept_ids = [[ids[t] for t in tokens[i]] for i in self._kept]
        self.labels: list[Any] = kept_ids if multilabel else [label_ids[0] for label_ids in kept_ids]

    def _check_column(self, name: str) -> None:
        if name not in self.columns:
            columns = _columns(self.columns)
            raise ValueError(f"AudioManifest: {self.csv_path} has no column {name!r}; its columns are {columns}")

    def column(self, name: str) -> list[str]:
        """The manifest column `name`, one string per item (in item order, skipped files left out)."""
        self._check_column(name)
        return [row[name] for row in self._rows]

    def __getitem__(self, index: int) -> tuple[Tensor, int | Tensor]:
        index = self._index(index)
        if not self.multilabel:
            return self._clip(index), self.labels[index]
        target = torch.zeros(len(self.class_names), dtype=torch.float32)
        target[self.labels[index]] = 1.0
        return self._clip(index), target
