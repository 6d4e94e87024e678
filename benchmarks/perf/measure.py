"""Measuring tools shared by the performance rows: alternated timing, FLOP counts, the machine's matmul peak, peak
memory of one side in a fresh process, and the environment a result was measured in."""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.flop_counter import FlopCounterMode

PEAK_SIZE = 2048  # square GEMM for the matmul peak
PEAK_RUNS = 5


def environment(threads: int) -> dict[str, Any]:
    """Device, versions and threads of this run."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({cpu}, {os.cpu_count()} cores)"
    return {
        "device": device,
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def matmul_peak(dtype: torch.dtype = torch.float32, size: int = PEAK_SIZE) -> float:
    """The best FLOP/s of a square GEMM of `size` in `dtype` at the current thread count (this machine's peak as
    torch reaches it; the FLOP-utilization figures divide by it)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(PEAK_RUNS):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of `step` (matmuls and attention, forward and backward) by torch's FLOP counter."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def alternate(sides: dict[str, Callable[[int], list[float]]], rounds: int) -> dict[str, list[float]]:
    """Runs every side once per round, in turn (A B A B ...), so machine drift hits them alike.

    Each side is a callable taking the round index and returning the seconds of its timed steps in that round (it
    runs its own warm-up steps first). Returns every side's step seconds over all rounds.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))  # who goes first alternates too
        for name in order:
            times[name] += sides[name](r)
    return times


def summary(seconds: list[float], samples_per_step: int, flops: int | None = None) -> dict[str, Any]:
    """Median ms per step, samples/s and (given the step's FLOPs) achieved FLOP/s of a side's step times."""
    median = statistics.median(seconds)
    out: dict[str, Any] = {
        "ms_per_step": 1e3 * median,
        "samples_per_s": samples_per_step / median,
        "steps_timed": len(seconds),
        "spread_ms": [1e3 * min(seconds), 1e3 * max(seconds)],
    }
    if flops is not None:
        out["flops_per_step"] = flops
        out["flop_per_s"] = flops / median
    return out


def _high_water_mark() -> int:
    """This process's peak resident memory in bytes: VmHWM (reset at exec, unlike `ru_maxrss`, which a spawned
    child inherits from its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux, bytes on macOS


def _child(queue: Any, run: Callable[..., Any], args: tuple[Any, ...], threads: int) -> None:
    torch.set_num_threads(threads)
    run(*args)
    queue.put(_high_water_mark())


def peak_rss(run: Callable[..., Any], args: tuple[Any, ...], threads: int) -> int:
    """Peak resident memory (bytes) of a fresh process that runs `run(*args)`: one side's steps alone, so the
    other side's allocations never count. `run` must be a module-level function (it is pickled)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, run, args, threads))
    process.start()
    value = queue.get(timeout=1800)
    process.join()
    return int(value)


class StepTimer(Callback):
    """Seconds of every training batch (start to end: forward, backward, clipping, optimizer step)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def pretrain_seconds(
    model: dict[str, Any],
    data: torch.Tensor,
    masking: dict[str, Any],
    optim: dict[str, Any],
    batch: int,
    **trainer: Any,
) -> list[float]:
    """The seconds of each step of `mmsdk.pretrain` on `data` (as many steps as it holds batches), taken by a
    callback from batch start to batch end (data loading excluded); `trainer` adds to the trainer config."""
    from mmsdk.training.api import pretrain

    timer, steps = StepTimer(), len(data) // batch
    with tempfile.TemporaryDirectory() as work:
        config = {"max_steps": steps, "progress_bar": False, "logger": "none", "default_root_dir": work, **trainer}
        pretrain(model, data, None, masking, optim, config, batch, callbacks=[timer])
    return timer.seconds


def call_seconds(call: Callable[[], Any], calls: int) -> tuple[list[float], Any]:
    """The seconds of each of `calls` calls of `call`, and the last call's result."""
    seconds, result = [], None
    for _ in range(calls):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def timed_side(run: Callable[[int], list[float]], warmup: int, steps: int) -> Callable[[int], list[float]]:
    """A side for :func:`alternate`: each round runs `warmup + steps` steps of `run` and keeps the last `steps`."""
    return lambda _round: run(warmup + steps)[warmup:]


def measure_sides(
    sides: dict[str, Callable[[int], list[float]]],
    flops: dict[str, int] | None,
    batch: int,
    rounds: int,
    memory: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]],
    threads: int,
) -> dict[str, dict[str, Any]]:
    """Alternates the sides for `rounds`, summarizes each (with the FLOPs of "peer" for sides named peer*, else of
    "mmsdk"), and adds the peak RSS of the sides in `memory` (side → a module-level run and its arguments)."""
    results = {}
    for name, seconds in alternate(sides, rounds).items():
        count = None if flops is None else flops["peer" if name.startswith("peer") else "mmsdk"]
        results[name] = summary(seconds, batch, count)
    for name, (run, args) in memory.items():
        results[name]["peak_rss_bytes"] = peak_rss(run, args, threads)
    return results


def loop_seconds(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    batch: int,
    loss: Callable[[torch.Tensor], torch.Tensor],
    clip: float,
    bf16: bool = False,
) -> list[float]:
    """The seconds of each step of a plain training loop over `data` in batches of `batch` (how a peer is run):
    `loss(x)` (under bf16 autocast when `bf16`), backward, gradient clipping at `clip`, the optimizer step."""
    seconds = []
    for i in range(len(data) // batch):
        x = data[i * batch : (i + 1) * batch]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(x)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def training_sides(
    run_mmsdk: Callable[..., list[float]], run_peer: Callable[..., list[float]], warmup: int, steps: int, bf16: bool
) -> dict[str, Callable[[int], list[float]]]:
    """The fp32 sides of a training-step row and, when `bf16`, both sides under bf16 autocast (mmsdk through its
    `precision: bf16-mixed`, the peer through `run_peer(n, bf16=True)`)."""
    sides = {"mmsdk_fp32": timed_side(run_mmsdk, warmup, steps), "peer_fp32": timed_side(run_peer, warmup, steps)}
    if bf16:
        sides["mmsdk_bf16"] = timed_side(lambda n: run_mmsdk(n, precision="bf16-mixed"), warmup, steps)
        sides["peer_bf16"] = timed_side(lambda n: run_peer(n, bf16=True), warmup, steps)
    return sides
