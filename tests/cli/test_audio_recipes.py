"""The audio recipes from the command line on a generated folder of clips: SSAST pretraining with pictures, a linear
probe, LP-FT, AudioMAE, and export to one ONNX graph from raw waveform with labels and sample rate inside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.cli import main
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "audio"
RATE = 16000
AUDIO_TINY = [  # a tiny model on 32 mel bins and 8×8 patches
    "--model.adapter_config.fbank.num_mel_bins=32",
    "--model.adapter_config.patch_freq=8",
    "--model.adapter_config.patch_time=8",
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--data.batch_size=8",
    "--data.clip_seconds=0.5",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]


def _clips(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    """root/<class>/*.wav: tones of a class-specific pitch with noise, 0.3 to 0.6 s long."""
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"tone{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            t = np.arange(int(RATE * rng.uniform(0.3, 0.6))) / RATE
            wave = 0.3 * np.sin(2 * np.pi * 300 * (c + 1) * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(folder / f"{i}.wav", wave.astype(np.float32), RATE)
    return root


def test_ssast_recipes_pretrain_probe_finetune_export(tmp_path: Path) -> None:
    data, pre, probe, ft = _clips(tmp_path / "clips"), tmp_path / "pre", tmp_path / "probe", tmp_path / "ft"
    common = [*AUDIO_TINY, f"--data.folder={data}", "--data.manifest=null", "--data.split_by=null"]
    main(["pretrain", "--config", str(RECIPES / "ssast_pretrain.yaml"), *common, f"--output_dir={pre}",
          "--plot_every_n_steps=2", f"--trainer.default_root_dir={pre}"])  # fmt: skip
    assert (pre / "plots" / "reconstruction_step000002.png").read_bytes()[:4] == b"\x89PNG"
    head = ["--head.num_outputs=3", "--data.val_fraction=0.2", "--data.test_fraction=0.3"]
    main(["finetune", "--config", str(RECIPES / "ssast_linear_probe.yaml"), *common, *head,
          f"--pretrained={pre / 'model'}", f"--output_dir={probe}", f"--trainer.default_root_dir={probe}"])  # fmt: skip
    strides = ["--model.adapter_config.stride_freq=4", "--model.adapter_config.stride_time=4"]
    main(["finetune", "--config", str(RECIPES / "ssast_finetune.yaml"), *common, *head, *strides,
          f"--pretrained={probe / 'model'}", f"--output_dir={ft}", f"--trainer.default_root_dir={ft}"])  # fmt: skip
    metrics = json.loads((ft / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and np.isfinite(metrics["test/loss"])

    onnx_path = tmp_path / "kws.onnx"
    main(["export", f"--model_dir={ft / 'model'}", f"--output={onnx_path}"])
    runtime = OnnxModel(onnx_path)
    assert runtime.labels == ["tone0", "tone1", "tone2"] and runtime.sample_rate == RATE
    assert runtime.input_name == "waveform" and runtime.input_shape == ["batch", "samples"]
    model = from_pretrained(ft / "model")
    for samples in (4000, 7777):  # any clip length, padding inside the graph
        wave = np.random.default_rng(samples).uniform(-0.3, 0.3, (2, samples)).astype(np.float32)
        wave[1, samples // 2 :] = np.nan
        with torch.no_grad():
            expected = model(torch.from_numpy(wave)).numpy()
        np.testing.assert_allclose(runtime(wave, sample_rate=RATE), expected, atol=1e-3)
    with pytest.raises(ValueError, match="trained on 16000 Hz audio but got 44100 Hz"):
        runtime(wave, sample_rate=44100)


def test_audiomae_recipes_pretrain_and_finetune(tmp_path: Path) -> None:
    data, pre, ft = _clips(tmp_path / "clips"), tmp_path / "pre", tmp_path / "ft"
    common = [*AUDIO_TINY, f"--data.folder={data}", "--data.manifest=null", "--data.split_by=null",
              "--model.decoder.dim=16", "--model.decoder.depth=1", "--model.decoder.heads=2"]  # fmt: skip
    main(["pretrain", "--config", str(RECIPES / "audiomae_pretrain.yaml"), *common, f"--output_dir={pre}",
          f"--trainer.default_root_dir={pre}"])  # fmt: skip
    main(["finetune", "--config", str(RECIPES / "audiomae_finetune.yaml"), *common, "--head.num_outputs=3",
          "--data.val_fraction=0.2", "--data.test_fraction=0.3", f"--pretrained={pre / 'model'}",
          f"--output_dir={ft}", f"--trainer.default_root_dir={ft}"])  # fmt: skip
    assert 0.0 <= json.loads((ft / "metrics.json").read_text())["test/acc"] <= 1.0


def test_a_missing_keyword_set_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--config", str(RECIPES / "ssast_linear_probe.yaml"), *AUDIO_TINY,
              f"--data.manifest={tmp_path / 'nope.csv'}", "--pretrained=null", f"--output_dir={tmp_path}"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "nope.csv" in capsys.readouterr().err
