"""Audio datasets: folder corpora, class folders, CSV manifests, bad files, group splits and mixup."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import mmsdk.adapters.audio.datasets as datasets
from mmsdk.adapters.audio.datasets import AudioFiles, AudioFolder, AudioManifest
from mmsdk.adapters.audio.io import AudioFileError
from mmsdk.adapters.audio.mixup import Mixup
from mmsdk.adapters.audio.splits import group_split

sf = pytest.importorskip("soundfile")
pytest.importorskip("torchaudio")

LOGGER = "mmsdk.adapters.audio.datasets"
SR = 16000


def _tone(n: int, rate: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def _write(path: Path, data: np.ndarray, rate: int = SR, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype if path.suffix == ".wav" else None)
    return path


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == LOGGER]


def _cut_flac(path: Path) -> Path:
    raw = _write(path.with_name("whole.flac"), _tone(SR)).read_bytes()
    path.with_name("whole.flac").unlink()
    path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A mixed folder: nested files, a 44.1 kHz file, a stereo file, a short file, a text file and a hidden file."""
    root = tmp_path / "corpus"
    _write(root / "a.wav", np.linspace(-0.5, 0.5, 2000, dtype=np.float32))
    _write(root / "sub" / "b.wav", _tone(3000))
    _write(root / "sub" / "deep" / "c.flac", _tone(4410, 44100), 44100)
    _write(root / "stereo.wav", np.stack([_tone(2500), -_tone(2500)], axis=1))
    _write(root / "short.wav", _tone(300))
    (root / "readme.txt").write_text("not audio")
    (root / "._a.wav").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return root


# ---------------------------------------------------------------------------------------------------- AudioFiles


def test_audio_files_scans_sorted_and_fits_every_clip(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        ds = AudioFiles(corpus, SR, 1000, crop="start")
    assert [p.relative_to(corpus).as_posix() for p in ds.files] == [
        "a.wav",
        "short.wav",
        "stereo.wav",
        "sub/b.wav",
        "sub/deep/c.flac",
    ]
    assert _messages(caplog, logging.INFO) == [
        "AudioFiles: 1 file at 44100 Hz resampled to 16000 Hz",
        "AudioFiles: 1 file with several channels mixed down to mono",
    ]
    assert not _messages(caplog, logging.WARNING)
    items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (1000,) and x.dtype == torch.float32 for x in items)
    short = items[1]
    assert not short[:300].isnan().any() and short[300:].isnan().all()  # NaN padding at the end
    assert not any(x.isnan().any() for i, x in enumerate(items) if i != 1)
    assert items[2].abs().max() < 1e-6  # stereo of opposite channels mixes down to silence
    torch.testing.assert_close(ds[-1], items[-1])


def test_audio_files_takes_several_sources_and_named_files(corpus: Path, tmp_path: Path) -> None:
    extra = _write(tmp_path / "extra.wav", _tone(500))
    ds = AudioFiles([corpus / "sub", extra], SR, 800)
    assert [p.name for p in ds.files] == ["b.wav", "c.flac", "extra.wav"]
    with pytest.raises(FileNotFoundError, match="missing"):
        AudioFiles(tmp_path / "missing", SR, 800)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="no audio files"):
        AudioFiles(tmp_path / "empty", SR, 800)


def test_audio_files_is_lazy_and_scales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for i in range(650):
        _write(tmp_path / f"d{i // 100}" / f"{i:03d}.wav", (0.1 * rng.standard_normal(64)).astype(np.float32))
    decoded: list[Path] = []
    real_read = datasets._read

    def counting_read(path: Path, rate: int | None) -> tuple[torch.Tensor, object]:
        decoded.append(Path(path))
        return real_read(path, rate)

    monkeypatch.setattr(datasets, "_read", counting_read)
    ds = AudioFiles(tmp_path, SR, 64, cache=True)
    assert len(ds) == 650 and not decoded  # construction reads headers only
    batch = next(iter(DataLoader(ds, batch_size=32, shuffle=False)))
    assert batch.shape == (32, 64) and len(decoded) == 32
    ds[0]
    assert len(decoded) == 32  # cached
    plain = AudioFiles(tmp_path, SR, 64)
    plain[0], plain[0]
    assert len(decoded) == 34  # without cache every access decodes


