"""Long runs do not leak: thousands of optimizer steps leave the process's resident memory flat.

Measured by hand on this tiny PatchTST (dim 8, batch 4, 250 steps an epoch, CPU, csv logger, checkpoint at each
epoch end), with RSS read after the last step of every epoch from the last of 4 warm-up epochs on: in three runs the
clean loop's epochs grew 0-96 KiB, the median epoch 14-33 KiB (57-131 bytes/step), mostly at the epoch boundary
(checkpoint, logger flush), and in one CI run RSS rose 1.45 MiB across one boundary in a single allocator step and
stayed flat otherwise. A callback that keeps each step's (detached, scalar) loss tensor in a list grew 140-172 KiB
every epoch (600-650 bytes/step by the median epoch, two runs), and one that keeps the loss with its autograd graph
(`losses.append(loss)` instead of `loss.item()`) ~200 KB/step. So the test takes the median of the per-epoch
growths: a leak moves every epoch, an allocator step only one, and the threshold sits between the clean loop and the
scalar leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

import mmsdk

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 8, "depth": 1, "heads": 2},
    "objective": "mae",
}
STATUS = Path("/proc/self/status")
STEPS, STEPS_PER_EPOCH, WARMUP_EPOCHS = 2500, 250, 4  # 1000 series, batch 4: 4 epochs of warm-up, 6 measured
MAX_BYTES_PER_STEP = 256  # 64 KiB an epoch, by the median epoch


def rss_bytes() -> int:
    """This process's resident set size (VmRSS of /proc/self/status), in bytes."""
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", STATUS.read_text(), re.MULTILINE)
    assert match is not None, "no VmRSS line in /proc/self/status"
    return int(match.group(1)) * 1024


class RssSampler(L.Callback):
    """Reads (optimizer step, RSS) after the last training step of every epoch from the last warm-up epoch on."""

    def __init__(self, warmup_epochs: int) -> None:
        self.warmup_epochs = warmup_epochs
        self.samples: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if trainer.current_epoch >= self.warmup_epochs - 1 and args[-1] == trainer.num_training_batches - 1:
            self.samples.append((trainer.global_step, rss_bytes()))


def median_growth(samples: list[tuple[int, int]]) -> float:
    """Bytes per step of the median epoch: one step anywhere in the window does not move it, a leak does."""
    steps, rss = np.array(samples, dtype=np.float64).T
    return float(np.median(np.diff(rss) / np.diff(steps)))


def test_the_median_epoch_ignores_one_step_but_not_steady_growth() -> None:
    steps = np.arange(750, 2750, 250)
    stepped = [(s, 10**9 + 6144 * i + 2**21 * (s > 1600)) for i, s in enumerate(steps)]  # the CI run's step
    assert median_growth(stepped) == pytest.approx(6144 / 250)
    leaky = [(s, 10**9 + 600 * s + 2**21 * (s > 1600)) for s in steps]  # a scalar loss tensor kept per step
    assert median_growth(leaky) == pytest.approx(600)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test: a model this small trains several times faster on one, above all on a
    busy machine (with 2 threads on shared cores, every tiny op waits for the other thread: 10-50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.skipif(not STATUS.is_file(), reason="reads VmRSS from /proc/self/status (Linux)")
def test_thousands_of_pretraining_steps_do_not_grow_memory(tmp_path: Path, one_thread: None) -> None:
    x = torch.randn(1000, 32, 2, generator=torch.Generator().manual_seed(0))
    sampler = RssSampler(WARMUP_EPOCHS)
    trainer = {"max_steps": STEPS, "logger": "csv", "progress_bar": False, "default_root_dir": str(tmp_path)}
    result = mmsdk.pretrain(MODEL, x, trainer=trainer, batch_size=4, callbacks=[sampler])
    assert result.trainer.global_step == STEPS and np.isfinite(result.metrics["train/loss"])

    assert len(sampler.samples) == STEPS // STEPS_PER_EPOCH - WARMUP_EPOCHS + 1, sampler.samples
    per_step = median_growth(sampler.samples)
    assert per_step < MAX_BYTES_PER_STEP, (
        f"resident memory grows {per_step:.0f} bytes/step in the median epoch; "
        f"readings (step, MiB): {[(s, round(r / 2**20, 3)) for s, r in sampler.samples]}"
    )
