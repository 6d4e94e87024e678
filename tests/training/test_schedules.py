"""Learning-rate schedules (held to torch's OneCycleLR and to PatchTST's per-epoch decay) and early stopping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.optim.lr_scheduler import OneCycleLR

from mmsdk.training import OptimConfig, TrainerConfig, finetune
from mmsdk.training.api import BestWeights
from mmsdk.training.optim import build_scheduler

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "bert",
}


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    optimizer = scheduler.optimizer
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=lr)


@pytest.mark.parametrize(("total", "warmup_ratio"), [(100, 0.3), (37, 0.2), (10, 0.5), (64, 0.4)])
def test_onecycle_is_torchs_one_cycle_lr(total: int, warmup_ratio: float) -> None:
    lr = 1e-3
    ours = build_scheduler(_optimizer(lr), OptimConfig(lr=lr, schedule="onecycle", warmup_ratio=warmup_ratio), total)
    reference = OneCycleLR(_optimizer(lr), max_lr=lr, total_steps=total, pct_start=round(warmup_ratio * total) / total)
    assert _lrs(ours, total) == pytest.approx(_lrs(reference, total), rel=1e-9, abs=1e-15)


def _patchtst_type3(lr: float, epochs: int) -> list[float]:
    """The learning rate of each epoch in PatchTST's training loop with `--lradj type3`: after epoch e (0-based) it
    sets lr if e + 1 < 3 else lr · 0.9^(e + 1 − 3) for the next one."""
    out = [lr]
    for epoch in range(epochs - 1):
        out.append(lr if epoch + 1 < 3 else lr * 0.9 ** (epoch + 1 - 3))
    return out


def test_epoch_decay_is_patchtsts_type3_schedule() -> None:
    lr, per_epoch, epochs = 1e-4, 5, 12
    config = OptimConfig(lr=lr, schedule="epoch_decay", decay_gamma=0.9, decay_start_epoch=3)
    total = per_epoch * epochs
    lrs = _lrs(build_scheduler(_optimizer(lr), config, total, steps_per_epoch=per_epoch), total)
    by_epoch = [lrs[e * per_epoch : (e + 1) * per_epoch] for e in range(epochs)]
    assert all(len(set(steps)) == 1 for steps in by_epoch)  # constant within an epoch
    assert [steps[0] for steps in by_epoch] == pytest.approx(_patchtst_type3(lr, epochs), rel=1e-12)


def test_epoch_decay_warms_up_first() -> None:
    config = OptimConfig(lr=1.0, schedule="epoch_decay", warmup_steps=4, decay_gamma=0.5, decay_start_epoch=0)
    lrs = _lrs(build_scheduler(_optimizer(1.0), config, 12, steps_per_epoch=4), 12)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25])


def test_schedules_that_cannot_be_built_say_why() -> None:
    with pytest.raises(ValueError, match=r"epoch_decay.*steps per epoch"):
        build_scheduler(_optimizer(1.0), OptimConfig(schedule="epoch_decay"), 100, steps_per_epoch=None)
    with pytest.raises(ValueError, match=r"onecycle.*bounded"):
        build_scheduler(_optimizer(1.0), OptimConfig(schedule="onecycle", warmup_ratio=0.3), math.inf)
    for field, value in [("schedule", "linear"), ("decay_gamma", 0.0), ("decay_gamma", 1.5), ("decay_start_epoch", -1)]:
        with pytest.raises(ValueError, match=rf"OptimConfig\.{field}"):
            OptimConfig(**{field: value})
    with pytest.raises(ValueError, match=r"TrainerConfig\.early_stopping_patience.*select_best"):
        TrainerConfig(early_stopping_patience=3)
    with pytest.raises(ValueError, match=r"TrainerConfig\.early_stopping_patience"):
        TrainerConfig(early_stopping_patience=0, select_best="val/mse")


def test_training_follows_the_epoch_schedule_and_stops_early(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    series = torch.sin(torch.arange(40).float().view(1, -1, 1) / 3 + 6.28 * torch.rand(64, 1, 2, generator=g))
    x, y = series[:, :32], series[:, 32:]  # (64, 32, 2) contexts, (64, 8, 2) horizons
    trainer = {
        "max_epochs": 30,
        "logger": "none",
        "progress_bar": False,
        "default_root_dir": str(tmp_path),
        "select_best": "val/mse",
        "select_mode": "max",  # training lowers val/mse: under "max" the first epoch stays the best
        "early_stopping_patience": 2,
    }
    optim = {"lr": 1e-2, "schedule": "epoch_decay", "decay_gamma": 0.5, "decay_start_epoch": 0}
    result = finetune(
        MODEL, {"task": "forecast", "num_outputs": 8}, (x, y), val_data=(x, y), optim=optim, trainer=trainer
    )
    stop = next(c for c in result.trainer.callbacks if isinstance(c, EarlyStopping))
    best = next(c for c in result.trainer.callbacks if isinstance(c, BestWeights))
    assert best.epoch == 0 and stop.wait_count == 2
    assert result.trainer.current_epoch == 3  # epochs 0, 1, 2 ran: two validations without improvement
    steps_per_epoch = 2  # 64 windows in batches of 32
    assert result.trainer.global_step == 3 * steps_per_epoch
    assert result.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)


def test_epoch_decay_counts_epochs_in_a_run_bounded_by_steps(tmp_path: Path) -> None:
    x = torch.randn(64, 32, 2)
    trainer = {"max_steps": 5, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    optim = {"lr": 1e-2, "schedule": "epoch_decay", "decay_gamma": 0.5, "decay_start_epoch": 0}
    result = finetune(MODEL, {"task": "forecast", "num_outputs": 8}, (x, x[:, :8]), optim=optim, trainer=trainer)
    # 2 batches of 32 per epoch: the 6th step (index 5) would start epoch 2
    assert result.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**2)
