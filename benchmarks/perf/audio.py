"""Row 4 (CPU): raw 10.24 s clips → Kaldi filterbank → AST-sized encoder → class scores, clips per second.

mmsdk: an SSAST-tokenized classifier (`build_task_model`) fed the (B, T) waveform tensor; the filterbank, the
normalization and the 16 × 16 patches with AST's 10 × 10 stride are inside the model. The peer: transformers'
`ASTFeatureExtractor` (which calls torchaudio's `compliance.kaldi.fbank` clip by clip, then normalizes) and
`ASTForAudioClassification`, both at AST's defaults: 128 mel bins, 1024 frames, 12 × 101 = 1212 patches, ViT-B
(768 wide, 12 layers, 12 heads), 527 classes (AudioSet). Both run in inference mode (`torch.inference_mode`, eval);
the peer's class and distillation tokens make its sequence 1214 long. The FLOPs of one batch are counted by torch.

Sides: fp32 eager on both; bf16 autocast on both (where the CPU has bf16 matmuls; mmsdk's filterbank stays
float32); and mmsdk's product path, the ONNX file `to_onnx` writes from the same model (front end inside, ONNX
Runtime's transformer fusions, verified against eager at export) run by `mmsdk.export.runtime.OnnxModel`. The peer
has no such path (AST's export fails in optimum, and no exported graph holds its front end).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.perf.measure import call_seconds, count_flops, measure_sides, timed_side

BATCH = 8
FRAMES = 1024
CLASSES = 527
ENCODER = {"dim": 768, "depth": 12, "heads": 12, "norm_eps": 1e-12}


def mmsdk_config() -> dict[str, Any]:
    """SSAST patch tokens with AST's fine-tuning stride (10 × 10), AudioSet normalization, 1024 frames."""
    return {
        "adapter": "ssast",
        "adapter_config": {"tokens": "patch", "stride_freq": 10, "stride_time": 10, "max_frames": FRAMES},
        "encoder": ENCODER,
        "objective": "mae",
    }


def clips(count: int, seed: int = 0) -> torch.Tensor:
    """`count` noise clips of exactly 1024 frames at 16 kHz (164 080 samples; the values do not change the time)."""
    from mmsdk.adapters.audio.spectrogram import SpectrogramConfig

    samples = SpectrogramConfig.from_dict(mmsdk_config()["adapter_config"]).samples_for(FRAMES)
    return 0.1 * torch.randn(count, samples, generator=torch.Generator().manual_seed(seed))


def mmsdk_model() -> torch.nn.Module:
    from mmsdk.models import build_task_model

    head = {"task": "classification", "num_outputs": CLASSES}
    return build_task_model(mmsdk_config(), head).eval()


def peer_pipeline() -> tuple[Any, torch.nn.Module]:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    extractor = ASTFeatureExtractor(max_length=FRAMES)
    model = ASTForAudioClassification(ASTConfig(num_labels=CLASSES, max_length=FRAMES)).eval()
    return extractor, model


def run_mmsdk(calls: int, bf16: bool = False) -> list[float]:
    """`calls` batches of raw clips through the mmsdk classifier; the seconds of each."""
    model, x = mmsdk_model(), clips(BATCH)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        seconds, scores = call_seconds(lambda: model(x), calls)
    assert scores.shape == (BATCH, CLASSES)
    return seconds


def run_peer(calls: int, bf16: bool = False) -> list[float]:
    """`calls` batches of the same clips through the peer's extractor and model; the seconds of each. Under bf16
    only the model autocasts: the extractor's torchaudio fbank would come out bf16, which it cannot turn to numpy."""
    extractor, model = peer_pipeline()
    waves = list(clips(BATCH).numpy().astype(np.float32))

    def call() -> torch.Tensor:
        inputs = extractor(waves, sampling_rate=16000, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**inputs).logits

    with torch.inference_mode():
        seconds, scores = call_seconds(call, calls)
    assert scores.shape == (BATCH, CLASSES)
    return seconds


def export_onnx(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The mmsdk classifier as one ONNX graph from raw waveform, with ONNX Runtime's fusions; (path, report)."""
    from mmsdk.export.onnx import to_onnx

    path = directory / "ast_sized.onnx"
    start = time.perf_counter()
    result = to_onnx(mmsdk_model(), path, clips(2), optimize="onnxruntime", verify_batch_sizes=(1, 2))
    return path, {"export_s": time.perf_counter() - start, "max_abs_error": result.max_abs_error}


def run_onnx(calls: int, path: Path, threads: int) -> list[float]:
    """`calls` batches through the exported file in the product runtime; the seconds of each."""
    from mmsdk.export.runtime import OnnxModel

    model, x = OnnxModel(path, threads=threads), clips(BATCH).numpy()
    seconds, scores = call_seconds(lambda: model(x), calls)
    assert scores.shape == (BATCH, CLASSES)
    return seconds


def batch_flops() -> dict[str, int]:
    """FLOPs of one batch on each side (the model; the peer's extractor runs outside torch's counter)."""
    ours = mmsdk_model()
    extractor, peer = peer_pipeline()
    x = clips(BATCH)
    inputs = extractor(list(x.numpy()), sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        return {"mmsdk": count_flops(lambda: ours(x)), "peer": count_flops(lambda: peer(**inputs))}


def tokens() -> dict[str, int]:
    from mmsdk.adapters.audio.ssast import SSASTConfig

    cfg = SSASTConfig.from_dict(mmsdk_config()["adapter_config"])
    ours = cfg.freq_tokens * ((FRAMES - cfg.patch_size[1]) // cfg.stride[1] + 1)
    return {"mmsdk": ours, "peer": ours + 2}


def measure(rounds: int, warmup: int, timed: int, threads: int, bf16: bool) -> dict[str, Any]:
    """Row 4 on the CPU: clips/s from raw waveform to class scores: fp32, bf16 (when `bf16`) and mmsdk's ONNX."""
    flops = batch_flops()
    with tempfile.TemporaryDirectory() as work:
        path, export = export_onnx(Path(work))
        sides = {
            "mmsdk_fp32": timed_side(run_mmsdk, warmup, timed),
            "peer_fp32": timed_side(run_peer, warmup, timed),
            "mmsdk_onnx": timed_side(lambda n: run_onnx(n, path, threads), warmup, timed),
        }
        if bf16:
            sides["mmsdk_bf16"] = timed_side(lambda n: run_mmsdk(n, bf16=True), warmup, timed)
            sides["peer_bf16"] = timed_side(lambda n: run_peer(n, bf16=True), warmup, timed)
        memory = {"mmsdk_fp32": (run_mmsdk, (warmup + 1,)), "peer_fp32": (run_peer, (warmup + 1,))}
        results = measure_sides(sides, flops, BATCH, rounds, memory, threads)
    configuration = {
        "batch": BATCH, "frames": FRAMES, "mel_bins": 128, "patch": [16, 16], "stride": [10, 10],
        "tokens": tokens(), "encoder": ENCODER, "classes": CLASSES, "onnx": export, "rounds": rounds,
        "warmup_calls": warmup, "timed_calls_per_round": timed,
    }  # fmt: skip
    return {"configuration": configuration, "sides": results}
