"""The performance suite: mmsdk against the implementations users would pick instead, side by side in one process.

    python -m benchmarks.perf                      # every row this machine can run; writes benchmarks/results/perf.*
    python -m benchmarks.perf --rows mae audio --rounds 2   # reruns these rows, keeps the others in the report

Every comparison alternates its sides round by round (A B A B ..., the first side alternating too) after warm-up
steps, takes the median of the timed steps, and reports ms per step, samples/s, the ratio, peak memory (RSS of a
fresh process running one side alone) and, for transformer steps, the achieved FLOP/s (torch's FLOP counter over
one step) against this machine's matmul peak measured by the suite (the best square GEMM at the same thread count).

Rows so far: 1 (PatchTST pretraining step, `benchmarks/perf/patchtst.py`), 2 on the CPU (AudioMAE against ViTMAE,
`benchmarks/perf/mae.py`) and 4 on the CPU (raw clips → filterbank → AST-sized classifier against transformers'
AST, `benchmarks/perf/audio.py`) and 5 (the scaling of rows 1 and 2 with the token count, `benchmarks/perf/
scaling.py`). Point ops are `benchmarks/pointcloud_ops.py`, serving `benchmarks/export.py`; the GPU rows are not in
the suite yet. Each row keeps the environment and notes it was measured with.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.perf import audio, mae, patchtst, scaling
from benchmarks.perf.measure import PEAK_SIZE, environment, matmul_peak
from benchmarks.report_files import write_report

logger = logging.getLogger("benchmarks.perf")
ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"speedup_fp32": 2.0, "peak_share_fp32": 0.6, "dropout_overhead": 0.10}
MAE_TARGET = 1.5  # row 2: >= 1.5x the peer
AUDIO_TARGET = 2.0  # row 4: >= 2x the peer's clips/s


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


def _speedups(sides: dict[str, Any], pairs: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Ratio name → the peer side's ms over mmsdk's, for each (mmsdk side, peer side) pair measured."""
    return {
        name: sides[peer]["ms_per_step"] / sides[ours]["ms_per_step"]
        for name, (ours, peer) in pairs.items()
        if ours in sides and peer in sides
    }


def mae_row(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, Any]:
    start = time.perf_counter()
    row = mae.measure(args.rounds, args.warmup, args.timed, args.threads, bf16="bf16" in peaks)
    sides = row["sides"]
    row["results"] = _speedups(
        sides,
        {
            "speedup_fp32": ("mmsdk_fp32", "peer_fp32"),
            "speedup_bf16": ("mmsdk_bf16", "peer_bf16"),
            "mmsdk_bf16_over_peer_fp32": ("mmsdk_bf16", "peer_fp32"),
        },
    )
    row["results"]["peak_share_fp32"] = sides["mmsdk_fp32"]["flop_per_s"] / peaks["fp32"]
    row["targets_met"] = {f"speedup_fp32 >= {MAE_TARGET}": row["results"]["speedup_fp32"] >= MAE_TARGET}
    row["seconds"] = time.perf_counter() - start
    return row