def test_crops_are_random_or_fixed_by_seed(tmp_path: Path) -> None:
    ramp = np.arange(4000, dtype=np.float32) / 4000
    _write(tmp_path / "ramp.wav", ramp)
    seeded = [AudioFiles(tmp_path, SR, 500, seed=7)[0] for _ in range(2)]
    torch.testing.assert_close(seeded[0], seeded[1])
    starts = {round(float(AudioFiles(tmp_path, SR, 500, seed=s)[0][0]) * 4000) for s in range(8)}
    assert len(starts) > 3 and all(0 <= s <= 3500 for s in starts)
    unseeded = AudioFiles(tmp_path, SR, 500)
    assert len({float(unseeded[0][0]) for _ in range(8)}) > 3  # a new crop per access
    assert float(AudioFiles(tmp_path, SR, 500, crop="center")[0][0]) * 4000 == pytest.approx(1750)
    assert float(AudioFiles(tmp_path, SR, 500, crop="start")[0][0]) == 0.0


def test_short_files_are_zero_padded_to_min_samples(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = AudioFiles(corpus, SR, 4000, crop="start", min_samples=2400)
    assert _messages(caplog, logging.WARNING) == [
        "AudioFiles: 3 files shorter than min_samples=2400 are zero-padded to it (then NaN-padded)"
    ]  # a.wav (2000), short.wav (300) and c.flac (4410 at 44.1 kHz = 1600); stereo.wav has 2500
    short = ds[ds.files.index(corpus / "short.wav")]
    assert not short[:300].eq(0).all() and short[300:2400].eq(0).all() and short[2400:].isnan().all()
    with pytest.raises(ValueError, match="min_samples"):
        AudioFiles(corpus, SR, 1000, min_samples=2000)


def test_silent_files_are_kept_as_zeros(tmp_path: Path) -> None:
    _write(tmp_path / "silence.wav", np.zeros(1000, np.float32))
    ds = AudioFiles(tmp_path, SR, 1000, skip_bad=True)
    assert ds[0].eq(0).all() and ds.noticed["silent"] == {tmp_path / "silence.wav"}


def test_bad_arguments(corpus: Path) -> None:
    with pytest.raises(ValueError, match=r"AudioFiles\.crop"):
        AudioFiles(corpus, SR, 1000, crop="end")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"AudioFiles\.sample_rate"):
        AudioFiles(corpus, 0, 1000)
    with pytest.raises(IndexError, match="out of range"):
        AudioFiles(corpus, SR, 1000)[5]


# ------------------------------------------------------------------------------------------------------ bad files


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    _write(root / "good1.wav", _tone(1000))
    _write(root / "good2.wav", _tone(1000))
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is text, not a RIFF file\n" * 5)
    return root


def test_unreadable_headers_raise_at_construction_by_default(bad_corpus: Path) -> None:
    with pytest.raises(AudioFileError, match=r"empty\.wav: .*\(and 1 file more\); construct AudioFiles with skip_bad"):
        AudioFiles(bad_corpus, SR, 1000)


