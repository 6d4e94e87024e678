"""Exact resume: an interrupted-and-resumed run ends with bit-identical parameters to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmsdk.training import pretrain
from mmsdk.training.data import DataModule, ResumableSampler

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2, "dropout": 0.2, "drop_path": 0.2},
    "decoder": {"dim": 16, "depth": 1, "heads": 2, "dropout": 0.2},
    "objective": "mae",
}
TOTAL_STEPS = 8  # 5 batches per epoch: the run crosses an epoch boundary


def _series(n: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32).float().view(1, -1, 1)
    return torch.sin(t / 4 + 6.28 * torch.rand(n, 1, 2, generator=g)) + 0.1 * torch.randn(n, 32, 2, generator=g)


def _run(root: Path, ckpt_path: str | None = None, every: int | None = None):
    trainer = {
        "max_steps": TOTAL_STEPS,
        "logger": "none",
        "progress_bar": False,
        "default_root_dir": str(root),
        "checkpoint_every_n_steps": every,
        "keep_all_checkpoints": True,
        "deterministic": True,
        "seed": 3,
    }
    optim = {"lr": 1e-2, "warmup_steps": 2}
    return pretrain(
        MODEL, _series(), val_data=_series(8), optim=optim, trainer=trainer, batch_size=8, ckpt_path=ckpt_path
    )


@pytest.mark.parametrize("resume_step", [3, 5, 6], ids=["mid-epoch-0", "end-of-epoch-0", "mid-epoch-1"])
def test_resume_from_mid_run_checkpoint_is_exact(tmp_path: Path, resume_step: int) -> None:
    full = _run(tmp_path / "full", every=resume_step)
    ckpts = sorted((tmp_path / "full").rglob(f"*step={resume_step}.ckpt"))
    assert len(ckpts) == 1, list((tmp_path / "full").rglob("*.ckpt"))
    resumed = _run(tmp_path / "resumed", ckpt_path=str(ckpts[0]))
    assert resumed.trainer.global_step == full.trainer.global_step == TOTAL_STEPS
    full_params = dict(full.model.named_parameters())
    for name, value in resumed.model.named_parameters():
        assert torch.equal(value, full_params[name]), name


def test_resumed_run_differs_from_a_fresh_one(tmp_path: Path) -> None:
    """Guards the exact-resume test: a different seed really changes the final parameters."""
    a = _run(tmp_path / "a")
    b = pretrain(
        MODEL,
        _series(),
        optim={"lr": 1e-2, "warmup_steps": 2},
        trainer={
            "max_steps": TOTAL_STEPS,
            "logger": "none",
            "progress_bar": False,
            "default_root_dir": str(tmp_path / "b"),
            "seed": 4,
        },
        batch_size=8,
    )
    assert not all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    data = torch.arange(20).float().view(20, 1)
    first = ResumableSampler(data, seed=1)
    second = ResumableSampler(data, seed=1)
    first.set_epoch(2)
    second.set_epoch(2)
    assert list(first) == list(second)
    second.set_epoch(3)
    assert list(first) != list(second)
    order = list(first)
    first.resume(2, 5)
    assert list(first) == order[5:]
    assert list(first) == order  # the skip applies to one iteration only


def test_loader_state_round_trip_continues_mid_epoch() -> None:
    dm = DataModule(torch.randn(40, 4), batch_size=8, seed=0)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = [b[0] for b in loader]
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batches"] == 2

    fresh = DataModule(torch.randn(40, 4), batch_size=8, seed=0).train_dataloader()
    fresh.dataset.tensors = loader.dataset.tensors
    fresh.load_state_dict(state)
    rest = [b[0] for b in fresh]
    assert len(rest) == 3
    assert all(torch.equal(a, b) for a, b in zip(rest, batches[2:]))
    assert fresh.state_dict()["batches"] == 5
