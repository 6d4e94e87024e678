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

from typing import Any

import torch

from benchmarks.perf.measure import count_flops, loop_seconds, measure_sides, pretrain_seconds, training_sides

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
    optim = {"lr": LR, "weight_decay": 0.0, "betas": (0.9, 0.95)}
    x = waveforms(steps, frames=frames)
    return pretrain_seconds(mmsdk_config(frames), x, MASKING, optim, BATCH, precision=precision, gradient_clip_val=CLIP)


def run_peer(steps: int, bf16: bool = False, width: int = SIZE) -> list[float]:
    """`steps` ViTMAE pretraining steps in a plain loop; the seconds of each. A `width` other than 224 runs with the
    position embeddings interpolated to the wider patch grid (the peer's own `interpolate_pos_encoding`)."""
    from transformers import ViTMAEForPreTraining

    model = ViTMAEForPreTraining(hf_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, betas=(0.9, 0.95))
    wide = width != SIZE

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=batch, interpolate_pos_encoding=wide).loss

    return loop_seconds(model, optimizer, images(steps, width=width), BATCH, loss, CLIP, bf16)


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


def measure(rounds: int, warmup: int, timed: int, threads: int, bf16: bool) -> dict[str, Any]:
    """Row 2 on the CPU: mmsdk's AudioMAE step against ViTMAE's in fp32 and (when `bf16`) under bf16 autocast."""
    flops = step_flops()
    sides = training_sides(run_mmsdk, run_peer, warmup, timed, bf16)
    memory = {"mmsdk_fp32": (run_mmsdk, (warmup + 2,)), "peer_fp32": (run_peer, (warmup + 2,))}
    results = measure_sides(sides, flops, BATCH, rounds, memory, threads)
    configuration = {
        "batch": BATCH, "input": [1, SIZE, SIZE], "patch": PATCH, "tokens": (SIZE // PATCH) ** 2,
        "encoder": ENCODER, "decoder": DECODER, "masking": MASKING, "lr": LR, "clip": CLIP,
        "parameters": parameters(), "rounds": rounds, "warmup_steps": warmup, "timed_steps_per_round": timed,
    }  # fmt: skip
    return {"configuration": configuration, "sides": results}
