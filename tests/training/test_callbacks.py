"""The pretraining reconstruction-plot callback."""

from __future__ import annotations

from pathlib import Path

import torch

import mmsdk
from mmsdk.contracts.losses import denormalize_like, normalize_targets
from mmsdk.models.objectives import Prediction
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
    assert ReconstructionPlotter(torch.randn(1, 32, 2), tmp_path).plot(Module(), 1) == []


def test_denormalize_like_inverts_normalize_targets() -> None:
    targets = 3 * torch.randn(2, 5, 8) + 1
    torch.testing.assert_close(denormalize_like(normalize_targets(targets), targets), targets, atol=1e-5, rtol=1e-5)


def test_norm_target_models_are_plotted_in_data_units(tmp_path: Path, monkeypatch) -> None:
    """A perfect per-token-normalized reconstruction reaches the adapter's plot as the targets themselves."""
    model = mmsdk.build_model({**MODEL, "norm_targets": True})
    drawn = {}

    def perfect(batch, mask):  # what a perfect norm_targets model predicts
        return Prediction({"patchtst": normalize_targets(batch.targets)})

    def capture(batch, pred, target, path):
        drawn["pred"], drawn["targets"] = pred, batch.targets
        return path

    monkeypatch.setattr(model, "forward", perfect)
    monkeypatch.setattr(model.adapter, "plot_reconstruction", capture)

    class Module:  # the bits of a LightningModule the plotter reads
        device = torch.device("cpu")

    Module.model = model
    x = torch.sin(torch.arange(32.0).view(1, 32, 1) / 3 + torch.rand(1, 1, 2) * 6) * 5 + 2
    assert ReconstructionPlotter(x, tmp_path).plot(Module(), 1) == [tmp_path / "reconstruction_step000001.png"]
    torch.testing.assert_close(drawn["pred"], drawn["targets"].float(), atol=1e-4, rtol=1e-4)
