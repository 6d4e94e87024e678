"""A tiny pretraining run that checkpoints every step and sleeps between steps, so a test can SIGKILL it mid-epoch.

    python tests/training/crash_script.py RUN_DIR [--sleep S] [--shards DIR]

The test imports :func:`run` for the uninterrupted side and the resumed side, so all three share one model, data
and trainer configuration. The name has no `test_` prefix, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import torch

import mmsdk

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2, "dropout": 0.2, "drop_path": 0.2},
    "decoder": {"dim": 16, "depth": 1, "heads": 2, "dropout": 0.2},
    "objective": "mae",
}
TOTAL_STEPS = 12  # 5 batches per epoch: the kill lands mid-epoch, the run crosses epoch boundaries


def series(n: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32).float().view(1, -1, 1)
    return torch.sin(t / 4 + 6.28 * torch.rand(n, 1, 2, generator=g)) + 0.1 * torch.randn(n, 32, 2, generator=g)


class Slow(L.Callback):
    """Sleeps after every step: a window for the kill."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)


class CountSteps(L.Callback):
    """Counts the training steps this process ran (a resumed run runs only the remaining ones)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, *args: object) -> None:
        self.steps += 1


def write_series_shards(directory: Path) -> Path:
    """:func:`series` as pretraining shards of 1 KB chunks (several per loader worker)."""
    from mmsdk.contracts.data import DataSplits
    from mmsdk.contracts.shards import write_shards
    from mmsdk.models.config import ModelConfig

    model = ModelConfig.from_dict(MODEL)
    return write_shards(DataSplits(series()), directory, model, "pretrain", chunk_bytes="1KB", progress=False)


def run(
    root: Path,
    resume: str | None = None,
    sleep: float = 0.0,
    callbacks: list[L.Callback] | None = None,
    shards: Path | None = None,
) -> mmsdk.PretrainResult:
    """The run; with `shards`, the series stream from them through 2 loader workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the killed subprocess and the in-process runs: same kernels, same bits
    try:
        return _run(root, resume, sleep, callbacks, shards)
    finally:
        torch.set_num_threads(threads)


def _run(
    root: Path, resume: str | None, sleep: float, callbacks: list[L.Callback] | None, shards: Path | None
) -> mmsdk.PretrainResult:
    trainer = {
        "max_steps": TOTAL_STEPS,
        "logger": "none",
        "progress_bar": False,
        "default_root_dir": str(root),
        "checkpoint_every_n_steps": 1,
        "deterministic": True,
        "seed": 3,
    }
    callbacks = [*(callbacks or []), *([Slow(sleep)] if sleep else [])]
    optim = {"lr": 1e-2, "warmup_steps": 2}
    data, workers = series(), 0
    if shards is not None:
        from mmsdk.contracts.shards import read_shards
        from mmsdk.models.config import ModelConfig

        data, workers = read_shards(shards, ModelConfig.from_dict(MODEL), "pretrain").train, 2
    return mmsdk.pretrain(
        MODEL, data, optim=optim, trainer=trainer, batch_size=8, ckpt_path=resume, callbacks=callbacks,
        num_workers=workers,
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--shards", type=Path, help="stream the series from these shards (write_series_shards)")
    args = parser.parse_args()
    run(args.root, sleep=args.sleep, shards=args.shards)
