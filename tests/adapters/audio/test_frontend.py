"""The Kaldi log-mel filterbank front end (`mmsdk.adapters.audio.frontend`) against torchaudio's Kaldi fbank,
with padded batches, ONNX export (dynamic batch and samples) and torch.compile.

The speech fixture is one second of CMU ARCTIC (tests/fixtures/audio, licence next to it).

Float32 note used by the ONNX test: a float32 FFT's error on a bin is about eps times the whole frame's norm, not
the bin's own magnitude, so a log-mel bin that holds a tiny share of its frame's energy (the narrow low bins after
DC removal and pre-emphasis, or a white-noise frame whose one or two FFT bins there happen to be near zero) can
differ between two FFT implementations by far more than 1e-4 in log. The conditioned comparison is therefore in
energy, relative to the frame's total; in log only on bins holding a non-negligible share of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor

from mmsdk.adapters.audio.frontend import Fbank, FbankConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
SPEECH = FIXTURES / "arctic_a0007_excerpt.flac"
LOG_EPS = math.log(torch.finfo(torch.float32).eps)


@pytest.fixture(scope="module")
def kaldi() -> Any:
    return pytest.importorskip("torchaudio.compliance.kaldi")


@pytest.fixture(scope="module")
def speech() -> Tensor:
    """(16000,) float32 in [-1, 1): one second of 16 kHz speech."""
    soundfile = pytest.importorskip("soundfile")
    data, rate = soundfile.read(SPEECH, dtype="float32")
    assert rate == 16000 and data.shape == (16000,)
    return torch.from_numpy(data)


def noise(num_samples: int, seed: int = 0, scale: float = 0.1) -> Tensor:
    return scale * torch.randn(num_samples, generator=torch.Generator().manual_seed(seed))


def reference(kaldi: Any, wave: Tensor, config: FbankConfig) -> Tensor:
    """torchaudio's Kaldi fbank of one clip with the options the config stands for (SSAST's call for defaults)."""
    if config.subtract_clip_mean:
        wave = wave - wave.mean()
    return kaldi.fbank(
        wave.unsqueeze(0),
        htk_compat=True,
        sample_frequency=config.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=config.num_mel_bins,
        dither=0.0,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
        low_freq=config.low_freq,
        high_freq=config.high_freq,
        preemphasis_coefficient=config.preemphasis,
        remove_dc_offset=config.remove_dc_offset,
    )  # (F, M)


def single(model: Fbank, wave: Tensor) -> Tensor:
    features, num_frames = model(wave.unsqueeze(0))
    assert features.dtype == torch.float32 and num_frames.dtype == torch.long
    assert num_frames.tolist() == [features.shape[1]]
    return features[0]  # (F, M)


# ---------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("case", ["speech", "noise", "silence", "partial_frame"])
def test_matches_torchaudio_kaldi_fbank_with_ssast_options(kaldi: Any, speech: Tensor, case: str) -> None:
    wave = {
        "speech": speech,
        "noise": noise(16000),
        "silence": torch.zeros(16000),
        "partial_frame": torch.cat([speech, noise(77, seed=1)]),  # 16077 samples: 98 frames and 37 samples over
    }[case]
    model = Fbank()
    got, want = single(model, wave), reference(kaldi, wave, FbankConfig())
    assert got.shape == want.shape == (model.config.num_frames(len(wave)), 128)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
    if case == "silence":
        torch.testing.assert_close(got, torch.full_like(got, LOG_EPS), atol=0, rtol=0)
    else:  # real signal: most bins well above the floor
        assert (got > LOG_EPS + 1).float().mean() > 0.9


@pytest.mark.parametrize("case", ["speech", "noise", "silence", "partial_frame"])
def test_the_exported_matmul_spectrum_matches_torchaudio_too(kaldi: Any, speech: Tensor, case: str) -> None:
    wave = {"speech": speech, "noise": noise(16000), "silence": torch.zeros(16000)}.get(case)
    wave = torch.cat([speech, noise(77, seed=1)]) if wave is None else wave
    model = Fbank()
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):  # the path ONNX export traces
        got = single(model, wave)
    torch.testing.assert_close(got, reference(kaldi, wave, FbankConfig()), atol=1e-3, rtol=0)
    eager = single(model, wave)
    torch.testing.assert_close(got, eager, atol=1e-3, rtol=0)
    assert case == "silence" or not torch.equal(got, eager)  # the other path ran (float32 rounding differs)


@pytest.mark.parametrize("fft_size", [400, 512])
def test_fft_and_matmul_power_spectra_agree(fft_size: int) -> None:
    config = FbankConfig(frame_length_ms=fft_size / 16.0)  # a 400-sample window pads to 512; 512 needs no padding
    model = Fbank(config)
    frames = torch.randn(3, 7, config.window_samples, generator=torch.Generator().manual_seed(0))
    fft, matmul = model.power_spectrum(frames, "fft"), model.power_spectrum(frames, "matmul")
    assert fft.shape == matmul.shape == (3, 7, config.fft_size // 2 + 1)
    total = fft.sum(-1, keepdim=True)  # (3, 7, 1): errors relative to each frame's energy
    assert ((fft - matmul).abs() / total).max() < 1e-6
    with pytest.raises(ValueError, match="method must be 'fft' or 'matmul'"):
        model.power_spectrum(frames, "dft")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"num_mel_bins": 64},
        {"sample_rate": 8000},
        {"preemphasis": 0.0},
        {"frame_length_ms": 32.0, "frame_shift_ms": 16.0},  # 512-sample window: no FFT padding
        {"low_freq": 300.0, "high_freq": -400.0, "num_mel_bins": 40},
        {"remove_dc_offset": False},
        {"remove_dc_offset": False, "subtract_clip_mean": False},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_matches_torchaudio_with_non_default_options(kaldi: Any, speech: Tensor, changes: dict[str, Any]) -> None:
    config = FbankConfig(**changes)
    wave = speech[::2] if config.sample_rate == 8000 else speech  # parity needs no anti-aliasing
    wave = wave + 0.05  # a DC offset, so the clip-mean and DC options matter
    got, want = single(Fbank(config), wave), reference(kaldi, wave, config)
    assert got.shape == want.shape == (config.num_frames(len(wave)), config.num_mel_bins)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)


def test_clip_mean_changes_features_without_frame_dc_removal(speech: Tensor) -> None:
    """Guards the test above: with remove_dc_offset=False the clip mean is not a no-op."""
    wave = (speech + 0.05).unsqueeze(0)
    with_mean = Fbank(FbankConfig(remove_dc_offset=False))(wave)[0]
    without = Fbank(FbankConfig(remove_dc_offset=False, subtract_clip_mean=False))(wave)[0]
    assert (with_mean - without).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("remove_dc_offset", [True, False])
def test_padded_batch_matches_each_clip_alone(speech: Tensor, remove_dc_offset: bool) -> None:
    """NaN padding after each clip's length never leaks; real frames equal the unpadded clip's frames."""
    model = Fbank(FbankConfig(remove_dc_offset=remove_dc_offset))
    clips = [speech + 0.2, noise(12345, seed=3) - 0.1, speech[:400], noise(7777, seed=4), speech[:399]]
    T = max(len(c) for c in clips)
    batch = torch.full((len(clips), T), float("nan"))
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    lengths = torch.tensor([len(c) for c in clips])
    features, num_frames = model(batch, lengths)
    assert features.shape == (len(clips), model.config.num_frames(T), 128)
    assert num_frames.tolist() == [model.config.num_frames(len(c)) for c in clips] == [98, 75, 1, 47, 0]
    assert torch.isfinite(features).all()
    for i, clip in enumerate(clips[:-1]):
        alone = single(model, clip)
        torch.testing.assert_close(features[i, : num_frames[i]], alone, atol=1e-5, rtol=0)


def test_lengths_none_means_every_sample_is_real(speech: Tensor) -> None:
    model = Fbank()
    batch = torch.stack([speech, noise(16000)])
    full, frames = model(batch, torch.tensor([16000, 16000]))
    none, frames_none = model(batch)
    assert frames.tolist() == frames_none.tolist() == [98, 98]
    torch.testing.assert_close(full, none, atol=1e-5, rtol=0)


def test_other_float_dtypes_compute_in_float32(speech: Tensor) -> None:
    model = Fbank()
    want = single(model, speech)
    got = model(speech.double().unsqueeze(0))[0][0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_leaves_the_features_in_float32(speech: Tensor, dtype: torch.dtype) -> None:
    """Mixed-precision training (`precision: bf16-mixed`) must see the features evaluation and export see: under
    autocast the mel matmul ran in bf16 and the log-mel features moved by up to 0.036."""
    model = Fbank()
    want = model(speech.unsqueeze(0))[0]
    with torch.autocast("cpu", dtype=dtype):
        got = model(speech.unsqueeze(0))[0]
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(speech.unsqueeze(0))[0]
    assert got.dtype == compiled.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(compiled, want, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------- config, buffers


def test_config_frame_arithmetic() -> None:
    config = FbankConfig()
    assert (config.window_samples, config.shift_samples, config.fft_size) == (400, 160, 512)
    assert [config.num_frames(n) for n in (0, 399, 400, 559, 560, 16000, 16077)] == [0, 0, 1, 1, 2, 98, 98]
    config8k = FbankConfig(sample_rate=8000)
    assert (config8k.window_samples, config8k.shift_samples, config8k.fft_size) == (200, 80, 256)
    assert FbankConfig.from_dict(config.to_dict()) == config
    assert FbankConfig().mel_high_freq == 8000.0 and FbankConfig(high_freq=-400.0).mel_high_freq == 7600.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sample_rate": 0}, "sample_rate: must be a positive int"),
        ({"num_mel_bins": 2}, "num_mel_bins: must be an int >= 3"),
        ({"frame_length_ms": 0.1}, "frame_length_ms: must give a window of at least 2 samples"),
        ({"frame_shift_ms": 0.0}, "frame_shift_ms: must give a shift of at least 1 sample"),
        ({"low_freq": 8000.0}, r"low_freq: must be in \[0, Nyquist=8000\)"),
        ({"high_freq": 9000.0}, "high_freq: gives an upper edge of 9000 Hz"),
        ({"high_freq": -7990.0}, "high_freq: gives an upper edge of 10 Hz"),
        ({"preemphasis": 1.5}, r"preemphasis: must be in \[0, 1\]"),
        ({"remove_dc_offset": 1}, "remove_dc_offset: expected a bool"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"FbankConfig.{message}"):
        FbankConfig(**changes)


def test_window_and_mel_matrix_are_buffers_outside_the_state_dict() -> None:
    model = Fbank(FbankConfig(num_mel_bins=64))
    buffers = dict(model.named_buffers())
    assert set(buffers) == {"window", "mel_matrix", "dft_basis"}
    assert buffers["window"].shape == (400,) and buffers["mel_matrix"].shape == (257, 64)
    assert buffers["dft_basis"].shape == (400, 2 * 257)
    assert model.state_dict() == {}
    model.load_state_dict({}, strict=True)
    model.double()  # buffers follow the module; the math stays float32
    assert model.mel_matrix.dtype == torch.float64 and model(torch.zeros(1, 400))[0].dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- export, compile


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*axis name.*:UserWarning")
def test_onnx_export_matches_eager_with_dynamic_batch_and_samples(tmp_path: Path, speech: Tensor) -> None:
    model = Fbank().eval()
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=400)
    example = (torch.stack([speech, noise(16000)]), torch.tensor([16000, 9000]))
    program = torch.onnx.export(
        model,
        example,
        dynamo=True,
        dynamic_shapes=({0: batch, 1: samples}, {0: batch}),
        input_names=["waveform", "lengths"],
        output_names=["features", "num_frames"],
        verbose=False,
    )
    path = tmp_path / "fbank.onnx"
    program.save(str(path))
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "DFT" not in ops and "MatMul" in ops  # the traced graph takes the DFT-as-matmul path
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    padded = torch.cat([speech, torch.full((8000,), float("nan"))])
    cases = [
        (
            torch.stack([padded, noise(24000, seed=5), torch.cat([noise(20000, seed=6), padded[-4000:]])]),
            [16000, 24000, 20000],
        ),
        (noise(16077, seed=7).unsqueeze(0), [16077]),
        (speech[:400].unsqueeze(0), [400]),
    ]
    for wave, lengths in cases:
        lengths = torch.tensor(lengths)
        got, got_frames = session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want, want_frames = model(wave, lengths)
        assert got.shape == tuple(want.shape) and got.dtype == np.float32
        np.testing.assert_array_equal(got_frames, want_frames.numpy())
        assert np.isfinite(got).all()
        real = torch.arange(want.shape[1])[None, :] < want_frames[:, None]  # (B, F)
        got, want = torch.from_numpy(got)[real], want[real]  # (frames, M)
        energy, want_energy = got.exp(), want.exp()
        frame_energy = want_energy.sum(-1, keepdim=True)  # (frames, 1)
        assert ((energy - want_energy).abs() / frame_energy).max() < 1e-6  # measured ~1e-7
        share = want_energy / frame_energy
        torch.testing.assert_close(got[share >= 1e-5], want[share >= 1e-5], atol=1e-4, rtol=0)  # measured ~2e-5


def test_torch_compile_fullgraph(speech: Tensor) -> None:
    model = Fbank()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for wave, lengths in [(torch.stack([speech, noise(16000)]), [16000, 9000]), (noise(20077).unsqueeze(0), [20077])]:
        lengths = torch.tensor(lengths)
        got, got_frames = compiled(wave, lengths)
        want, want_frames = model(wave, lengths)
        assert got_frames.tolist() == want_frames.tolist()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("waveform", "lengths", "message"),
    [
        (torch.zeros(16000), None, r"must be a batch of mono clips \(B, T\), got rank 1 .*unsqueeze\(0\)"),
        (torch.zeros(2, 1, 16000), None, r"must be a batch of mono clips \(B, T\), got rank 3 shape \(2, 1, 16000\)"),
        (torch.zeros(2, 399), None, "T=399 samples, fewer than one 25.0 ms frame; need at least 400 samples"),
        (torch.zeros(2, 16000, dtype=torch.int16), None, "must be floating point"),
        (np.zeros((2, 16000), dtype=np.float32), None, "must be a torch.Tensor"),
        (torch.zeros(2, 16000), torch.tensor([16000.0, 100.0]), "lengths must be an int64"),
        (torch.zeros(2, 16000), torch.tensor([16000]), r"lengths must be \(B,\) = \(2,\)"),
        (torch.zeros(2, 16000), torch.tensor([16001, 100]), r"lengths must be in \[0, T=16000\]"),
        (torch.zeros(2, 16000), torch.tensor([-1, 100]), r"lengths must be in \[0, T=16000\]"),
    ],
)
def test_bad_inputs_raise(waveform: Any, lengths: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fbank()(waveform, lengths)
