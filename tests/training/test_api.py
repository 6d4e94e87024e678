"""The Python API: pretrain → save → finetune without writing a loop; trainer config and data helpers."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.strategies import DDPStrategy

import mmsdk
from mmsdk.hub import save_pretrained
from mmsdk.training import TrainerConfig, as_dataset, build_trainer, finetune, pretrain
from mmsdk.training.data import DataModule

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "bert",
}
HORIZON = 8


def windows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (n, 32, 2), targets (n, 8, 2)): consecutive windows of noisy sines."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(32 + HORIZON).float().view(1, -1, 1)
    series = torch.sin(t / 3 + 6.28 * torch.rand(n, 1, 2, generator=g)) + 0.05 * torch.randn(n, 40, 2, generator=g)
    return series[:, :32], series[:, 32:]


def quiet(root: Path, **changes: object) -> dict[str, object]:
    return {"logger": "none", "progress_bar": False, "default_root_dir": str(root), **changes}


def pretrained_dir(model: dict, x: torch.Tensor, root: Path) -> str:
    """A 2-step masked pretraining of `model` on `x`, saved to `root/pretrained`; returns the directory."""
    pre = pretrain(model, x, trainer=quiet(root, max_steps=2), batch_size=16)
    return str(save_pretrained(pre.model, root / "pretrained"))


def test_finetune_forecast_from_pretrained_gives_finite_metrics(tmp_path: Path) -> None:
    x, y = windows(48)
    pre = pretrain(MODEL, x.numpy(), trainer=quiet(tmp_path, max_steps=5), batch_size=16)
    assert math.isfinite(pre.metrics["train/loss"])
    save_pretrained(pre.model, tmp_path / "pretrained")
    vx, vy = windows(16, seed=1)
    ft = finetune(
        MODEL,
        {"task": "forecast", "num_outputs": HORIZON},
        (x, y),
        val_data=(vx, vy),
        test_data=(vx, vy),
        pretrained=str(tmp_path / "pretrained"),
        trainer=quiet(tmp_path, max_steps=6),
        batch_size=16,
    )
    for name in ("train/loss", "val/mse", "val/mae", "test/mse", "test/mae"):
        assert math.isfinite(ft.metrics[name]), name
    assert isinstance(ft.model, mmsdk.TaskModel) and ft.trainer.global_step == 6
    assert ft.load_report is not None and not [k for k in ft.load_report.missing if k.startswith("backbone.")]
    with torch.no_grad():
        direct = ((ft.model.eval()(vx) - vy) ** 2).mean()
    assert ft.metrics["test/mse"] == pytest.approx(float(direct), rel=1e-4)


@pytest.mark.parametrize("affine", [False, True])
def test_linear_probe_leaves_the_backbone_unchanged(tmp_path: Path, affine: bool) -> None:
    """Also with RevIN's affine weights, which the forecast head borrows for the inverse: they stay frozen."""
    model = {**MODEL, "adapter_config": {**MODEL["adapter_config"], "affine": affine}}
    x, y = windows(32)
    pretrained = pretrained_dir(model, x, tmp_path)
    head = {"task": "forecast", "num_outputs": HORIZON}
    before = mmsdk.build_task_model(model, head)
    mmsdk.hub.load_backbone(before, pretrained)
    ft = finetune(
        model,
        head,
        (x, y),
        pretrained=pretrained,
        mode="linear_probe",
        optim={"lr": 1e-2, "weight_decay": 0.5},
        trainer=quiet(tmp_path, max_steps=4),
        batch_size=16,
    )
    after = ft.model.state_dict()
    for name, value in before.backbone.state_dict().items():
        assert torch.equal(after[f"backbone.{name}"], value), name
    assert not torch.equal(after["head.linear.weight"], before.state_dict()["head.linear.weight"])


