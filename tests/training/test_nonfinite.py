"""Divergence cannot destroy a run: non-finite steps are skipped and counted, a run that keeps diverging stops with
a message naming the step, loss and learning rate, and non-finite weights are never saved."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import mmsdk
from mmsdk.training.checkpoints import load_checkpoint
from mmsdk.training.guards import TrainingDivergedError

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}


def _series(n: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32).float().view(1, -1, 1)
    return torch.sin(t / 4 + 6.28 * torch.rand(n, 1, 2, generator=g)) + 0.1 * torch.randn(n, 32, 2, generator=g)


class PoisonGradients(L.Callback):
    """Puts a NaN into one gradient at the given optimizer steps, and records the weights around each step."""

    def __init__(self, steps: set[int] | None) -> None:
        self.steps = steps  # None: every step
        self.before: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}

    def _param(self, pl_module: L.LightningModule) -> torch.Tensor:
        return next(p for p in pl_module.parameters() if p.requires_grad)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self.before[step] = self._param(pl_module).detach().clone()
        if self.steps is None or step in self.steps:
            self._param(pl_module).grad.view(-1)[0] = float("nan")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self.after[trainer.global_step - 1] = self._param(pl_module).detach().clone()


def _trainer(root: Path, **changes: object) -> dict[str, object]:
    return {"logger": "csv", "progress_bar": False, "default_root_dir": str(root), **changes}


def test_a_nonfinite_gradient_skips_the_step_and_is_counted(tmp_path: Path) -> None:
    poison = PoisonGradients({2, 3})
    result = mmsdk.pretrain(
        MODEL, _series(), trainer=_trainer(tmp_path, max_steps=6, log_every_n_steps=1), batch_size=8, callbacks=[poison]
    )
    assert result.trainer.global_step == 6
    for step in (2, 3):  # skipped: the weights did not move
        assert torch.equal(poison.before[step], poison.after[step]), step
    for step in (1, 4):  # a normal step moves them
        assert not torch.equal(poison.before[step], poison.after[step]), step
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    metrics = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/nonfinite_steps" in metrics


def test_a_diverging_run_stops_naming_step_loss_and_learning_rate(tmp_path: Path) -> None:
    poison = PoisonGradients(set(range(3, 100)))
    trainer = _trainer(tmp_path, max_steps=50, max_nonfinite_steps=4, checkpoint_every_n_steps=1, logger="none")
    with pytest.raises(TrainingDivergedError) as info:
        mmsdk.pretrain(MODEL, _series(), trainer=trainer, batch_size=8, callbacks=[poison])
    message = str(info.value)
    assert "step 6" in message and "4 optimizer steps in a row" in message
    assert "loss" in message and "learning rate" in message and "last good checkpoint" in message
    checkpoints = tmp_path / "checkpoints" / "pretrain"
    kept = sorted(p.name for p in checkpoints.glob("*.ckpt"))
    assert kept == ["last.ckpt", "step=2.ckpt", "step=3.ckpt"]  # nothing written during the streak
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 3


def test_an_overflowing_learning_rate_fails_instead_of_returning_nan_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 32, 2)).astype(np.float32)
    y = rng.standard_normal((32, 8, 2)).astype(np.float32)
    head = {"task": "forecast", "num_outputs": 8}
    with pytest.raises(TrainingDivergedError, match="training diverged at step"):
        mmsdk.finetune(
            MODEL,
            head,
            (x, y),
            mode="linear_probe",
            optim={"lr": 1e30, "warmup_steps": 0},
            trainer=_trainer(tmp_path, max_steps=30, gradient_clip_val=None, logger="none"),
            batch_size=8,
        )


def test_save_pretrained_refuses_nonfinite_weights(tmp_path: Path) -> None:
    model = mmsdk.build_model(MODEL)
    mmsdk.save_pretrained(model, tmp_path / "good")
    before = {p.name: p.read_bytes() for p in (tmp_path / "good").iterdir()}
    with torch.no_grad():
        next(model.parameters()).view(-1)[3] = float("inf")
    with pytest.raises(ValueError, match=r"refuses to write .*good.*not finite .*1 Inf"):
        mmsdk.save_pretrained(model, tmp_path / "good")
    assert {p.name: p.read_bytes() for p in (tmp_path / "good").iterdir()} == before  # the good model survives
    with pytest.raises(ValueError, match="not finite"):
        mmsdk.save_pretrained(model, tmp_path / "new")
    assert not (tmp_path / "new").exists()
