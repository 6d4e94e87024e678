"""Times the pure-torch point-cloud ops at Point-MAE's ShapeNet pretraining sizes.

Per batch of B clouds (default 32, as Point-MAE's pretraining batch):
    grouping          FPS 1024 points -> 64 centers, then kNN 32 + gather + re-centring (`group_points`);
    fps               the FPS step alone;
    knn               the kNN step alone (64 centers x 1024 points, k = 32);
    chamfer_l2_fwd    Point-MAE's loss: L2 Chamfer of every reconstructed 32-point patch against its target,
                      (B * 64, 32, 3) vs (B * 64, 32, 3);
    chamfer_l2_fwdbwd the same with the backward pass;
    chamfer_l2_direct the textbook full-matrix Chamfer (forward + backward), for reference.

Reports the median over repeats (after warm-up) on CPU and, when available, CUDA.

    python benchmarks/pointcloud_ops.py                 # CPU (and CUDA if present)
    python benchmarks/pointcloud_ops.py --repeats 50 --threads 8

Writes `benchmarks/results/pointcloud_ops.json` and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmsdk.adapters.pointcloud.ops import chamfer_distance, farthest_point_sample, group_points, knn

logger = logging.getLogger("benchmarks.pointcloud_ops")

NUM_POINTS, NUM_GROUPS, GROUP_SIZE = 1024, 64, 32  # Point-MAE ShapeNet-55 pretraining config


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median / min / max wall time of `fn` in milliseconds (CUDA work is synchronized)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def direct_chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dist = ((a.unsqueeze(2) - b.unsqueeze(1)) ** 2).sum(-1)  # (B, N, M)
    return dist.min(dim=2).values.mean() + dist.min(dim=1).values.mean()


def bench_device(device: torch.device, batch_size: int, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """All cases on one device."""
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(batch_size, NUM_POINTS, 3, generator=gen).to(device)
    centers_idx = farthest_point_sample(points, NUM_GROUPS)
    centers = torch.gather(points, 1, centers_idx.unsqueeze(-1).expand(-1, -1, 3))
    pred = torch.rand(batch_size * NUM_GROUPS, GROUP_SIZE, 3, generator=gen).to(device).requires_grad_(True)
    target = torch.rand(batch_size * NUM_GROUPS, GROUP_SIZE, 3, generator=gen).to(device)

    def grouping() -> None:
        group_points(points, farthest_point_sample(points, NUM_GROUPS), GROUP_SIZE)

    def chamfer_fwd() -> None:
        with torch.no_grad():
            chamfer_distance(pred, target)

    def chamfer_fwdbwd() -> None:
        chamfer_distance(pred, target).backward()

    def direct_fwdbwd() -> None:
        direct_chamfer_l2(pred, target).backward()

    cases = {
        "grouping": grouping,
        "fps": lambda: farthest_point_sample(points, NUM_GROUPS),
        "knn": lambda: knn(centers, points, GROUP_SIZE),
        "chamfer_l2_fwd": chamfer_fwd,
        "chamfer_l2_fwdbwd": chamfer_fwdbwd,
        "chamfer_l2_direct_fwdbwd": direct_fwdbwd,
    }
    results = {}
    for name, fn in cases.items():
        results[name] = timed(fn, device, repeats, warmup)
        logger.info("%s %-26s %8.2f ms", device.type, name, results[name]["median_ms"])
    return results


def table(results: dict[str, dict[str, dict[str, float]]], batch_size: int) -> str:
    """Markdown table: one row per case, one column per device."""
    devices = list(results)
    lines = [
        f"| case (B={batch_size}, {NUM_POINTS} pts, {NUM_GROUPS} groups x {GROUP_SIZE}) | "
        + " | ".join(f"{d} median ms" for d in devices)
        + " |",
        "|---|" + "---:|" * len(devices),
    ]
    for case in results[devices[0]]:
        lines.append(f"| {case} | " + " | ".join(f"{results[d][case]['median_ms']:.2f}" for d in devices) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default when omitted)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    results = {d.type: bench_device(d, args.batch_size, args.repeats, args.warmup) for d in devices}
    report = {
        "config": {
            "batch_size": args.batch_size,
            "num_points": NUM_POINTS,
            "num_groups": NUM_GROUPS,
            "group_size": GROUP_SIZE,
            "repeats": args.repeats,
            "warmup": args.warmup,
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name() if "cuda" in results else None,
        },
        "results": results,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "pointcloud_ops.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "pointcloud_ops.md").write_text(table(results, args.batch_size) + "\n")
    logger.info("wrote %s", args.output / "pointcloud_ops.json")


if __name__ == "__main__":
    main()