def test_fine_tuning_a_saved_linear_probe_starts_from_its_head(tmp_path: Path) -> None:
    """LP-FT: probe, save, then fine-tune everything from the probe (backbone and trained head)."""
    x, y = windows(32)
    head = {"task": "forecast", "num_outputs": HORIZON}
    probe = finetune(
        MODEL,
        head,
        (x, y),
        pretrained=pretrained_dir(MODEL, x, tmp_path),
        mode="linear_probe",
        optim={"lr": 1e-2},
        trainer=quiet(tmp_path, max_steps=3),
        batch_size=16,
    )
    save_pretrained(probe.model, tmp_path / "probe")
    full = finetune(
        MODEL,
        head,
        (x, y),
        pretrained=str(tmp_path / "probe"),
        optim={"lr": 1e-6},
        trainer=quiet(tmp_path, max_steps=1),
        batch_size=16,
    )
    assert full.load_report is not None and not full.load_report.missing and not full.load_report.unexpected
    probed, tuned = probe.model.state_dict()["head.linear.weight"], full.model.state_dict()["head.linear.weight"]
    torch.testing.assert_close(tuned, probed, atol=1e-4, rtol=0)  # one tiny step away from the probe's head


def test_linear_probe_keeps_batchnorm_statistics_and_dropout_frozen(tmp_path: Path) -> None:
    model = {**MODEL, "encoder": {**MODEL["encoder"], "norm": "batchnorm", "dropout": 0.5}}
    x, y = windows(32)
    pretrained = pretrained_dir(model, x, tmp_path)
    head = {"task": "forecast", "num_outputs": HORIZON}
    before = mmsdk.build_task_model(model, head)
    mmsdk.hub.load_backbone(before, pretrained)
    ft = finetune(
        model,
        head,
        (x, y),
        pretrained=pretrained,
        mode="linear_probe",
        trainer=quiet(tmp_path, max_steps=3),
        batch_size=16,
    )
    after = ft.model.state_dict()
    buffers = [name for name, _ in before.backbone.named_buffers() if "running" in name]
    assert buffers, "the encoder should have BatchNorm running statistics"
    for name, value in before.backbone.state_dict().items():
        assert torch.equal(after[f"backbone.{name}"], value), name  # running statistics included
    ft.system.train()
    assert ft.system.model.head.training and not ft.system.model.backbone.training


def test_classification_metrics(tmp_path: Path) -> None:
    x, _ = windows(32)
    labels = (x[:, :, 0].mean(1) > 0).long()
    ft = finetune(
        MODEL,
        {"task": "classification", "num_outputs": 2},
        (x, labels),
        val_data=(x, labels),
        trainer=quiet(tmp_path, max_steps=3),
        batch_size=16,
    )
    assert 0.0 <= ft.metrics["val/acc"] <= 1.0 and math.isfinite(ft.metrics["val/loss"])
    assert "val/mse" not in ft.metrics


def test_finetune_without_targets_fails_clearly(tmp_path: Path) -> None:
    x, _ = windows(16)
    with pytest.raises(ValueError, match=r"needs \(inputs, targets\) batches"):
        finetune(MODEL, {"task": "forecast", "num_outputs": HORIZON}, x, trainer=quiet(tmp_path, max_steps=1))


def test_csv_logger_and_periodic_checkpoints(tmp_path: Path) -> None:
    x, _ = windows(32)
    pre = pretrain(
        MODEL,
        x,
        trainer={
            **quiet(tmp_path, max_steps=4),
            "logger": "csv",
            "checkpoint_every_n_steps": 2,
            "log_every_n_steps": 1,
        },
        batch_size=8,
    )
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert len(metrics) == 1 and "train/loss" in metrics[0].read_text()
    assert (tmp_path / "logs").is_dir() and list(tmp_path.rglob("last.ckpt"))
    assert pre.trainer.global_step == 4


