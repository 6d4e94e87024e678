"""A first run prints what a user needs: no third-party advertising, and epoch counts that make sense."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import mmsdk
from mmsdk.training.progress import StepProgressBar

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}


def test_no_lightning_advertising(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trainer = {"max_steps": 2, "progress_bar": False, "default_root_dir": str(tmp_path), "checkpoint_every_n_steps": 1}
    with caplog.at_level("INFO"):
        mmsdk.pretrain(MODEL, torch.randn(16, 32, 2), trainer=trainer, batch_size=8)
    assert "Trainer.fit" in caplog.text  # Lightning's own messages still come through
    assert "Tip" not in caplog.text and "litlogger" not in caplog.text and "litmodels" not in caplog.text


@pytest.mark.parametrize(("max_epochs", "expected"), [(-1, "Epoch 4"), (10, "Epoch 4/10")])
def test_progress_bar_epochs(max_epochs: int, expected: str) -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(3).strip() == expected
