"""Audio file reading (formats, mixdown, resampling, every bad input), clip fitting and mixing."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.audio.io import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    find_audio_files,
    fit_length,
    load_audio,
    mix_clips,
    probe_audio,
    resampled_length,
)

sf = pytest.importorskip("soundfile")
pytest.importorskip("torchaudio")


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, rate: int = 16000, **kwargs: str) -> Path:
    sf.write(str(path), data, rate, **kwargs)
    return path


def _can_write(fmt: str) -> bool:
    return fmt in sf.available_formats()


# ----------------------------------------------------------------------------------------------------- good files


def test_mono_wav_round_trip(tmp_path: Path) -> None:
    data = _tone(0.5, 16000)
    clip, info = load_audio(_write(tmp_path / "a.wav", data, subtype="PCM_16"), 16000)
    assert clip.dtype == torch.float32 and clip.shape == (8000,)
    np.testing.assert_allclose(clip.numpy(), data, atol=1 / 32768 + 1e-7)
    assert info.path == tmp_path / "a.wav" and info.sample_rate == 16000 and info.channels == 1
    assert info.num_samples == 8000 and not info.resampled and not info.truncated
    assert info.clipped_fraction == 0.0 and not info.silent


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_files_are_mixed_down_to_the_mean(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(0)
    data = (0.3 * rng.standard_normal((4000, channels))).astype(np.float32)
    clip, info = load_audio(_write(tmp_path / "multi.wav", data, subtype="FLOAT"))
    assert info.channels == channels and clip.shape == (4000,)
    np.testing.assert_allclose(clip.numpy(), data.mean(axis=1), atol=1e-6)


def test_other_rates_are_resampled_keeping_the_pitch(tmp_path: Path) -> None:
    clip, info = load_audio(_write(tmp_path / "cd.wav", _tone(1.0, 44100, freq=1000.0), 44100), 16000)
    assert info.sample_rate == 44100 and info.resampled and info.num_samples == 16000 == clip.shape[0]
    spectrum = np.abs(np.fft.rfft(clip.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / clip.shape[0] - 1000.0) <= 2.0
    _, native = load_audio(tmp_path / "cd.wav")  # no rate asked: the file's own
    assert native.num_samples == 44100 and not native.resampled


CONTAINERS = [
    ("a.flac", "FLAC", None),
    ("a.ogg", "OGG", None),
    ("a.aiff", "AIFF", None),
    ("a.mp3", "MP3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize(("name", "fmt", "subtype"), CONTAINERS)
def test_compressed_and_other_containers(tmp_path: Path, name: str, fmt: str, subtype: str | None) -> None:
    if not _can_write(fmt):
        pytest.skip(f"this libsndfile has no {fmt}")
    data = _tone(0.5, 16000)
    try:
        path = _write(tmp_path / name, data, format=fmt, **({"subtype": subtype} if subtype else {}))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:  # pragma: no cover - libsndfile build dependent
        pytest.skip(f"this libsndfile cannot write {fmt}: {err}")
    assert Path(name).suffix in AUDIO_EXTENSIONS
    clip, info = load_audio(path, 16000)
    assert info.channels == 1 and abs(clip.shape[0] - 8000) <= 1200  # lossy codecs add encoder delay / padding
    assert 0.3 < float(clip.abs().max()) < 0.7


def test_clipped_fraction_and_silence(tmp_path: Path) -> None:
    data = _tone(0.1, 16000, amp=0.2)
    data[:40] = 1.0
    data[40:60] = -1.0
    _, info = load_audio(_write(tmp_path / "loud.wav", data, subtype="FLOAT"))
    assert info.clipped_fraction == pytest.approx(60 / 1600)
    _, quiet = load_audio(_write(tmp_path / "zeros.wav", np.zeros(800, np.float32)))
    assert quiet.silent and quiet.clipped_fraction == 0.0


def test_probe_reads_the_header(tmp_path: Path) -> None:
    header = probe_audio(_write(tmp_path / "s.flac", np.zeros((300, 2), np.float32), 22050))
    assert (header.sample_rate, header.channels, header.frames, header.format) == (22050, 2, 300, "FLAC")


@pytest.mark.parametrize(("n", "orig", "new"), [(44100, 44100, 16000), (1000, 44100, 16000), (777, 8000, 16000)])
def test_resampled_length_matches_torchaudio(n: int, orig: int, new: int) -> None:
    import torchaudio.functional

    assert resampled_length(n, orig, new) == torchaudio.functional.resample(torch.zeros(n), orig, new).shape[0]


# ------------------------------------------------------------------------------------------------------ bad files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nope\.wav: file not found") as err:
        load_audio(tmp_path / "nope.wav")
    assert err.value.path == tmp_path / "nope.wav" and isinstance(err.value, ValueError)
    with pytest.raises(AudioFileError, match="not found"):
        probe_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n" * 20, b"RIFF\x10\x00\x00\x00WAVEfmt "])
def test_non_audio_empty_and_malformed_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.wav"
    path.write_bytes(content)
    for read in (load_audio, probe_audio):
        with pytest.raises(AudioFileError, match=r"fake\.wav") as err:
            read(path)
        assert isinstance(err.value.__cause__, sf.SoundFileError)


def test_header_without_samples(tmp_path: Path) -> None:
    path = _write(tmp_path / "none.wav", np.zeros(0, np.float32))
    for read in (load_audio, probe_audio):
        with pytest.raises(AudioFileError, match=r"none\.wav: the file has no audio samples"):
            read(path)


@pytest.mark.parametrize(("bad", "what"), [(np.nan, "1 NaN and 0 Inf"), (np.inf, "0 NaN and 1 Inf")])
def test_nan_and_inf_samples(tmp_path: Path, bad: float, what: str) -> None:
    data = _tone(0.1, 16000)
    data[100] = bad
    with pytest.raises(AudioFileError, match=rf"float\.wav: the file has {what} samples"):
        load_audio(_write(tmp_path / "float.wav", data, subtype="FLOAT"))


def test_cut_wav_gives_the_samples_there_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """libsndfile opens a WAV whose data chunk was cut and reports only the frames present (its log notes the
    mismatch): the clip is that prefix and a warning names the file."""
    data = _tone(1.0, 16000)
    raw = _write(tmp_path / "full.wav", data, subtype="PCM_16").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[: len(raw) // 2 + 1])  # odd byte count: half a sample dangles
    with caplog.at_level(logging.WARNING, logger="mmsdk.adapters.audio.io"):
        clip, info = load_audio(cut, 16000)
    assert info.truncated and clip.shape[0] == probe_audio(cut).frames == (len(raw) // 2 + 1 - 44) // 2  # 44 B header
    np.testing.assert_allclose(clip.numpy(), data[: clip.shape[0]], atol=1 / 32768 + 1e-7)
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "cut.wav: truncated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmsdk.adapters.audio.io"):
        assert not load_audio(tmp_path / "full.wav")[1].truncated
    assert not caplog.records


def test_cut_mp3_decodes_what_is_there(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if not _can_write("MP3"):
        pytest.skip("this libsndfile has no mp3")
    raw = _write(tmp_path / "a.mp3", _tone(1.0, 16000), format="MP3", subtype="MPEG_LAYER_III").read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(raw[: len(raw) // 2])
    assert probe_audio(cut).frames >= 16000  # the header still announces the whole second
    with caplog.at_level(logging.WARNING, logger="mmsdk.adapters.audio.io"):
        clip, info = load_audio(cut)
    assert info.truncated and 0 < clip.shape[0] < 14000 and "cut.mp3: truncated" in caplog.text


def test_cut_flac_fails_to_decode(tmp_path: Path) -> None:
    raw = _write(tmp_path / "a.flac", _tone(1.0, 16000)).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(raw[: len(raw) // 2])
    assert probe_audio(cut).frames == 16000  # the header is intact; decoding is not
    with pytest.raises(AudioFileError, match=r"cut\.flac: cannot decode") as err:
        load_audio(cut)
    assert isinstance(err.value.__cause__, sf.SoundFileError)


def test_bad_sample_rate_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate must be a positive"):
        load_audio(_write(tmp_path / "a.wav", _tone(0.1, 16000)), 0)


def test_importing_io_needs_neither_soundfile_nor_torchaudio() -> None:
    code = (
        "import sys; sys.modules['soundfile'] = None; sys.modules['torchaudio'] = None\n"
        "import mmsdk.adapters.audio.io as io, torch\n"
        "assert io.fit_length(torch.ones(3), 5, 'start').isnan().sum() == 2"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


# ---------------------------------------------------------------------------------------------------- clip tools


def test_fit_length_crops() -> None:
    clip = torch.arange(10, dtype=torch.float32)
    assert fit_length(clip, 4, "start").tolist() == [0, 1, 2, 3]
    assert fit_length(clip, 4, "center").tolist() == [3, 4, 5, 6]
    assert fit_length(clip, 5, "center").tolist() == [2, 3, 4, 5, 6]  # odd excess: the earlier window
    starts = {int(fit_length(clip, 4, "random", torch.Generator().manual_seed(s))[0]) for s in range(60)}
    assert starts == set(range(7))  # every offset 0..6, never past the end
    seeded = [fit_length(clip, 4, "random", torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])


def test_fit_length_pads_with_nan_and_copies() -> None:
    clip = torch.tensor([0.5, -0.5, 0.25])
    out = fit_length(clip, 6, "random")
    assert out.shape == (6,) and out[:3].tolist() == [0.5, -0.5, 0.25] and out[3:].isnan().all()
    same = fit_length(clip, 3, "start")
    same[0] = 9.0
    assert clip[0] == 0.5  # a new tensor, not a view
    cropped = fit_length(torch.zeros(10), 4, "start")
    cropped += 1
    assert cropped.sum() == 4


@pytest.mark.parametrize(
    ("clip", "n", "crop", "match"),
    [
        (torch.zeros(2, 5), 3, "start", "1-D"),
        (torch.zeros(5), 0, "start", "num_samples"),
        (torch.zeros(5), 3, "end", "crop"),
    ],
)
def test_fit_length_rejects_bad_arguments(clip: torch.Tensor, n: int, crop: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_length(clip, n, crop)  # type: ignore[arg-type]


def test_mix_clips_treats_padding_as_silence_where_the_other_is_real() -> None:
    nan = float("nan")
    a = torch.tensor([1.0, 1.0, 1.0, nan, nan, nan])
    b = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, nan])
    out = mix_clips(a, b, 0.25)
    torch.testing.assert_close(out[:5], torch.tensor([1.75, 1.75, 1.75, 1.5, 1.5]))
    assert out[5].isnan()  # padding only where both are
    with pytest.raises(ValueError, match="one shape"):
        mix_clips(a, b[:4], 0.5)


def test_find_audio_files(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["b/deep/z.wav", "b/a.FLAC", "c.mp3", "notes.txt", "._c.wav", ".hidden/h.wav", "noext"]:
        (tmp_path / rel).write_bytes(b"x")
    found = find_audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b/a.FLAC", "b/deep/z.wav", "c.mp3"]
    again = find_audio_files([tmp_path / "b", tmp_path, tmp_path / "notes.txt"])  # overlap listed once
    assert [p.name for p in again] == ["a.FLAC", "z.wav", "c.mp3", "notes.txt"]  # a named file is kept as is
    with pytest.raises(FileNotFoundError, match="missing"):
        find_audio_files(tmp_path / "missing")