def test_trainer_config_resolution() -> None:
    cfg = TrainerConfig()
    assert cfg.resolved_max_epochs == 10 and TrainerConfig(max_steps=5).resolved_max_epochs == -1
    if not torch.cuda.is_available():
        assert cfg.resolved_precision() == "32-true"
    assert TrainerConfig(precision="bf16-mixed").resolved_precision() == "bf16-mixed"
    with pytest.raises(ValueError, match="'max_step'"):
        TrainerConfig.from_dict({"max_step": 10})
    with pytest.raises(ValueError, match=r"TrainerConfig\.precision"):
        TrainerConfig(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TrainerConfig\.max_steps"):
        TrainerConfig(max_steps=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"TrainerConfig\.num_nodes"):
            TrainerConfig(num_nodes=bad)  # type: ignore[arg-type]


def test_build_trainer_passes_settings_through(tmp_path: Path) -> None:
    trainer = build_trainer(
        {
            "strategy": "ddp",
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": str(tmp_path),
            "checkpoint_every_n_steps": 5,
            "accumulate_grad_batches": 3,
            "gradient_clip_val": 0.5,
            "logger": "none",
        }
    )
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.accumulate_grad_batches == 3 and trainer.gradient_clip_val == 0.5
    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 1 and checkpoints[0]._every_n_train_steps == 5 and checkpoints[0].save_last
    assert any(isinstance(c, RichProgressBar) for c in trainer.callbacks)
    assert trainer.logger is None


def test_as_dataset_conversions_and_errors() -> None:
    inputs = as_dataset(np.zeros((4, 32, 2)))
    assert len(inputs) == 4 and inputs[0][0].dtype == torch.float32
    pairs = as_dataset((np.zeros((4, 32, 2)), np.arange(4)))
    assert pairs[3][1].item() == 3 and pairs[3][1].dtype == torch.int64
    with pytest.raises(ValueError, match="4 inputs but 3 targets"):
        as_dataset((np.zeros((4, 2)), np.zeros(3)))
    with pytest.raises(ValueError, match="empty"):
        as_dataset(torch.zeros(0, 32, 2))
    with pytest.raises(ValueError, match=r"expected \(inputs, targets\)"):
        as_dataset((np.zeros(2), np.zeros(2), np.zeros(2)))


def test_data_module_batches() -> None:
    dm = DataModule(torch.zeros(10, 3), val=torch.zeros(5, 3), batch_size=4)
    assert len(dm.train_dataloader()) == 2  # drop_last: 10 samples → 2 full batches
    assert len(DataModule(torch.zeros(3, 3), batch_size=4).train_dataloader()) == 1  # tiny data keeps its batch
    assert len(dm.val_dataloader()) == 2
    assert dm.test_dataloader is None  # Lightning skips stages without data


def test_lightning_datamodule_is_accepted(tmp_path: Path) -> None:
    x, _ = windows(16)
    result = pretrain(MODEL, DataModule(x, batch_size=8), trainer=quiet(tmp_path, max_steps=2))
    assert result.trainer.global_step == 2 and isinstance(result.system, L.LightningModule)
    with pytest.raises(ValueError, match="inside the LightningDataModule"):
        pretrain(MODEL, DataModule(x), val_data=x, trainer=quiet(tmp_path, max_steps=1))


def test_select_best_returns_the_best_validation_weights(tmp_path) -> None:
    from mmsdk.training.api import BestWeights

    x, y = windows(64)
    trainer = {
        "max_epochs": 4,
        "logger": "none",
        "progress_bar": False,
        "default_root_dir": str(tmp_path),
        "select_best": "val/mse",
    }
    result = finetune(
        MODEL,
        {"task": "forecast", "num_outputs": HORIZON},
        (x, y),
        val_data=(x, y),
        optim={"lr": 3e-2},
        trainer=trainer,
    )
    best = next(c for c in result.trainer.callbacks if isinstance(c, BestWeights))
    assert best.state is not None and best.epoch is not None
    # validating the returned model reproduces the best validation score seen during training
    check = build_trainer({"logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)})
    (scores,) = check.validate(result.system, dataloaders=DataModule(x, (x, y), batch_size=32).val_dataloader())
    assert scores["val/mse"] == pytest.approx(best.best, rel=1e-5)
    with pytest.raises(ValueError, match="select_mode"):
        mmsdk.TrainerConfig(select_best="val/mse", select_mode="lowest")


@pytest.mark.parametrize("devices", [0, -2, "0,x", "tpu", [], [0, 0], [-1]])
def test_bad_device_counts_are_errors_naming_the_field(devices: object) -> None:
    with pytest.raises(ValueError, match=r"TrainerConfig\.devices"):
        TrainerConfig(devices=devices)


@pytest.mark.parametrize("devices", [1, -1, "auto", "2", "0,1", [0, 1]])
def test_device_counts_lightning_accepts_are_accepted(devices: object) -> None:
    assert TrainerConfig(devices=devices).devices == devices
