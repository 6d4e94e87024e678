"""Row 2 (CPU): one MAE pretraining step on the same 196 tokens, mmsdk's AudioMAE through `mmsdk.pretrain` against
transformers' `ViTMAEForPreTraining(num_channels=1, image_size=224)` in a plain loop.

Both sides are ViT-S-sized: encoder 384 wide, 12 layers, 6 heads, MLP 1536; decoder 256 wide, 4 layers, 8 heads;
16 × 16 patches of a 224 × 224 single-channel input (196 tokens), 75 % random masking, per-patch normalized targets
(`norm_pix_loss`), batch 16, AdamW (lr 1.5e-4), gradient clipping at 1.0. The mmsdk model starts from raw waveform:
each step also computes the 224-bin Kaldi filterbank of 224 frames (2.255 s at 16 kHz), which the peer, fed the
spectrogram image, does not; the peer keeps ViT's class token (197 encoder tokens at 0 % masking, 50 at 75 %). The
FLOPs of both steps are counted by torch and reported, so the table shows the work each side does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.perf.measure import alternate, count_flops, peak_rss, summary
from benchmarks.perf.patchtst import StepTimer

BATCH = 16
SIZE, PATCH = 224, 16
ENCODER = {"dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0}
DECODER = {"dim": 256, "depth": 4, "heads": 8, "mlp_ratio": 4.0}
MASKING = {"strategy": "random", "ratio": 0.75}
LR = 1.5e-4
CLIP = 1.0


def mmsdk_config(frames: int = SIZE) -> dict[str, Any]:
    """AudioMAE on 224 mel bins × 224 frames: 14 × 14 patches of 16 × 16 (the scaling row takes more frames)."""
    return {
        "adapter": "audiomae",
        "adapter_config": {"fbank": {"num_mel_bins": SIZE}, "max_frames": frames},
        "encoder": ENCODER,
        "decoder": DECODER,
        "objective": "mae",
        "norm_targets": True,
    }


def hf_config() -> Any:
    from transformers import ViTMAEConfig

    return ViTMAEConfig(
        image_size=SIZE, patch_size=PATCH, num_channels=1, hidden_size=ENCODER["dim"],
        num_hidden_layers=ENCODER["depth"], num_attention_heads=ENCODER["heads"], intermediate_size=4 * ENCODER["dim"],
        decoder_hidden_size=DECODER["dim"], decoder_num_hidden_layers=DECODER["depth"],
        decoder_num_attention_heads=DECODER["heads"], decoder_intermediate_size=4 * DECODER["dim"],
        mask_ratio=MASKING["ratio"], norm_pix_loss=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def waveforms(steps: int, seed: int = 0, frames: int = SIZE) -> torch.Tensor:
    """`steps` batches of noise clips exactly `frames` frames long (step time does not depend on the values)."""
    from mmsdk.adapters.audio.spectrogram import SpectrogramConfig

    samples = SpectrogramConfig.from_dict(mmsdk_config(frames)["adapter_config"]).samples_for(frames)
    return 0.1 * torch.randn(steps * BATCH, samples, generator=torch.Generator().manual_seed(seed))


def images(steps: int, seed: int = 0, width: int = SIZE) -> torch.Tensor:
    return torch.randn(steps * BATCH, 1, SIZE, width, generator=torch.Generator().manual_seed(seed))


def run_mmsdk(steps: int, precision: str = "32-true", frames: int = SIZE) -> list[float]:
    """`steps` AudioMAE pretraining steps through `mmsdk.pretrain`; the seconds of each."""
    from mmsdk.training.api import pretrain

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as work:
        trainer = {"max_steps": steps, "progress_bar": False, "logger": "none", "default_root_dir": work,
                   "gradient_clip_val": CLIP, "precision": precision}  # fmt: skip
        optim = {"lr": LR, "weight_decay": 0.0, "betas": (0.9, 0.95)}
        pretrain(
            mmsdk_config(frames),
            waveforms(steps, frames=frames),
            None,
            MASKING,
            optim,
            trainer,
            BATCH,
            callbacks=[timer],
        )
    return timer.seconds


def run_peer(steps: int, bf16: bool = False, width: int = SIZE) -> list[float]:
    """`steps` ViTMAE pretraining steps in a plain loop; the seconds of each. A `width` other than 224 runs with the
    position embeddings interpolated to the wider patch grid (the peer's own `interpolate_pos_encoding`)."""
    from transformers import ViTMAEForPreTraining

    model = ViTMAEForPreTraining(hf_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, betas=(0.9, 0.95))
    x, seconds, wide = images(steps, width=width), [], width != SIZE
    for i in range(steps):
        batch = x[i * BATCH : (i + 1) * BATCH]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixel_values=batch, interpolate_pos_encoding=wide).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def step_flops() -> dict[str, int]:
    """FLOPs of one training step (forward + backward) of each side, counted by torch."""
    from transformers import ViTMAEForPreTraining

    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.models import build_model
    from mmsdk.models.config import ModelConfig

    peer = ViTMAEForPreTraining(hf_config())
    ours = build_model(ModelConfig.from_dict(mmsdk_config()))
    masking = MaskingConfig(**MASKING)
    x, image = waveforms(1), images(1)
    return {
        "peer": count_flops(lambda: peer(pixel_values=image).loss.backward()),
        "mmsdk": count_flops(lambda: ours.step(x, masking, None).loss.backward()),
    }


def parameters() -> dict[str, int]:
    from transformers import ViTMAEForPreTraining

    from mmsdk.models import build_model
    from mmsdk.models.config import ModelConfig

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "mmsdk": count(build_model(ModelConfig.from_dict(mmsdk_config()))),
        "peer": count(ViTMAEForPreTraining(hf_config())),
    }


def _timed(run: Callable[[int], list[float]], warmup: int, timed: int) -> Callable[[int], list[float]]:
    return lambda _round: run(warmup + timed)[warmup:]


def measure(rounds: int, warmup: int, timed: int, threads: int, bf16: bool) -> dict[str, Any]:
    """Row 2 on the CPU: mmsdk's AudioMAE step against ViTMAE's in fp32 and (when `bf16`) under bf16 autocast."""
    flops = step_flops()
    sides = {"mmsdk_fp32": _timed(run_mmsdk, warmup, timed), "peer_fp32": _timed(run_peer, warmup, timed)}
    if bf16:
        sides["mmsdk_bf16"] = _timed(lambda n: run_mmsdk(n, precision="bf16-mixed"), warmup, timed)
        sides["peer_bf16"] = _timed(lambda n: run_peer(n, bf16=True), warmup, timed)
    times = alternate(sides, rounds)
    results = {}
    for name, seconds in times.items():
        results[name] = summary(seconds, BATCH, flops["peer" if name.startswith("peer") else "mmsdk"])
    memory_steps = warmup + 2
    results["mmsdk_fp32"]["peak_rss_bytes"] = peak_rss(run_mmsdk, (memory_steps,), threads)
    results["peer_fp32"]["peak_rss_bytes"] = peak_rss(run_peer, (memory_steps,), threads)
    configuration = {
        "batch": BATCH, "input": [1, SIZE, SIZE], "patch": PATCH, "tokens": (SIZE // PATCH) ** 2,
        "encoder": ENCODER, "decoder": DECODER, "masking": MASKING, "lr": LR, "clip": CLIP,
        "parameters": parameters(), "rounds": rounds, "warmup_steps": warmup, "timed_steps_per_round": timed,
    }  # fmt: skip
    return {"configuration": configuration, "sides": results}