def audio_row(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, Any]:
    start = time.perf_counter()
    row = audio.measure(args.rounds, max(1, args.warmup // 2), max(1, args.timed // 2), args.threads, "bf16" in peaks)
    row["results"] = _speedups(
        row["sides"],
        {
            "speedup_fp32": ("mmsdk_fp32", "peer_fp32"),
            "speedup_onnx": ("mmsdk_onnx", "peer_fp32"),
            "speedup_bf16": ("mmsdk_bf16", "peer_bf16"),
        },
    )
    r = row["results"]
    row["targets_met"] = {
        f"speedup_fp32 >= {AUDIO_TARGET}": r["speedup_fp32"] >= AUDIO_TARGET,
        f"speedup_onnx >= {AUDIO_TARGET}": r["speedup_onnx"] >= AUDIO_TARGET,
    }
    row["seconds"] = time.perf_counter() - start
    return row


def scaling_row(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, Any]:
    start = time.perf_counter()
    rounds, warmup, timed = max(1, args.rounds // 2), max(1, args.warmup // 2), max(1, args.timed // 2)
    rows = {
        name: scaling.measure_row(name, scaling.SCALES, rounds, warmup, timed, args.threads) for name in scaling.ROWS
    }
    plot = scaling.plot(rows, args.output.with_name(args.output.name + "_scaling.png"))
    results = {
        f"{name}_exponent_{side}": value for name, row in rows.items() for side, value in row["exponent"].items()
    }
    results.update({f"{name}_speedup_x8": row["sizes"][-1]["speedup"] for name, row in rows.items()})
    return {
        "rows": rows,
        "plot": plot.name,
        "results": results,
        "targets_met": {},
        "seconds": time.perf_counter() - start,
    }


ROWS = {"patchtst": patchtst_row, "mae": mae_row, "audio": audio_row, "scaling": scaling_row}


def _environment_line(env: dict[str, Any], peaks: dict[str, float]) -> str:
    peak = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    return (
        f"Device: {env['device']}; {env['threads']} threads; torch {env['torch']}, transformers {env['transformers']}, "
        f"Python {env['python']}. Matmul peak measured by the suite (best {PEAK_SIZE}² GEMM): {peak}."
    )


def _sides_table(row: dict[str, Any], unit: str) -> list[str]:
    """The sides of a row: time per step (or call), items/s, FLOPs, FLOP/s against the peak, peak RSS."""
    lines = [
        f"| side | ms / {unit} | {'samples' if unit == 'step' else 'clips'} / s | GFLOP / {unit} | GFLOP/s | "
        "share of peak | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, side in row["sides"].items():
        peak = row["peaks"]["bf16" if name.endswith("bf16") else "fp32"]
        rss = f"{side['peak_rss_bytes'] / 2**20:.0f} MiB" if "peak_rss_bytes" in side else ""
        lines.append(
            f"| {name} | {side['ms_per_step']:.0f} | {side['samples_per_s']:.2f} | "
            f"{side['flops_per_step'] / 1e9:.1f} | {side['flop_per_s'] / 1e9:.1f} | "
            f"{100 * side['flop_per_s'] / peak:.0f} % | {rss} |"
        )
    return lines


def _results_table(row: dict[str, Any], targets: dict[str, str]) -> list[str]:
    lines = ["", "| result | value | target |", "|---|---|---|"]
    lines += [f"| {key} | {value:.2f} | {targets.get(key, '')} |" for key, value in row["results"].items()]
    met = ", ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in row["targets_met"].items())
    return [*lines, "", f"Targets met: {met}.", ""]


def _patchtst_section(row: dict[str, Any]) -> list[str]:
    c = row["configuration"]
    return [
        "## 1. PatchTST pretraining step (CPU)",
        "",
        f"Batch {c['batch']}, {c['channels']} channels × context {c['context']}, patch {c['patch']} stride "
        f"{c['stride']}, width {c['width']}, {c['layers']} layers, {c['heads']} heads, FFN {c['ffn']}, "
        f"{c['norm']}, {int(100 * c['masking']['ratio'])} % random masking, AdamW, clipping {c['clip']}. "
        "mmsdk through `mmsdk.pretrain`; the peer is transformers' `PatchTSTForPretraining` in a plain loop. "
        f"{c['rounds']} alternated rounds of {c['warmup_steps']} warm-up + {c['timed_steps_per_round']} timed "
        "steps per side.",
        "",
        *_sides_table(row, "step"),
        *_results_table(row, {"speedup_fp32": "≥ 2", "peak_share_fp32": "≥ 0.60", "dropout_overhead": "≤ 0.10"}),
    ]


def _mae_section(row: dict[str, Any]) -> list[str]:
    c = row["configuration"]
    enc, dec, params = c["encoder"], c["decoder"], c["parameters"]
    return [
        "## 2. MAE pretraining step, AudioMAE against ViTMAE (CPU)",
        "",
        f"Batch {c['batch']} of a 1 × 224 × 224 input, {c['tokens']} patches of {c['patch']} × {c['patch']}, "
        f"{int(100 * c['masking']['ratio'])} % random masking, per-patch normalized targets; encoder "
        f"{enc['dim']} wide, {enc['depth']} layers, {enc['heads']} heads; decoder {dec['dim']} wide, {dec['depth']} "
        f"layers, {dec['heads']} heads; AdamW, clipping {c['clip']}; {params['mmsdk'] / 1e6:.2f} M parameters "
        f"(peer {params['peer'] / 1e6:.2f} M). mmsdk's AudioMAE through `mmsdk.pretrain` from raw waveform (its "
        "step includes the 224-bin filterbank); the peer is `ViTMAEForPreTraining(num_channels=1, image_size=224)` "
        f"fed the image, in a plain loop. {c['rounds']} alternated rounds of {c['warmup_steps']} warm-up + "
        f"{c['timed_steps_per_round']} timed steps per side.",
        "",
        *_sides_table(row, "step"),
        *_results_table(row, {"speedup_fp32": f"≥ {MAE_TARGET}"}),
    ]


def _audio_section(row: dict[str, Any]) -> list[str]:
    c = row["configuration"]
    enc, onnx = c["encoder"], c["onnx"]
    error = max(onnx["max_abs_error"].values())
    return [
        "## 4. Raw clips → filterbank → AST-sized classifier, inference (CPU)",
        "",
        f"Batches of {c['batch']} noise clips of {c['frames']} frames (10.24 s at 16 kHz) → {c['mel_bins']}-bin "
        f"Kaldi filterbank → {c['patch'][0]} × {c['patch'][1]} patches at stride {c['stride'][0]} × "
        f"{c['stride'][1]} ({c['tokens']['mmsdk']} tokens; the peer adds its class and distillation tokens) → "
        f"encoder {enc['dim']} wide, {enc['depth']} layers, {enc['heads']} heads → {c['classes']} scores. mmsdk: "
        "an SSAST-tokenized classifier from the waveform tensor (front end inside the model); the peer: "
        "`ASTFeatureExtractor` (torchaudio's Kaldi fbank clip by clip) + `ASTForAudioClassification`. `mmsdk_onnx` "
        f"is the same mmsdk model exported by `to_onnx` with ONNX Runtime's fusions (export {onnx['export_s']:.0f} "
        f"s, max error against eager {error:.1e}), run by `mmsdk.export.runtime.OnnxModel`. {c['rounds']} "
        f"alternated rounds of {c['warmup_calls']} warm-up + {c['timed_calls_per_round']} timed calls per side.",
        "",
        *_sides_table(row, "call"),
        *_results_table(row, {"speedup_fp32": f"≥ {AUDIO_TARGET}", "speedup_onnx": f"≥ {AUDIO_TARGET}"}),
    ]


def _scaling_section(report_row: dict[str, Any]) -> list[str]:
    lines = [
        "## 5. Scaling of rows 1 and 2 with the token count (CPU)",
        "",
        "Row 1 grows PatchTST's context (512 → 4096 steps), row 2 the AudioMAE clip along time (224 → 1792 frames; "
        "ViTMAE gets a 224 × 224·k image with its position embeddings interpolated); the rest is each row's "
        "configuration (fp32). Tokens are per sample (row 1: every channel's patches). Peak RSS: a fresh process "
        f"running a few steps of one side. Exponent: slope of log(ms per step) against log(tokens). Plot: "
        f"`{report_row['plot']}`.",
        "",
        "| row | scale | tokens | mmsdk ms / step | peer ms / step | speedup | mmsdk peak RSS | peer peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report_row["rows"].items():
        for s in row["sizes"]:
            lines.append(
                f"| {name} | ×{s['scale']} | {s['tokens']} | {s['mmsdk']['ms_per_step']:.0f} | "
                f"{s['peer']['ms_per_step']:.0f} | {s['speedup']:.2f} | {s['mmsdk']['peak_rss_bytes'] / 2**20:.0f} MiB"
                f" | {s['peer']['peak_rss_bytes'] / 2**20:.0f} MiB |"
            )
    lines.append("")
    for name, row in report_row["rows"].items():
        e = row["exponent"]
        lines.append(f"- {name}: step time grows as tokens^{e['mmsdk']:.2f} (mmsdk) and tokens^{e['peer']:.2f} (peer).")
    return [*lines, ""]


SECTIONS = {"patchtst": _patchtst_section, "mae": _mae_section, "audio": _audio_section, "scaling": _scaling_section}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Performance: mmsdk against the peers, side by side", ""]
    for name, section in SECTIONS.items():
        row = report["rows"].get(name)
        if row is None:
            continue
        lines += [*section(row), _environment_line(row["environment"], row["peaks"]), ""]
        lines += [f"- {note}" for note in row.get("notes", [])]
        lines.append("")
    lines += ["Not run here: the GPU rows (2's VideoMAE in bf16, 3 and 4 on GPU; no GPU was lent)."]
    return "\n".join(lines) + "\n"


def load_rows(output: Path) -> dict[str, Any]:
    """The rows of an earlier report at `output`.json (each with the environment and notes it was measured with)."""
    path = output.with_suffix(".json")
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    rows = old.get("rows", {})
    for row in rows.values():  # reports before rows carried their own environment
        row.setdefault("environment", old.get("environment"))
        row.setdefault("peaks", old.get("peaks"))
        row.setdefault("notes", old.get("notes", []))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round (row 4: half)")
    parser.add_argument("--timed", type=int, default=4, help="timed steps per side and round (row 4: half)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "perf")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes of the rows run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32)}
    if _bf16_matmuls():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    report: dict[str, Any] = {"rows": load_rows(args.output)}
    for name in args.rows:
        row = ROWS[name](args, peaks)
        row.update(environment=environment(args.threads), peaks=peaks, notes=args.note)
        report["rows"][name] = row
        logger.info("%s: %s", name, row["results"])
        write_report(report, args.output, markdown)


if __name__ == "__main__":
    main()