def test_skip_bad_drops_unreadable_files_with_one_warning(bad_corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    nan = _tone(1000)
    nan[10] = np.nan
    _write(bad_corpus / "nan.wav", nan)
    _cut_flac(bad_corpus / "cut.flac")
    for i in range(3):
        (bad_corpus / f"z{i}.mp3").write_bytes(b"ID3 junk")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = AudioFiles(bad_corpus, SR, 1000, skip_bad=True)
    assert [p.name for p in ds.files] == ["good1.wav", "good2.wav"]
    (warning,) = _messages(caplog, logging.WARNING)
    assert warning.startswith("AudioFiles: skipped 7 files of 9 that cannot be read: ")
    assert "cut.flac (cannot decode" in warning and "empty.wav (not a readable" in warning
    assert "nan.wav (the file has 1 NaN" in warning and warning.endswith(" and 4 more")


def test_files_that_fail_to_decode_raise_naming_them_on_load(tmp_path: Path) -> None:
    nan = _tone(1000)
    nan[-1] = np.nan
    _write(tmp_path / "a_nan.wav", nan)
    _cut_flac(tmp_path / "b_cut.flac")
    _write(tmp_path / "c_good.wav", _tone(1000))
    ds = AudioFiles(tmp_path, SR, 1000)  # headers are fine
    assert len(ds) == 3 and ds[2].shape == (1000,)
    with pytest.raises(AudioFileError, match=r"a_nan\.wav: the file has 1 NaN .*item 0 of AudioFiles.*skip_bad"):
        ds[0]
    with pytest.raises(AudioFileError, match=r"b_cut\.flac: cannot decode") as err:
        ds[1]
    assert err.value.path == tmp_path / "b_cut.flac"


def test_nothing_readable(bad_corpus: Path) -> None:
    for name in ("good1.wav", "good2.wav"):
        (bad_corpus / name).unlink()
    with pytest.raises(ValueError, match="none of the 2 files could be read"):
        AudioFiles(bad_corpus, SR, 1000, skip_bad=True)


def test_truncated_and_clipped_files_are_kept_and_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loud = _tone(2000, amp=3.0).clip(-1, 1)
    for name in ("clip1.wav", "clip2.wav"):
        _write(tmp_path / name, loud, subtype="PCM_16")
    peak = _tone(2000, amp=0.3)
    peak[700] = 1.0
    _write(tmp_path / "peak.wav", peak)  # peak-normalised: full scale at a single sample, not clipped
    raw = _write(tmp_path / "whole.wav", _tone(4000), subtype="PCM_16").read_bytes()
    (tmp_path / "whole.wav").unlink()
    (tmp_path / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        lazy = AudioFiles(tmp_path, SR, 2000, crop="start")
        assert not caplog.records
        for _ in range(2):
            items = [lazy[i] for i in range(len(lazy))]
    assert not any(x[:1900].isnan().any() for x in items)
    assert _messages(caplog, logging.WARNING) == [
        f"AudioFiles: {tmp_path / 'clip1.wav'} clipped (over 0.1% of samples at full scale), kept "
        "(later ones: .noticed['clipped'])",
        f"AudioFiles: {tmp_path / 'trunc.wav'} truncated (fewer samples than the header says), the samples there "
        "are used (later ones: .noticed['truncated'])",
    ]
    assert lazy.noticed["clipped"] == {tmp_path / "clip1.wav", tmp_path / "clip2.wav"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        eager = AudioFiles(tmp_path, SR, 2000, skip_bad=True)
        eager[0]
    assert len(eager) == 4 and _messages(caplog, logging.WARNING) == [
        f"AudioFiles: 2 files clipped (over 0.1% of samples at full scale), kept: {tmp_path / 'clip1.wav'}, "
        f"{tmp_path / 'clip2.wav'}",
        f"AudioFiles: 1 file truncated (fewer samples than the header says), the samples there are used: "
        f"{tmp_path / 'trunc.wav'}",
    ]


# --------------------------------------------------------------------------------------------------- AudioFolder


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    root = tmp_path / "classes"
    for label, (name, freq) in enumerate([("dog", 300.0), ("bird", 3000.0), ("cat", 800.0)]):
        for i in range(label + 1):
            _write(root / name / ("nested" if i else "") / f"{name}{i}.wav", _tone(1200, freq=freq))
    return root


def test_audio_folder_labels_follow_sorted_class_folders(classes: Path, caplog: pytest.LogCaptureFixture) -> None:
    (classes / ".git").mkdir()
    (classes / "empty").mkdir()
    _write(classes / "loose.wav", _tone(100))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = AudioFolder(classes, SR, 1000, crop="start")
    assert ds.class_names == ["bird", "cat", "dog", "empty"]
    assert ds.labels == [0, 0, 1, 1, 1, 2]  # bird has 2 files, cat 3, dog 1
    assert ds.column("label") == ["bird", "bird", "cat", "cat", "cat", "dog"]
    assert ds.column("path")[0].endswith("bird0.wav")
    assert any("loose.wav" not in m and "1 file directly in" in m for m in _messages(caplog, logging.WARNING))
    assert any("class folder" in m and m.rstrip().endswith("has no audio files") for m in caplog.messages)
    clip, label = ds[5]
    assert clip.shape == (1000,) and label == 2
    x, y = next(iter(DataLoader(ds, batch_size=6)))
    assert x.shape == (6, 1000) and y.tolist() == ds.labels
    with pytest.raises(ValueError, match=r"no column 'speaker'; a folder has the columns \['path', 'label'\]"):
        ds.column("speaker")


def test_audio_folder_given_class_names(classes: Path) -> None:
    ds = AudioFolder(classes, SR, 1000, class_names=["dog", "cat"])
    assert ds.labels == [0, 1, 1, 1] and [p.parent.name for p in ds.files][:1] == ["dog"]
    with pytest.raises(FileNotFoundError, match="class folder not found"):
        AudioFolder(classes, SR, 1000, class_names=["dog", "cow"])
    with pytest.raises(FileNotFoundError, match="folder not found"):
        AudioFolder(classes / "nope", SR, 1000)


def test_audio_folder_skip_bad_keeps_labels_aligned(classes: Path) -> None:
    (classes / "bird" / "broken.wav").write_text("text")
    ds = AudioFolder(classes, SR, 1000, skip_bad=True)
    assert len(ds) == 6 and ds.labels == [0, 0, 1, 1, 1, 2]
    assert all(p.name != "broken.wav" for p in ds.files)


# ------------------------------------------------------------------------------------------------- AudioManifest


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    rows = ["path,label,speaker"]
    for i, (label, speaker) in enumerate([("yes", "s1"), ("no", "s1"), ("yes", "s2"), ("maybe", "s3")]):
        _write(audio / f"{i}.wav", _tone(800 + 100 * i))
        rows.append(f"audio/{i}.wav,{label},{speaker}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "train.csv"


def test_manifest_paths_labels_and_columns(manifest: Path) -> None:
    ds = AudioManifest(manifest, SR, 1000)
    assert ds.class_names == ["maybe", "no", "yes"] and ds.labels == [2, 1, 2, 0]
    assert ds.files[0] == manifest.parent / "audio" / "0.wav"
    assert ds.column("speaker") == ["s1", "s1", "s2", "s3"]
    clip, label = ds[3]
    assert clip.shape == (1000,) and clip[:1100].isnan().sum() == 0 and label == 0
    with pytest.raises(ValueError, match=r"no column 'gender'; its columns are \['path', 'label', 'speaker'\]"):
        ds.column("gender")
    fixed = AudioManifest(manifest, SR, 1000, class_names=["yes", "no", "maybe", "unused"])
    assert fixed.labels == [0, 1, 0, 2]


def test_manifest_root_and_column_names(tmp_path: Path, manifest: Path) -> None:
    other = tmp_path / "elsewhere.csv"
    other.write_text("file,tag\n0.wav,yes\n/" + str(manifest.parent / "audio" / "1.wav").lstrip("/") + ",no\n")
    ds = AudioManifest(other, SR, 1000, root=manifest.parent / "audio", path_column="file", label_column="tag")
    assert ds.files == [manifest.parent / "audio" / "0.wav", manifest.parent / "audio" / "1.wav"]
    with pytest.raises(ValueError, match=r"has no column 'path'; its columns are \['file', 'tag'\]"):
        AudioManifest(other, SR, 1000)


def test_manifest_multilabel_targets(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / f"{i}.wav", _tone(500))
    (tmp_path / "tags.csv").write_text("path,label\n0.wav,dog; bark\n1.wav,\n2.wav,bark;bark\n")
    ds = AudioManifest(tmp_path / "tags.csv", SR, 500, multilabel=True)
    assert ds.class_names == ["bark", "dog"] and ds.labels == [[1, 0], [], [0]]
    targets = torch.stack([ds[i][1] for i in range(3)])
    assert targets.dtype == torch.float32 and targets.tolist() == [[1, 1], [0, 0], [1, 0]]


def test_manifest_errors(tmp_path: Path, manifest: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\naudio/0.wav,\n")
    with pytest.raises(ValueError, match="line 2: empty 'label'"):
        AudioManifest(bad, SR, 1000)
    bad.write_text("path,label\n,yes\n")
    with pytest.raises(ValueError, match="line 2: empty 'path'"):
        AudioManifest(bad, SR, 1000)
    with pytest.raises(ValueError, match=r"labels not in class_names: \['maybe', 'no'\]"):
        AudioManifest(manifest, SR, 1000, class_names=["yes"])
    bad.write_text("path,label\n")
    with pytest.raises(ValueError, match="lists no files"):
        AudioManifest(bad, SR, 1000)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        AudioManifest(tmp_path / "none.csv", SR, 1000)


def test_manifest_missing_or_bad_files(manifest: Path, caplog: pytest.LogCaptureFixture) -> None:
    (manifest.parent / "audio" / "1.wav").unlink()
    with pytest.raises(AudioFileError, match=r"1\.wav: file not found; construct AudioManifest with skip_bad"):
        AudioManifest(manifest, SR, 1000)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = AudioManifest(manifest, SR, 1000, skip_bad=True)
    assert ds.class_names == ["maybe", "no", "yes"]  # the mapping keeps the label of the skipped row
    assert ds.labels == [2, 2, 0] and ds.column("speaker") == ["s1", "s2", "s3"]
    assert len(_messages(caplog, logging.WARNING)) == 1


# --------------------------------------------------------------------------------------------------- group_split


def test_group_split_keeps_groups_whole_and_matches_fractions() -> None:
    rng = np.random.default_rng(0)
    groups = [f"spk{g}" for g in range(60) for _ in range(int(rng.integers(2, 9)))]
    train, val, test = group_split(groups, (0.7, 0.15, 0.15), seed=1)
    assert sorted(train + val + test) == list(range(len(groups)))
    names = [{groups[i] for i in split} for split in (train, val, test)]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    for split, fraction in zip((train, val, test), (0.7, 0.15, 0.15)):
        assert abs(len(split) - fraction * len(groups)) <= 8  # within one group's size
    assert group_split(groups, (0.7, 0.15, 0.15), seed=1) == (train, val, test)
    assert group_split(groups, (0.7, 0.15, 0.15), seed=2) != (train, val, test)


def test_group_split_edge_cases() -> None:
    assert group_split(["a", "a", "b", "c"], (0.5, 0.5, 0.0), seed=0)[2] == []
    train, val, test = group_split(["a"] * 10 + ["b", "c"], (0.8, 0.1, 0.1), seed=0)
    assert train == list(range(10)) and len(val) == len(test) == 1  # every split with a share gets a group
    with pytest.raises(ValueError, match="2 groups cannot fill 3 non-empty splits"):
        group_split(["a", "b", "a"], (0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="summing to 1"):
        group_split(["a", "b"], (0.8, 0.8, 0.1))
    with pytest.raises(ValueError, match="no items"):
        group_split([], (1.0, 0.0, 0.0))


# --------------------------------------------------------------------------------------------------------- Mixup


class _Items(Dataset):
    def __init__(self, items: list[tuple[torch.Tensor, object]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, object]:
        return self.items[index]


def _padded(value: float, real: int, total: int = 10) -> torch.Tensor:
    clip = torch.full((total,), float("nan"))
    clip[:real] = value
    return clip


def test_mixup_mixes_clips_and_targets() -> None:
    a, b = _padded(1.0, 4), _padded(-2.0, 7)
    mix = Mixup(_Items([(a, 0), (b, 2)]), num_classes=3, prob=1.0, seed=0)
    clip, target = mix[0]
    lam = float(target[0])
    assert 0 < lam < 1 and target[1] == 0 and target.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(target[2], torch.tensor(1 - lam))
    torch.testing.assert_close(clip[:4], torch.full((4,), lam - 2 * (1 - lam)))
    torch.testing.assert_close(clip[4:7], torch.full((3,), -2 * (1 - lam)))  # a's padding counts as silence
    assert clip[7:].isnan().all()  # padding only where both are padding
    again = Mixup(_Items([(a, 0), (b, 2)]), num_classes=3, prob=1.0, seed=0)[0]
    torch.testing.assert_close(again[1], target)


def test_mixup_off_gives_float_one_hot_and_batches_collate(classes: Path) -> None:
    folder = AudioFolder(classes, SR, 1000)
    plain = Mixup(folder, num_classes=3, prob=0.0)
    _, target = plain[2]
    assert target.dtype == torch.float32 and target.tolist() == [0.0, 1.0, 0.0]
    x, y = next(iter(DataLoader(Mixup(folder, num_classes=3, seed=0), batch_size=6)))
    assert x.shape == (6, 1000) and y.shape == (6, 3) and y.sum(1).allclose(torch.ones(6))
    assert 0 < (y.max(1).values < 1).sum() < 6  # with prob 0.5 some items are mixed, some not


def test_mixup_lambda_follows_beta_alpha() -> None:
    items = _Items([(torch.zeros(4), 0), (torch.zeros(4), 1)])
    lam = np.array([float(Mixup(items, 2, prob=1.0, seed=s)[0][1][0]) for s in range(300)])
    assert abs(lam.mean() - 0.5) < 0.03 and 0.07 < lam.std() < 0.15  # Beta(10, 10): std 0.109
    wide = np.array([float(Mixup(items, 2, alpha=0.2, prob=1.0, seed=s)[0][1][0]) for s in range(300)])
    assert wide.std() > 0.3


def test_mixup_multilabel_and_bad_labels() -> None:
    items = _Items([(torch.ones(4), torch.tensor([1.0, 1.0, 0.0])), (torch.ones(4), torch.tensor([0.0, 0.0, 1.0]))])
    clip, target = Mixup(items, 3, prob=1.0, seed=3)[1]
    lam = float(target[2])
    torch.testing.assert_close(target, torch.tensor([1 - lam, 1 - lam, lam]))
    torch.testing.assert_close(clip, torch.ones(4))
    with pytest.raises(ValueError, match="label 5 out of range"):
        Mixup(_Items([(torch.ones(4), 5)]), 3)[0]
    with pytest.raises(ValueError, match="target has 3 classes, num_classes is 2"):
        Mixup(items, 2)[0]
    with pytest.raises(ValueError, match=r"Mixup\.alpha"):
        Mixup(items, 3, alpha=0.0)
