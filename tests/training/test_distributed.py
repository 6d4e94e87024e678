"""Any Lightning strategy works with no code change: two-process DDP on CPU (gloo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmsdk
from mmsdk.adapters.timeseries import WindowDataset

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}


@pytest.mark.slow
def test_two_process_ddp_trains_and_returns_the_weights(tmp_path: Path) -> None:
    t = np.arange(2000, dtype=np.float32)
    series = np.stack([np.sin(t / 12), np.cos(t / 7)], axis=1).astype(np.float32)
    initial = mmsdk.build_model(MODEL).state_dict()  # seed 0 below reproduces this init
    trainer = {
        "max_steps": 4,
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp_spawn",
        "progress_bar": False,
        "logger": "none",
        "default_root_dir": str(tmp_path),
        "seed": 0,
    }
    torch.manual_seed(0)
    result = mmsdk.pretrain(MODEL, WindowDataset(series, 32), trainer=trainer, batch_size=8)
    assert result.trainer.world_size == 2
    trained = result.model.state_dict()
    changed = [k for k in initial if initial[k].shape == trained[k].shape and not torch.equal(initial[k], trained[k])]
    assert changed, "no parameter changed: the spawned workers' weights did not come back"
    assert np.isfinite(result.metrics["train/loss"])
