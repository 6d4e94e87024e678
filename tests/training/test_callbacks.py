"""The pretraining reconstruction-plot callback."""

from __future__ import annotations

from pathlib import Path

import torch

import mmsdk
from mmsdk.training.callbacks import ReconstructionPlotter

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "bert",
}


def test_plots_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    x = torch.sin(torch.arange(32.0).view(1, 32, 1) / 3 + torch.rand(16, 1, 2) * 6)
    plotter = ReconstructionPlotter(x[:1], tmp_path / "plots", every_n_steps=2)
    trainer = {"max_steps": 5, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    mmsdk.pretrain(MODEL, x, trainer=trainer, batch_size=4, callbacks=[plotter])
    names = sorted(p.name for p in plotter.paths)
    assert names == ["reconstruction_step000002.png", "reconstruction_step000004.png", "reconstruction_step000005.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plotter.paths)


def test_causal_models_are_skipped(tmp_path: Path) -> None:
    model = mmsdk.build_model({**MODEL, "objective": "causal"})

    class Module:  # the bits of a LightningModule the plotter reads
        device = torch.device("cpu")

    Module.model = model
    assert ReconstructionPlotter(torch.randn(1, 32, 2), tmp_path).plot(Module(), 1) is None
