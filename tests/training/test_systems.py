"""Lightning systems, optimizer and schedule: losses go down, masks are seeded, configs are validated."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import mmsdk
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives import Objective
from mmsdk.training import FinetuneSystem, OptimConfig, PretrainSystem, build_trainer, warmup_cosine
from mmsdk.training.data import DataModule
from mmsdk.training.optim import build_optimizer, build_scheduler, parameter_groups

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 96, "num_channels": 3, "patch_len": 16, "stride": 8, "positions": "learned"},
    "encoder": {"dim": 32, "depth": 2, "heads": 4},
    "objective": "mae",
}


def sine_series(n: int, length: int = 96, seed: int = 0) -> torch.Tensor:
    """(n, length, 3) noisy sines with random phases and periods."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length).float().view(1, -1, 1)
    phase = 6.28 * torch.rand(n, 1, 3, generator=g)
    period = 8 + 8 * torch.rand(n, 1, 3, generator=g)
    return torch.sin(2 * math.pi * t / period + phase) + 0.05 * torch.randn(n, length, 3, generator=g)


class LossRecorder(L.Callback):
    """Records the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))


def _fit(system: L.LightningModule, data: DataModule, root: Path, steps: int, callbacks=()) -> L.Trainer:
    trainer = build_trainer(
        {"max_steps": steps, "logger": "none", "progress_bar": False, "default_root_dir": str(root)}, callbacks
    )
    trainer.fit(system, datamodule=data)
    return trainer


@pytest.mark.parametrize(("objective", "max_ratio"), [("mae", 0.93), ("bert", 0.93), ("causal", 0.5)])
def test_pretraining_lowers_the_loss(tmp_path: Path, objective: str, max_ratio: float) -> None:
    L.seed_everything(0, verbose=False)
    x = sine_series(128)
    system = PretrainSystem({**MODEL, "objective": objective}, {"ratio": 0.4}, {"lr": 3e-3, "warmup_steps": 3})

    def fixed_batch_loss() -> float:  # same batch, same mask: no sampling noise
        with torch.no_grad():
            return float(system.eval().compute_loss(x[:64], torch.Generator().manual_seed(123)))

    before = fixed_batch_loss()
    recorder = LossRecorder()
    _fit(system, DataModule(x, batch_size=32), tmp_path, steps=100, callbacks=[recorder])
    assert len(recorder.losses) == 100 and all(math.isfinite(v) for v in recorder.losses)
    after = fixed_batch_loss()
    assert after < max_ratio * before, (before, after)


def test_norm_targets_changes_the_loss() -> None:
    x = sine_series(8)
    plain = PretrainSystem(MODEL)
    normed = PretrainSystem({**MODEL, "norm_targets": True})
    normed.load_state_dict(plain.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert not torch.isclose(plain.compute_loss(x, g()), normed.compute_loss(x, g()))


def test_masks_come_from_the_step_not_the_global_rng() -> None:
    system = PretrainSystem(MODEL)
    x = sine_series(4)
    torch.manual_seed(1)
    a = system.compute_loss(x, system._generator(x.device, batch_idx=0, stage="train"))
    torch.manual_seed(2)
    b = system.compute_loss(x, system._generator(x.device, batch_idx=0, stage="train"))
    c = system.compute_loss(x, system._generator(x.device, batch_idx=1, stage="train"))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_hyperparameters_rebuild_the_system_from_a_checkpoint(tmp_path: Path) -> None:
    system = PretrainSystem(MODEL, {"ratio": 0.5}, {"lr": 1e-4}, seed=7)
    trainer = _fit(system, DataModule(sine_series(16), batch_size=8), tmp_path, steps=2)
    path = tmp_path / "final.ckpt"
    trainer.save_checkpoint(path)
    restored = PretrainSystem.load_from_checkpoint(path)
    assert restored.masking.ratio == 0.5 and restored.optim_config.lr == 1e-4 and restored.seed == 7
    for (name, p), q in zip(system.named_parameters(), restored.parameters()):
        assert torch.equal(p, q), name


def test_finetune_needs_targets() -> None:
    system = FinetuneSystem(MODEL, {"task": "forecast", "num_outputs": 8})
    with pytest.raises(ValueError, match=r"needs \(inputs, targets\) batches"):
        system.training_step(sine_series(2), 0)


def test_finetune_rejects_wrong_target_shape() -> None:
    system = FinetuneSystem(MODEL, {"task": "forecast", "num_outputs": 8})
    with pytest.raises(ValueError, match=r"targets have shape \(2, 4, 3\).*\(2, 8, 3\)"):
        system.training_step((sine_series(2), torch.zeros(2, 4, 3)), 0)


def test_forecast_loss_ignores_nan_targets() -> None:
    system = FinetuneSystem(MODEL, {"task": "forecast", "num_outputs": 8})
    x, y = sine_series(4), torch.randn(4, 8, 3)
    clean = system.training_step((x, y), 0)
    y_nan = y.clone()
    y_nan[:, :4] = float("nan")
    with_nan = system.training_step((x, y_nan), 0)
    assert torch.isfinite(with_nan)
    outputs = system(x).detach()
    expected = ((outputs[:, 4:] - y[:, 4:]) ** 2).mean()
    torch.testing.assert_close(with_nan.detach(), expected)
    assert not torch.isclose(clean, with_nan)


def test_classification_loss_and_target_checks() -> None:
    system = FinetuneSystem(MODEL, {"task": "classification", "num_outputs": 3})
    x = sine_series(4)
    loss = system.training_step((x, torch.tensor([0, 1, 2, 1])), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="integer class ids"):
        system.training_step((x, torch.zeros(4)), 0)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        system.training_step((x, torch.tensor([0, 1, 2, 3])), 0)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode='probe'"):
        FinetuneSystem(MODEL, {"task": "forecast"}, mode="probe")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.25), (3, 1.0), (4, 1.0), (9, 0.55), (14, 0.1), (20, 0.1)],
)
def test_warmup_cosine_values(step: int, expected: float) -> None:
    # warmup 4 steps, cosine from step 4 to 14, floor 0.1: midpoint (step 9) is 0.1 + 0.9 * 0.5
    assert warmup_cosine(step, total=14, warmup=4, min_ratio=0.1) == pytest.approx(expected)


def test_scheduler_follows_optimizer_steps() -> None:
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1.0, warmup_ratio=0.2), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] < 0.05
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


def test_no_weight_decay_on_biases_norms_positions_and_mask_tokens() -> None:
    system = PretrainSystem(MODEL)
    decay, no_decay = parameter_groups(system.model, 0.05)
    names = {id(p): n for n, p in system.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert "backbone.positions.patchtst.table" in kept and "mask_token" in kept
    assert "backbone.encoder.norm.weight" in kept and "backbone.adapters.patchtst.value_embedding.bias" in kept
    assert "backbone.adapters.patchtst.value_embedding.weight" in decayed and "heads.patchtst.weight" in decayed
    assert not any(n.endswith("bias") or "norm" in n for n in decayed)
    assert len(decayed) + len(kept) == len(names)


def test_optim_config_validation() -> None:
    assert OptimConfig.from_dict({"betas": [0.9, 0.99]}).betas == (0.9, 0.99)
    with pytest.raises(ValueError, match="'momentum'"):
        OptimConfig.from_dict({"lr": 1e-3, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"OptimConfig\.lr"):
        OptimConfig(lr=0.0)
    with pytest.raises(ValueError, match="not both"):
        OptimConfig(warmup_steps=10, warmup_ratio=0.1)
    with pytest.raises(ValueError, match=r"OptimConfig\.betas"):
        OptimConfig(betas=(0.9, 1.5))


def test_single_output_regression_accepts_flat_targets() -> None:
    system = FinetuneSystem(MODEL, {"task": "regression", "num_outputs": 1})
    x = sine_series(4)
    flat = system.training_step((x, torch.arange(4.0)), 0)
    assert torch.equal(flat, system.training_step((x, torch.arange(4.0).view(4, 1)), 0))


def test_cpu_adamw_is_fused_and_follows_the_per_parameter_loop() -> None:
    torch.manual_seed(0)
    fused_model, loop_model = PretrainSystem(MODEL).model, PretrainSystem(MODEL).model
    loop_model.load_state_dict(fused_model.state_dict())
    initial = {k: v.clone() for k, v in fused_model.state_dict().items()}
    config = {"lr": 1e-2, "weight_decay": 0.05}
    fused = build_optimizer(fused_model, config)
    assert fused.defaults["fused"] is True
    groups = [{**g, "params": list(g["params"])} for g in parameter_groups(loop_model, 0.05, 1.0, 1e-2)]
    betas, eps = fused.defaults["betas"], fused.defaults["eps"]
    loop = torch.optim.AdamW(groups, lr=1e-2, betas=betas, eps=eps, foreach=False)  # torch's reference loop
    x = sine_series(8)
    for step in range(5):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            generator = torch.Generator().manual_seed(step)
            optimizer.zero_grad()
            model.step(x, MaskingConfig(), generator).loss.backward()
            optimizer.step()
    for (name, a), b in zip(fused_model.state_dict().items(), loop_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)
    assert not any(torch.equal(v, fused_model.state_dict()[k]) for k, v in initial.items() if v.is_floating_point())


@pytest.mark.gpu
def test_cuda_uses_fused_adamw_and_bf16(tmp_path: Path) -> None:
    system = PretrainSystem(MODEL)
    assert build_optimizer(system.model.cuda()).defaults["fused"] is True
    recorder = LossRecorder()
    trainer = build_trainer(
        {"max_steps": 5, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}, [recorder]
    )
    assert trainer.precision == "bf16-mixed"
    trainer.fit(PretrainSystem(MODEL), datamodule=DataModule(sine_series(64), batch_size=16))
    assert len(recorder.losses) == 5 and all(math.isfinite(v) for v in recorder.losses)


class _Denoising(Objective):
    """An objective registered from outside the core: every token is an input, perturbed by noise, and every
    token is predicted. The system trains it with no code of its own."""

    name = "test_denoising"
    uses_mask = False
    default_term = "denoise"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.heads = self.build_heads(config.encoder.dim)

    def forward(self, batch, mask=None):
        noisy = batch.replace(tokens=batch.tokens + 0.1 * torch.randn_like(batch.tokens))
        return self.apply_heads(self.heads, self.backbone(noisy), batch)

    def modality_loss(self, adapter, pred, part, target):
        every = torch.ones(pred.shape[:2], dtype=torch.bool)
        return adapter.reconstruction_loss(pred, part, every)["mse"]  # a bare tensor: named `default_term`


def test_a_registered_objective_trains_through_the_system_and_logs_its_terms(tmp_path) -> None:
    from mmsdk.contracts.registry import register_objective

    register_objective(_Denoising)
    config = {**MODEL, "objective": "test_denoising"}
    trainer = {
        "max_steps": 4,
        "logger": "csv",
        "progress_bar": False,
        "default_root_dir": str(tmp_path),
        "log_every_n_steps": 1,
    }
    result = mmsdk.pretrain(config, sine_series(16), trainer=trainer, batch_size=4)
    assert isinstance(result.model, _Denoising)
    assert {"train/loss", "train/loss/denoise"} <= set(result.metrics)
    assert result.metrics["train/loss"] == pytest.approx(result.metrics["train/loss/denoise"])
