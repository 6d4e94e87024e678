"""Spectrogram tokens from raw waveforms: patches against a convolution reference, positions, padding invariance,
SpecAugment only while training, folding back, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmsdk.adapters.audio.spectrogram import SpectrogramConfig, fold_patches, spec_augment
from mmsdk.adapters.audio.ssast import SSASTAdapter
from mmsdk.contracts.heads import HeadConfig
from mmsdk.models import TaskModel
from mmsdk.models.config import ModelConfig

SMALL = {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64}


def _adapter(**changes: object) -> SSASTAdapter:
    return SSASTAdapter(SSASTAdapter.config_class.from_dict({**SMALL, **changes}), dim=16)


def _task_model(**changes: object) -> TaskModel:
    config = ModelConfig.from_dict(
        {"adapter": "ssast", "adapter_config": {**SMALL, **changes}, "encoder": {"dim": 16, "depth": 2, "heads": 2}}
    )
    return TaskModel(config, HeadConfig(task="classification", num_outputs=3)).eval()


@pytest.mark.parametrize("stride", [None, 5])
def test_patches_equal_a_strided_convolution_and_are_time_major(stride: int | None) -> None:
    adapter = _adapter(stride_freq=stride, stride_time=stride)
    wave = adapter.example_input(2, torch.Generator().manual_seed(0))
    batch = adapter.tokenize(wave)
    x = batch.context["spectrogram"]  # (B, F, M)
    sf, st = adapter.config.stride
    weight = adapter.embed.weight.reshape(16, 1, 8, 8)  # a (freq, time) kernel per output channel
    conv = F.conv2d(x.transpose(1, 2)[:, None], weight, adapter.embed.bias, stride=(sf, st))  # (B, D, Nf, Nt)
    expected = conv.permute(0, 3, 2, 1).reshape(2, -1, 16)  # time-major: token = t * Nf + f
    torch.testing.assert_close(batch.tokens, expected, atol=1e-5, rtol=1e-5)
    nf = adapter.config.freq_tokens
    assert batch.num_tokens == nf * ((x.shape[1] - 8) // st + 1)
    f, t = batch.positions[0, :, 0], batch.positions[0, :, 1]
    torch.testing.assert_close(f[:nf], torch.arange(nf) * sf / 8)
    torch.testing.assert_close(t[::nf], torch.arange(batch.num_tokens // nf) * st / 8)
    torch.testing.assert_close(
        batch.targets,
        F.unfold(x.transpose(1, 2)[:, None], 8, stride=(sf, st))
        .transpose(1, 2)
        .reshape(2, nf, -1, 64)
        .transpose(1, 2)
        .reshape(2, -1, 64),
    )


@pytest.mark.parametrize("stride", [None, 4])
def test_fold_patches_inverts_patching(stride: int | None) -> None:
    adapter = _adapter(stride_freq=stride, stride_time=stride)
    batch = adapter.tokenize(adapter.example_input(2, torch.Generator().manual_seed(1)))
    x = batch.context["spectrogram"]
    folded = fold_patches(batch.targets, x.shape[1], adapter.config)
    covered = ~torch.isnan(folded)
    torch.testing.assert_close(folded[covered], x[covered])
    assert covered[:, : (x.shape[1] // 8) * 8 if stride is None else 8].all()  # every frame a whole patch reaches
    torch.testing.assert_close(
        adapter.decode(batch.targets, batch)[covered],
        (x * 2 * adapter.config.norm_std + adapter.config.norm_mean)[covered],
    )


def test_a_nan_padded_clip_gives_the_output_of_the_clip_alone() -> None:
    model = _task_model()
    g = torch.Generator().manual_seed(2)
    clip = model.backbone.adapter.example_input(1, g)  # (1, T)
    padded = torch.cat([clip, torch.full((1, 2345), float("nan"))], dim=1)
    other = model.backbone.adapter.example_input(1, g)
    batch = torch.cat([padded, torch.cat([other, torch.randn(1, 2345) * 0.1], dim=1)])  # a full second clip
    with torch.no_grad():
        alone, together = model(clip), model(batch)
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
    tokens = model.backbone.adapter.tokenize(batch)
    assert tokens.padding_mask is not None and not tokens.padding_mask[0].all() and tokens.padding_mask[1].all()


def test_positions_interpolate_for_overlapping_strides_and_any_length() -> None:
    adapter = _adapter(stride_freq=4, stride_time=4)
    positions = adapter.build_positions(16)
    batch = adapter.tokenize(adapter.example_input(1))
    grid = positions(batch.positions)  # (1, N, D)
    table = positions.table.detach()  # (Nf_ref, Nt_ref, D) over the non-overlapping patch grid
    nf = adapter.config.freq_tokens
    torch.testing.assert_close(grid[0, 0], table[0, 0])
    torch.testing.assert_close(grid[0, 1], (table[0, 0] + table[1, 0]) / 2)  # frequency 4 bins = half a patch
    torch.testing.assert_close(grid[0, nf], (table[0, 0] + table[0, 1]) / 2)  # time 4 frames = half a patch


def test_spec_augment_runs_only_in_training_mode() -> None:
    adapter = _adapter(freq_mask=8, time_mask=8)
    wave = adapter.example_input(4, torch.Generator().manual_seed(3))
    adapter.eval()
    plain, _ = adapter.spectrogram(wave)
    again, _ = adapter.spectrogram(wave)
    torch.testing.assert_close(plain, again)
    adapter.train()
    torch.manual_seed(0)
    augmented, _ = adapter.spectrogram(wave)
    zeroed = (augmented == 0) & (plain != 0)
    assert zeroed.any()
    torch.testing.assert_close(augmented[~zeroed], plain[~zeroed])
    x = torch.ones(3, 20, 10)
    out = spec_augment(x, torch.tensor([20, 12, 5]), 4, 6)
    bands = (out == 0).all(dim=1)  # (B, M) mel bins zeroed in every frame
    runs = (out == 0).all(dim=2)  # (B, F) frames zeroed in every bin
    assert (bands.sum(1) <= 4).all() and (runs.sum(1) <= 6).all()
    assert not runs[1, 12:].any() and not runs[2, 5:].any()  # time masks stay inside the real frames


def test_bad_waveforms_raise_clear_errors() -> None:
    adapter = _adapter()
    with pytest.raises(ValueError, match=r"batch \(B, T\).*unsqueeze"):
        adapter.tokenize(torch.zeros(4000))
    with pytest.raises(ValueError, match="mix channels down"):
        adapter.tokenize(torch.zeros(2, 2, 4000))
    with pytest.raises(ValueError, match="floating point"):
        adapter.tokenize(torch.zeros(2, 4000, dtype=torch.int16))
    inner = torch.zeros(2, 4000)
    inner[1, 100] = float("nan")
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\] have NaN samples before their end"):
        adapter.tokenize(inner)
    short = torch.zeros(1, 4000)
    short[0, 1000:] = float("nan")
    with pytest.raises(ValueError, match=r"1000 real samples.*one patch of 8 frames = 1520 samples"):
        adapter.tokenize(short)
    with pytest.raises(ValueError, match="max_frames=64"):
        adapter.tokenize(torch.zeros(1, 16000))
    inf = torch.zeros(1, 4000)
    inf[0, 5] = float("inf")
    with pytest.raises(ValueError, match="Inf"):
        adapter.tokenize(inf)


def test_silence_tokenizes_to_finite_values() -> None:
    batch = _adapter().tokenize(torch.zeros(2, 4000))
    assert torch.isfinite(batch.tokens).all() and torch.isfinite(batch.targets).all()


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="stride_freq"):
        SpectrogramConfig(patch_freq=8, stride_freq=9)
    with pytest.raises(ValueError, match="norm_std"):
        SpectrogramConfig(norm_std=0.0)
    with pytest.raises(ValueError, match="freq_mask"):
        SpectrogramConfig(freq_mask=128)
    frames = SpectrogramConfig(tokens="frame")
    assert frames.patch_size == (128, 2) and frames.freq_tokens == 1
