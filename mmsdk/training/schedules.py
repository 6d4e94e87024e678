"""Learning-rate schedules, each a multiplier of the base learning rate at a 0-based optimizer step.

- `warmup_cosine` (the default): linear warmup, then a cosine down to `min_lr_ratio`.
- `one_cycle`: torch's `OneCycleLR` with cosine annealing and its default factors, written as a multiplier so it
  resumes from the scheduler's step counter like the others: from lr / 25 up to lr over the warmup, then down to
  lr / 250 000 at the last step. PatchTST trains its large datasets with it (`--lradj TST --pct_start 0.2`).
- `epoch_decay`: the learning rate held, then multiplied by `gamma` once per epoch. PatchTST's ETTh1 and ETTm
  scripts train with it (`--lradj type3`: 0.9 per epoch after the fourth).
"""

from __future__ import annotations

import math

ONE_CYCLE_DIV = 25.0
"""`OneCycleLR`'s div_factor: the schedule starts at lr / 25."""
ONE_CYCLE_FINAL_DIV = 1e4
"""`OneCycleLR`'s final_div_factor: it ends at lr / 25 / 1e4."""


def warmup_cosine(step: int, total: int | float, warmup: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based).

    Linear warmup from `1/warmup` to 1 over the first `warmup` steps, then a cosine from 1 down to `min_ratio` at
    step `total`. A non-finite or non-positive `total` (unbounded run) keeps the multiplier at 1 after warmup.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if not math.isfinite(total) or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def one_cycle(step: int, total: int, warmup: int) -> float:
    """Multiplier of torch's `OneCycleLR(max_lr=lr, total_steps=total, pct_start=warmup / total)` at `step`.

    The rise ends at step `warmup - 1` (at the peak), the fall at step `total - 1`; later steps stay at the end
    value (torch raises there instead).
    """
    initial = 1.0 / ONE_CYCLE_DIV
    final = initial / ONE_CYCLE_FINAL_DIV
    step = min(step, total - 1)
    rise_end = float(warmup) - 1.0
    if step <= rise_end:
        return _cos_anneal(initial, 1.0, step / rise_end if rise_end > 0 else 1.0)
    span = (total - 1) - rise_end
    return _cos_anneal(1.0, final, (step - rise_end) / span if span > 0 else 1.0)


def epoch_decay(step: int, steps_per_epoch: int, gamma: float, start_epoch: int, warmup: int = 0) -> float:
    """Multiplier `gamma ** max(0, epoch - start_epoch)` of the epoch that `step` falls in, after an optional
    linear warmup of `warmup` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    epoch = step // steps_per_epoch
    return gamma ** max(0, epoch - start_epoch)
