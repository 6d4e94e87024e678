"""Row 1: one PatchTST pretraining step, mmsdk through `mmsdk.pretrain` (Lightning, as a user runs it) against
transformers' `PatchTSTForPretraining` in a plain loop, on the same configuration.

The configuration is PatchTST's ETTh1 self-supervised one: 7 channels, context 512, patch 12 stride 12, width 128,
3 layers, 16 heads, FFN 512, BatchNorm, instance normalization, 40 % random masking, batch 64, AdamW (lr 1e-4),
gradient clipping at 1.0 on both sides (mmsdk's default). The mmsdk model is `config_from_hf` of the peer's config,
so both compute the same function (tests/adapters/timeseries hold the converted outputs to the peer's). The data is
random series of that shape: step time does not depend on the values.

Sides, alternated round by round (each round: warm-up steps, then timed steps):
  fp32: mmsdk vs the peer, dropout 0 on both;
  dropout: mmsdk with encoder dropout 0.2 vs mmsdk with 0 (the cost of dropout);
  bf16: both under bf16 autocast (mmsdk `precision: bf16-mixed`, the peer inside `torch.autocast("cpu")`), where the
        CPU has bf16 matmuls (an extra row: the targets are fp32).
mmsdk's step time is taken by a Lightning callback from batch start to batch end (forward, backward, clipping,
optimizer and scheduler step; data loading excluded, as the peer's loop has its batches ready).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.perf.measure import (
    count_flops,
    loop_seconds,
    measure_sides,
    pretrain_seconds,
    timed_side,
    training_sides,
)

BATCH = 64
CONTEXT, CHANNELS = 512, 7
LR = 1e-4
CLIP = 1.0
MASKING = {"strategy": "random", "ratio": 0.4}
DROPOUT = 0.2


def hf_config(context: int = CONTEXT) -> Any:
    """The peer's configuration (dropout 0 everywhere); `context` steps (the scaling row grows it)."""
    from transformers import PatchTSTConfig

    return PatchTSTConfig(
        num_input_channels=CHANNELS, context_length=context, patch_length=12, patch_stride=12, d_model=128,
        num_hidden_layers=3, num_attention_heads=16, ffn_dim=512, norm_type="batchnorm", pre_norm=True,
        scaling="std", mask_type="random", random_mask_ratio=MASKING["ratio"], dropout=0.0,
        path_dropout=0.0, ff_dropout=0.0, attention_dropout=0.0, positional_dropout=0.0, head_dropout=0.0,
    )  # fmt: skip


def mmsdk_config(dropout: float = 0.0, context: int = CONTEXT) -> dict[str, Any]:
    from mmsdk.adapters.timeseries.hf_patchtst import config_from_hf

    model, _ = config_from_hf(hf_config(context), "pretraining")
    model["encoder"] = {**model["encoder"], "dropout": dropout}
    return model


def data(steps: int, seed: int = 0, context: int = CONTEXT) -> torch.Tensor:
    return torch.randn(steps * BATCH, context, CHANNELS, generator=torch.Generator().manual_seed(seed))


def run_mmsdk(steps: int, dropout: float = 0.0, precision: str = "32-true", context: int = CONTEXT) -> list[float]:
    """`steps` mmsdk pretraining steps through `mmsdk.pretrain`; the seconds of each."""
    optim = {"lr": LR, "weight_decay": 0.0, "betas": (0.9, 0.999)}
    x = data(steps, context=context)
    return pretrain_seconds(
        mmsdk_config(dropout, context), x, MASKING, optim, BATCH, precision=precision, gradient_clip_val=CLIP
    )


def run_peer(steps: int, bf16: bool = False, context: int = CONTEXT) -> list[float]:
    """`steps` steps of the peer in a plain loop; the seconds of each."""
    from transformers import PatchTSTForPretraining

    model = PatchTSTForPretraining(hf_config(context)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    loss = lambda batch: model(past_values=batch).loss  # noqa: E731
    return loop_seconds(model, optimizer, data(steps, context=context), BATCH, loss, CLIP, bf16)


def step_flops() -> dict[str, int]:
    """FLOPs of one training step (forward + backward) of each side, counted by torch."""
    from transformers import PatchTSTForPretraining

    from mmsdk.contracts.mask_strategies import MaskingConfig
    from mmsdk.models import build_model
    from mmsdk.models.config import ModelConfig

    x = data(1)
    peer = PatchTSTForPretraining(hf_config())
    ours = build_model(ModelConfig.from_dict(mmsdk_config()))
    masking = MaskingConfig(**MASKING)
    return {
        "peer": count_flops(lambda: peer(past_values=x).loss.backward()),
        "mmsdk": count_flops(lambda: ours.step(x, masking, None).loss.backward()),
    }


def measure(rounds: int, warmup: int, timed: int, threads: int, bf16: bool) -> dict[str, Any]:
    """Row 1: the fp32 comparison, the cost of dropout and (when `bf16`) the bf16 comparison."""
    flops = step_flops()
    sides = training_sides(run_mmsdk, run_peer, warmup, timed, bf16)
    sides["mmsdk_dropout"] = timed_side(lambda n: run_mmsdk(n, dropout=DROPOUT), warmup, timed)
    memory = {"mmsdk_fp32": (run_mmsdk, (warmup + 2,)), "peer_fp32": (run_peer, (warmup + 2,))}
    results = measure_sides(sides, flops, BATCH, rounds, memory, threads)
    configuration = {
        "batch": BATCH, "context": CONTEXT, "channels": CHANNELS, "patch": 12, "stride": 12, "width": 128,
        "layers": 3, "heads": 16, "ffn": 512, "norm": "batchnorm", "masking": MASKING, "lr": LR, "clip": CLIP,
        "dropout_side": DROPOUT, "rounds": rounds, "warmup_steps": warmup, "timed_steps_per_round": timed,
    }  # fmt: skip
    return {"configuration": configuration, "sides": results}
