"""`mmsdk shard` from a training recipe, then the same recipes training from `--data.shards`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import support

from mmsdk.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes"
TINY = support.PATCHTST_TINY


def test_a_recipe_writes_shards_that_pretraining_and_finetuning_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mmsdk shard --config recipe.yaml --output DIR` (a fine-tuning recipe: its head makes fine-tuning items), then
    the same recipes with `--data.shards DIR`: pretraining reads the inputs, fine-tuning trains and tests."""
    pytest.importorskip("litdata")
    shards = tmp_path / "shards"
    finetune = [str(RECIPES / "timeseries" / "patchtst_finetune.yaml"), *TINY, "--head.num_outputs=96"]
    main(["shard", "--config", *finetune, f"--output={shards}"])
    manifest = json.loads((shards / "mmsdk-shards.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["batch_size"] == 16
    assert manifest["splits"]["train"]["samples"] > 0 and set(manifest["splits"]) == {"train", "val", "test"}
    pre = tmp_path / "pre"
    pretrain = [str(RECIPES / "timeseries" / "patchtst_pretrain.yaml"), *TINY, f"--data.shards={shards}"]
    main(["pretrain", "--config", *pretrain, f"--output_dir={pre}"])
    assert (pre / "model").is_dir()
    ft = tmp_path / "ft"
    main(["finetune", "--config", *finetune, f"--data.shards={shards}", f"--pretrained={pre / 'model'}",
          f"--output_dir={ft}"])  # fmt: skip
    metrics = json.loads((ft / "metrics.json").read_text())
    assert np.isfinite(metrics["test/mse"]), metrics
    with pytest.raises(SystemExit) as error:  # shards of another configuration: refused by the CLI, named
        main(["pretrain", "--config", *pretrain, "--model.adapter_config.patch_len=8", f"--output_dir={pre}"])
    assert error.value.code == 2
    assert "another patchtst configuration" in capsys.readouterr().err
