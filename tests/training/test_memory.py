"""Long runs do not leak: thousands of optimizer steps leave the process's resident memory flat.

Measured by hand on this tiny PatchTST (dim 8, batch 4, CPU, csv logger, checkpoint at each epoch end), with
RSS sampled every 100 steps once 4 epochs of warm-up are over (the first ~1000 steps grow ~500 bytes/step, in one
epoch or several, then level off): the clean loop grows 50-100 bytes/step, while a callback that keeps each step's
(detached, scalar) loss tensor in a list grows ~700 bytes/step, and one that keeps the loss with its autograd
graph (`losses.append(loss)` instead of `loss.item()`) ~200 KB/step. The threshold sits between the first two.
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
STEPS, WARMUP, EVERY = 2500, 1000, 100  # 250 steps an epoch below: 4 epochs of warm-up, then 6 measured
MAX_BYTES_PER_STEP = 512  # 0.73 MiB over the 1500 measured steps


def rss_bytes() -> int:
    """This process's resident set size (VmRSS of /proc/self/status), in bytes."""
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", STATUS.read_text(), re.MULTILINE)
    assert match is not None, "no VmRSS line in /proc/self/status"
    return int(match.group(1)) * 1024


class RssSampler(L.Callback):
    """Samples (optimizer step, RSS) every `every` steps from step `warmup` on."""

    def __init__(self, warmup: int, every: int) -> None:
        self.warmup, self.every = warmup, every
        self.samples: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step >= self.warmup and step % self.every == 0:
            self.samples.append((step, rss_bytes()))


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """The median of the slopes between all pairs of samples: a leak grows every interval and moves it, while one
    allocator step in the first or last third of the window (RSS once rose 2 MiB between two early samples, then
    stayed flat for 1200 steps) does not, where a least-squares line counts it as growth."""
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def test_the_slope_ignores_one_step_but_not_steady_growth() -> None:
    steps = np.arange(1000.0, 2600.0, 100.0)
    assert theil_sen_slope(steps, 1e9 + 2**21 * (steps > 1250)) == 0.0  # the step seen in one run
    assert theil_sen_slope(steps, 1e9 + 700 * steps) == pytest.approx(700)  # a leak of a loss tensor per step


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
    sampler = RssSampler(WARMUP, EVERY)
    trainer = {"max_steps": STEPS, "logger": "csv", "progress_bar": False, "default_root_dir": str(tmp_path)}
    result = mmsdk.pretrain(MODEL, x, trainer=trainer, batch_size=4, callbacks=[sampler])
    assert result.trainer.global_step == STEPS and np.isfinite(result.metrics["train/loss"])

    steps, rss = np.array(sampler.samples, dtype=np.float64).T
    assert len(steps) == (STEPS - WARMUP) // EVERY + 1, sampler.samples
    slope = theil_sen_slope(steps, rss)  # bytes per optimizer step
    growth = (rss[-1] - rss[0]) / 2**20
    assert slope < MAX_BYTES_PER_STEP, (
        f"resident memory grows {slope:.0f} bytes/step ({growth:.2f} MiB over steps {WARMUP}-{STEPS}); "
        f"samples (step, MiB): {[(int(s), round(float(r) / 2**20, 2)) for s, r in zip(steps, rss)]}"
    )
