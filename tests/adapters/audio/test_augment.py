"""Waveform augmentation: speed perturbation moves pitch by the factor, time shift moves the sound, NaN padding is
respected, draws are reproducible when seeded, and the recipe data applies it to training clips only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.audio.augment import WaveAugment, change_speed, shift_clip
from mmsdk.adapters.audio.recipe_data import AudioDataConfig
from mmsdk.contracts.data import build_data
from mmsdk.models.config import ModelConfig

RATE = 16000


def _tone(hz: float, samples: int = RATE) -> torch.Tensor:
    return torch.sin(2 * torch.pi * hz * torch.arange(samples) / RATE)


def _peak_hz(clip: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(clip.numpy()))
    return float(np.argmax(spectrum) * RATE / clip.shape[0])


@pytest.mark.parametrize("factor", [0.85, 1.0, 1.12])
def test_change_speed_scales_pitch_and_duration_by_the_factor(factor: float) -> None:
    fast = change_speed(_tone(440.0), factor, RATE)
    assert abs(fast.shape[0] - RATE / factor) <= 1
    assert _peak_hz(fast) == pytest.approx(440.0 * factor, abs=2.0)
    assert torch.isfinite(fast).all()


def test_shift_clip_moves_samples_and_fills_with_silence() -> None:
    clip = torch.arange(1.0, 11.0)
    torch.testing.assert_close(shift_clip(clip, 3), torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0]))
    torch.testing.assert_close(shift_clip(clip, -2), torch.tensor([3, 4, 5, 6, 7, 8, 9, 10, 0, 0.0]))
    assert shift_clip(clip, 0) is not clip and torch.equal(shift_clip(clip, 0), clip)
    assert torch.equal(shift_clip(clip, 12), torch.zeros(10))


def test_augmented_items_keep_length_targets_and_the_padding_rule() -> None:
    padded = torch.cat([_tone(300.0, 12000), torch.full((4000,), float("nan"))])  # 0.75 s of sound in a 1 s clip
    items = [(padded, 2), (_tone(500.0), 1)]
    augment = WaveAugment(items, RATE, speed=0.2, shift_seconds=0.05, seed=0)
    for index, (clip, label) in enumerate(items):
        out, out_label = augment[index]
        assert out.shape == clip.shape and out_label == label
        real = (~torch.isnan(out)).nonzero().max() + 1  # NaN only as a tail
        assert not torch.isnan(out[:real]).any() and torch.isnan(out[real:]).all()
    torch.testing.assert_close(augment[0][0], WaveAugment(items, RATE, 0.2, 0.05, seed=0)[0][0], equal_nan=True)
    assert not torch.equal(
        torch.nan_to_num(augment[1][0]), torch.nan_to_num(WaveAugment(items, RATE, 0.2, 0.05, 7)[1][0])
    )
    draws = {int((~torch.isnan(WaveAugment(items, RATE, speed=0.2, seed=s)[0][0])).sum()) for s in range(12)}
    assert len(draws) > 3 and min(draws) < 12000 < max(draws)  # faster and slower than the original
    assert torch.equal(WaveAugment([items[1][0]], RATE, seed=0)[0], items[1][0])  # off: unchanged clips


def test_bad_augmentation_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"WaveAugment\.speed"):
        WaveAugment([], RATE, speed=0.7)
    with pytest.raises(ValueError, match=r"speed_perturb"):
        AudioDataConfig(speed_perturb=-0.1)
    with pytest.raises(ValueError, match=r"time_shift"):
        AudioDataConfig(time_shift=-1.0)


def test_recipe_data_augments_training_clips_only(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    for c, hz in enumerate((300, 900, 2700)):
        for i in range(5):
            path = tmp_path / f"class{c}" / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.3 * _tone(hz * (1 + 0.02 * i), RATE // 2).numpy(), RATE)
    model = ModelConfig.from_dict(
        {
            "adapter": "ssast",
            "adapter_config": {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64},
            "encoder": {"dim": 16, "depth": 1, "heads": 2},
        }
    )
    data = {"folder": str(tmp_path), "clip_seconds": 0.5, "val_fraction": 0.2, "test_fraction": 0.2}
    plain = build_data(data, model, "finetune")
    augmented = build_data({**data, "speed_perturb": 0.15, "time_shift": 0.05}, model, "finetune")
    assert isinstance(augmented.train, WaveAugment) and not isinstance(plain.train, WaveAugment)
    torch.manual_seed(0)
    first = torch.stack([augmented.train[i][0] for i in range(len(augmented.train))])
    second = torch.stack([augmented.train[i][0] for i in range(len(augmented.train))])
    assert not torch.equal(torch.nan_to_num(first), torch.nan_to_num(second))  # new draws on every pass
    assert [augmented.train[i][1] for i in range(3)] == [plain.train[i][1] for i in range(3)]
    for name in ("val", "test"):
        a, b = getattr(augmented, name), getattr(plain, name)
        torch.testing.assert_close(torch.stack([x for x, _ in a]), torch.stack([x for x, _ in b]), equal_nan=True)
    pretrain = build_data({**data, "speed_perturb": 0.1}, model, "pretrain")
    assert isinstance(pretrain.train, WaveAugment) and pretrain.train[0].shape == (RATE // 2,)
