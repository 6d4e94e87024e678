"""The multimodal recipes from the command line: 4m pretraining on the bouncing scene, a cross-modal fine-tune from
the sound alone, and export of a cross-modal predictor that runs in the numpy runtime (the subset embedding's export
is tested in tests/models/test_fourm.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.multimodal import BouncingScene
from mmsdk.cli import main
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "multimodal"
TINY = [
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--model.decoder.dim=16",
    "--model.decoder.depth=1",
    "--model.decoder.heads=2",
    "--data.num_samples=16",
    "--data.val_samples=8",
    "--data.test_samples=8",
    "--data.batch_size=8",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]


def test_4m_recipes_pretrain_finetune_from_sound_and_export_a_predictor(tmp_path: Path) -> None:
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    main(["pretrain", "--config", str(RECIPES / "4m_pretrain.yaml"), *TINY, "--data.scene.missing=0.3",
          f"--output_dir={pre}", f"--trainer.default_root_dir={pre}"])  # fmt: skip
    model = from_pretrained(pre / "model")
    assert model.name == "4m" and model.backbone.names == ["series", "audio", "video"]
    main(["finetune", "--config", str(RECIPES / "4m_finetune_audio.yaml"), *TINY, f"--pretrained={pre / 'model'}",
          f"--output_dir={ft}", f"--trainer.default_root_dir={ft}"])  # fmt: skip
    metrics = json.loads((ft / "metrics.json").read_text())
    assert np.isfinite(metrics["test/mse"])

    clips = torch.stack([BouncingScene(3, seed=7)[i]["video"] for i in range(3)])  # (3, T, 1, H, W)
    predictor = tmp_path / "video_to_series.onnx"
    main(["export", f"--model_dir={pre / 'model'}", f"--output={predictor}", "--target=series", "--modalities=[video]"])
    runtime = OnnxModel(predictor)
    assert runtime.metadata["mmsdk.kind"] == "cross_modal" and runtime.metadata["mmsdk.target"] == "series"
    with torch.no_grad():
        expected = model.predict({"video": clips}, ["series"])["series"].numpy()
    np.testing.assert_allclose(runtime(clips.numpy()), expected, atol=1e-4)
    assert expected.shape == (3, 64, 2)  # height and acceleration over the clip


def test_the_scene_builder_refuses_a_model_of_other_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--config", str(RECIPES / "4m_pretrain.yaml"), *TINY,
              "--model.modalities.series.adapter_config.context_length=32", f"--output_dir={tmp_path}",
              f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    # the override changes one field of the recipe's series modality (the others stay): the scene check names it
    assert "series: the model's context_length=32 differs from the scene's 64" in capsys.readouterr().err
