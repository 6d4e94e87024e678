"""Row 5 (CPU): how step time and peak memory of rows 1 and 2 grow with the token count (×1, ×2, ×4, ×8), both
sides, and the exponent of the growth.

Row 1 grows PatchTST's context (512 → 4096 steps: 42 → 341 patches per channel); row 2 grows the AudioMAE clip
along time (224 → 1792 frames: 196 → 1568 patches; the peer, ViTMAE, gets a 224 × 224·k image with its position
embeddings interpolated). Everything else is the row's configuration. At each size the two sides alternate round by
round (warm-up steps, then timed steps); peak memory is the RSS of a fresh process running a few steps of one side
alone. The exponent is the least-squares slope of log(ms per step) against log(tokens) over the sizes: 1 is linear
(the projections and MLPs), 2 quadratic (attention scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf import mae, patchtst
from benchmarks.perf.measure import measure_sides, timed_side

SCALES = (1, 2, 4, 8)


def _mmsdk_patchtst(steps: int, scale: int) -> list[float]:
    return patchtst.run_mmsdk(steps, context=patchtst.CONTEXT * scale)


def _peer_patchtst(steps: int, scale: int) -> list[float]:
    return patchtst.run_peer(steps, context=patchtst.CONTEXT * scale)


def _mmsdk_mae(steps: int, scale: int) -> list[float]:
    return mae.run_mmsdk(steps, frames=mae.SIZE * scale)


def _peer_mae(steps: int, scale: int) -> list[float]:
    return mae.run_peer(steps, width=mae.SIZE * scale)


ROWS: dict[str, dict[str, Any]] = {
    "patchtst": {
        "sides": {"mmsdk": _mmsdk_patchtst, "peer": _peer_patchtst},
        "tokens": lambda k: patchtst.CHANNELS * (patchtst.CONTEXT * k // 12),  # per sample, every channel
        "batch": patchtst.BATCH,
    },
    "mae": {
        "sides": {"mmsdk": _mmsdk_mae, "peer": _peer_mae},
        "tokens": lambda k: (mae.SIZE // mae.PATCH) ** 2 * k,
        "batch": mae.BATCH,
    },
}


def exponent(tokens: list[int], ms: list[float]) -> float:
    """The slope of log(ms) against log(tokens) (least squares)."""
    return float(np.polyfit(np.log(tokens), np.log(ms), 1)[0])


def measure_row(
    name: str, scales: tuple[int, ...], rounds: int, warmup: int, timed: int, threads: int
) -> dict[str, Any]:
    """One row's scaling: per size, both sides' step time (alternated) and peak RSS; the exponent of each side."""
    spec = ROWS[name]
    sizes = []
    for scale in scales:
        sides = {
            side: timed_side(lambda n, run=run, scale=scale: run(n, scale), warmup, timed)
            for side, run in spec["sides"].items()
        }
        memory = {side: (run, (warmup + 1, scale)) for side, run in spec["sides"].items()}
        entry: dict[str, Any] = {"scale": scale, "tokens": spec["tokens"](scale)}
        entry.update(measure_sides(sides, None, spec["batch"], rounds, memory, threads))
        entry["speedup"] = entry["peer"]["ms_per_step"] / entry["mmsdk"]["ms_per_step"]
        sizes.append(entry)
    tokens = [s["tokens"] for s in sizes]
    return {
        "sizes": sizes,
        "exponent": {side: exponent(tokens, [s[side]["ms_per_step"] for s in sizes]) for side in spec["sides"]},
        "rounds": rounds,
        "warmup_steps": warmup,
        "timed_steps_per_round": timed,
    }


def plot(rows: dict[str, Any], path: Path) -> Path:
    """Log-log step time and peak RSS against tokens, both sides of each row (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, row in rows.items():
        tokens = [s["tokens"] for s in row["sizes"]]
        for side, style in (("mmsdk", "-o"), ("peer", "--s")):
            label = f"{name} {side} (exponent {row['exponent'][side]:.2f})"
            axes[0].plot(tokens, [s[side]["ms_per_step"] for s in row["sizes"]], style, label=label)
            axes[1].plot(tokens, [s[side]["peak_rss_bytes"] / 2**20 for s in row["sizes"]], style, label=label)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax, ylabel in zip(axes, ("ms per step", "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers at the decades
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tokens per sample")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].yaxis.set_minor_formatter(ScalarFormatter())  # peak RSS spans less than a decade: label the minor ticks
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
