"""The audio recipe data builder on generated files: stratified and speaker-disjoint splits, few labels, mixup,
pretraining sources, and the normalization-statistics warning."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.audio.recipe_data import AudioDataConfig
from mmsdk.contracts.data import build_data
from mmsdk.models.config import ModelConfig

sf = pytest.importorskip("soundfile")
RATE = 16000
MODEL = ModelConfig.from_dict(
    {
        "adapter": "ssast",
        "adapter_config": {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64},
        "encoder": {"dim": 16, "depth": 1, "heads": 2},
    }
)


def _write(path: Path, pitch: float, seconds: float, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * seconds)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32), RATE)


def _manifest(root: Path, speakers: int = 6, per_speaker: int = 6) -> Path:
    """root/manifest.csv of 3 classes, with a speaker column (`s<k>+v<j>`: variants of a speaker)."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(speakers):
        for i in range(per_speaker):
            label = ("low", "mid", "high")[i % 3]
            path = f"clips/{s}_{i}.wav"
            _write(root / path, {"low": 200, "mid": 800, "high": 2000}[label] * (1 + 0.05 * s), 0.4, rng)
            rows.append({"path": path, "label": label, "speaker": f"s{s}+v{i % 2}"})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


def test_speaker_disjoint_split_keeps_every_speaker_in_one_split(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    data = {"manifest": str(manifest), "split_by": "speaker", "group_before": "+", "clip_seconds": 0.5}
    splits = build_data({**data, "val_fraction": 0.2, "test_fraction": 0.2}, MODEL, "finetune")
    with open(manifest) as f:
        speakers = [r["speaker"].split("+")[0] for r in csv.DictReader(f)]
    groups = [{speakers[i] for i in split.indices} for split in (splits.train, splits.val, splits.test)]
    assert groups[0] and groups[1] and groups[2]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert splits.info["class_names"] == ["high", "low", "mid"]
    wave, label = splits.train[0]
    assert wave.shape == (RATE // 2,) and torch.isnan(wave[int(0.4 * RATE) :]).all() and isinstance(label, int)
    test_wave, _ = splits.test[0]
    torch.testing.assert_close(test_wave, splits.test[0][0], equal_nan=True)  # evaluation crops are fixed


def test_folder_split_is_stratified_and_few_labels_and_mixup_apply_to_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for c, pitch in enumerate((300, 900, 2700)):
        for i in range(10):
            _write(tmp_path / f"class{c}" / f"{i}.flac", pitch, 0.5, rng)
    data = {"folder": str(tmp_path), "clip_seconds": 0.5, "val_fraction": 0.2, "test_fraction": 0.2}
    splits = build_data(data, MODEL, "finetune")
    assert (splits.info["train"], splits.info["val"], splits.info["test"]) == (18, 6, 6)
    assert sorted(splits.train.dataset.labels[i] for i in splits.test.indices) == [0, 0, 1, 1, 2, 2]
    few = build_data({**data, "labels_per_class": 2, "mixup": 1.0}, MODEL, "finetune")
    assert few.info["train"] == 6
    targets = torch.stack([few.train[i][1] for i in range(6)])
    assert targets.shape == (6, 3) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert (targets.amax(1) < 1.0).any()  # blends of two classes
    assert few.val is not None and isinstance(few.val[0][1], int)  # evaluation is never mixed


def test_pretraining_uses_training_clips_only_plus_extra_folders(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "labelled")
    rng = np.random.default_rng(2)
    for i in range(5):
        _write(tmp_path / "corpus" / "deep" / f"{i}.wav", 500 + 100 * i, 0.6, rng)
    (tmp_path / "corpus" / "notes.txt").write_text("not audio")
    data = {"manifest": str(manifest), "split_by": "speaker", "clip_seconds": 0.5, "extra": [str(tmp_path / "corpus")]}
    pre = build_data(data, MODEL, "pretrain")
    fine = build_data(data, MODEL, "finetune")
    assert len(pre.train) == fine.info["train"] + 5
    assert pre.val is None and pre.train[0].shape == (RATE // 2,)
    only_corpus = build_data({"folder": str(tmp_path / "corpus"), "clip_seconds": 0.5}, MODEL, "pretrain")
    assert len(only_corpus.train) == 5


def test_statistics_far_from_the_models_are_reported_with_the_numbers_to_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _manifest(tmp_path)
    splits = build_data({"manifest": str(manifest), "clip_seconds": 0.5}, MODEL, "finetune")
    mean, std = splits.info["norm_stats"]
    assert "norm_mean: " in caplog.text and f"{mean:.4f}" in caplog.text
    caplog.clear()
    matched = MODEL.to_dict()
    matched["modalities"]["ssast"]["adapter_config"] |= {"norm_mean": mean, "norm_std": std}
    build_data({"manifest": str(manifest), "clip_seconds": 0.5}, ModelConfig.from_dict(matched), "finetune")
    assert "norm_mean: " not in caplog.text


def test_missing_sources_and_bad_fields_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give `folder`"):
        build_data({}, MODEL, "finetune")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        build_data({"manifest": str(tmp_path / "nope.csv")}, MODEL, "finetune")
    with pytest.raises(ValueError, match="split_by"):
        AudioDataConfig(folder="x", split_by="speaker")
    with pytest.raises(ValueError, match="mixup"):
        AudioDataConfig(mixup=2.0)


def test_fbank_statistics_are_those_of_the_real_frames(tmp_path: Path) -> None:
    from mmsdk.adapters.audio.frontend import Fbank
    from mmsdk.adapters.audio.stats import fbank_statistics, main

    g = torch.Generator().manual_seed(0)
    clips = [
        0.1 * torch.randn(8000, generator=g),
        torch.cat([0.3 * torch.randn(4000, generator=g), torch.full((4000,), float("nan"))]),
    ]
    mean, std = fbank_statistics(clips)
    real = torch.cat([Fbank()(clips[0][None])[0][0], Fbank()(clips[1][:4000][None])[0][0]]).double()
    assert mean == pytest.approx(float(real.mean()), abs=1e-4) and std == pytest.approx(
        float(real.std(unbiased=False)), abs=1e-4
    )
    with pytest.raises(ValueError, match="no clip is longer than one analysis window"):
        fbank_statistics([torch.zeros(100)])
    _write(tmp_path / "a.wav", 440, 0.5, np.random.default_rng(0))
    main([str(tmp_path), "--seconds", "0.5"])  # prints the two recipe lines
