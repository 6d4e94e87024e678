"""The performance suite: mmsdk against the implementations users would pick instead, side by side in one process.

    python -m benchmarks.perf                      # every row this machine can run; writes benchmarks/results/perf.*
    python -m benchmarks.perf --rows patchtst --rounds 2

Every comparison alternates its sides round by round (A B A B ..., the first side alternating too) after warm-up
steps, takes the median of the timed steps, and reports ms per step, samples/s, the ratio, peak memory (RSS of a
fresh process running one side alone) and, for transformer steps, the achieved FLOP/s (torch's FLOP counter over
one step) against this machine's matmul peak measured by the suite (the best square GEMM at the same thread count).

Rows so far: 1 (PatchTST pretraining step, `benchmarks/perf/patchtst.py`). The issue's other rows (MAE steps,
point ops, audio front end + encoder, scaling, serving) are not in the suite yet; serving is `benchmarks/export.py`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.perf import patchtst
from benchmarks.perf.measure import PEAK_SIZE, environment, matmul_peak
from benchmarks.report_files import write_report

logger = logging.getLogger("benchmarks.perf")
ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"speedup_fp32": 2.0, "peak_share_fp32": 0.6, "dropout_overhead": 0.10}


def _bf16_matmuls() -> bool:
    """Whether this CPU has bf16 matmul instructions (AVX-512 BF16 or AMX), so a bf16 row means something."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def patchtst_row(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, Any]:
    start = time.perf_counter()
    row = patchtst.measure(args.rounds, args.warmup, args.timed, args.threads, bf16="bf16" in peaks)
    sides = row["sides"]
    ours, peer, dropout = sides["mmsdk_fp32"], sides["peer_fp32"], sides["mmsdk_dropout"]
    row["results"] = {
        "speedup_fp32": peer["ms_per_step"] / ours["ms_per_step"],
        "peak_share_fp32": ours["flop_per_s"] / peaks["fp32"],
        "peer_peak_share_fp32": peer["flop_per_s"] / peaks["fp32"],
        "dropout_overhead": dropout["ms_per_step"] / ours["ms_per_step"] - 1.0,
    }
    if "mmsdk_bf16" in sides:
        row["results"]["speedup_bf16"] = sides["peer_bf16"]["ms_per_step"] / sides["mmsdk_bf16"]["ms_per_step"]
        row["results"]["mmsdk_bf16_over_fp32"] = ours["ms_per_step"] / sides["mmsdk_bf16"]["ms_per_step"]
        row["results"]["peak_share_bf16"] = sides["mmsdk_bf16"]["flop_per_s"] / peaks["bf16"]
    r = row["results"]
    row["targets_met"] = {
        "speedup_fp32 >= 2": r["speedup_fp32"] >= TARGETS["speedup_fp32"],
        "peak_share_fp32 >= 0.6": r["peak_share_fp32"] >= TARGETS["peak_share_fp32"],
        "dropout_overhead <= 0.10": r["dropout_overhead"] <= TARGETS["dropout_overhead"],
    }
    row["seconds"] = time.perf_counter() - start
    return row


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Performance: mmsdk against the peers, side by side",
        "",
        f"Device: {env['device']}; {env['threads']} threads; torch {env['torch']}, transformers "
        f"{env['transformers']}, Python {env['python']}. Matmul peak measured by the suite (best {PEAK_SIZE}² GEMM): "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in report["peaks"].items())
        + ".",
        "",
    ]
    row = report["rows"].get("patchtst")
    if row:
        c = row["configuration"]
        lines += [
            "## 1. PatchTST pretraining step (CPU)",
            "",
            f"Batch {c['batch']}, {c['channels']} channels × context {c['context']}, patch {c['patch']} stride "
            f"{c['stride']}, width {c['width']}, {c['layers']} layers, {c['heads']} heads, FFN {c['ffn']}, "
            f"{c['norm']}, {int(100 * c['masking']['ratio'])} % random masking, AdamW, clipping {c['clip']}. "
            f"mmsdk through `mmsdk.pretrain`; the peer is transformers' `PatchTSTForPretraining` in a plain loop. "
            f"{c['rounds']} alternated rounds of {c['warmup_steps']} warm-up + {c['timed_steps_per_round']} timed "
            "steps per side.",
            "",
            "| side | ms / step | samples / s | GFLOP / step | GFLOP/s | share of peak | peak RSS |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, side in row["sides"].items():
            peak = report["peaks"]["bf16" if name.endswith("bf16") else "fp32"]
            rss = f"{side['peak_rss_bytes'] / 2**20:.0f} MiB" if "peak_rss_bytes" in side else ""
            lines.append(
                f"| {name} | {side['ms_per_step']:.0f} | {side['samples_per_s']:.1f} | "
                f"{side['flops_per_step'] / 1e9:.1f} | {side['flop_per_s'] / 1e9:.1f} | "
                f"{100 * side['flop_per_s'] / peak:.0f} % | {rss} |"
            )
        lines += ["", "| result | value | target |", "|---|---|---|"]
        r = row["results"]
        target = {"speedup_fp32": "≥ 2", "peak_share_fp32": "≥ 0.60", "dropout_overhead": "≤ 0.10"}
        for key, value in r.items():
            lines.append(f"| {key} | {value:.2f} | {target.get(key, '')} |")
        met = ", ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in row["targets_met"].items())
        lines += ["", f"Targets met: {met}.", ""]
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["patchtst"], choices=["patchtst"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    parser.add_argument("--timed", type=int, default=4, help="timed steps per side and round")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "perf")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32)}
    if _bf16_matmuls():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    report: dict[str, Any] = {"environment": environment(args.threads), "peaks": peaks, "rows": {}, "notes": args.note}
    if "patchtst" in args.rows:
        report["rows"]["patchtst"] = patchtst_row(args, peaks)
        logger.info("patchtst: %s", report["rows"]["patchtst"]["results"])
        write_report(report, args.output, markdown)


if __name__ == "__main__":
    main()
