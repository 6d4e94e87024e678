"""The performance rows compare like with like: the token counts and the work each side is configured to do, and the
report keeps rows measured in earlier runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for `benchmarks.perf`

from benchmarks.perf import audio, mae
from benchmarks.perf.__main__ import load_rows, markdown
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.models.config import ModelConfig


def tokenize(config: dict, inputs: torch.Tensor):
    model = ModelConfig.from_dict(config)
    modality = next(iter(model.modalities.values()))
    cls = get_adapter_class(modality.adapter)
    adapter = cls(cls.config_class.from_dict(modality.adapter_config), dim=8)
    return adapter.tokenize(inputs)


def test_the_mae_row_gives_audiomae_the_peers_196_patches_of_256_values() -> None:
    batch = tokenize(mae.mmsdk_config(), mae.waveforms(1)[:2])
    assert batch.tokens.shape == (2, (mae.SIZE // mae.PATCH) ** 2, 8) and batch.targets.shape[-1] == mae.PATCH**2
    assert batch.padding_mask is None  # the clips are exactly 224 frames: no padding tokens
    peer = mae.hf_config()
    assert (peer.num_channels, peer.image_size, peer.patch_size, peer.mask_ratio) == (1, 224, 16, 0.75)
    assert (peer.hidden_size, peer.decoder_hidden_size) == (mae.ENCODER["dim"], mae.DECODER["dim"])


def test_the_audio_row_tokenizes_a_clip_into_asts_patch_grid() -> None:
    from transformers import ASTConfig

    batch = tokenize(audio.mmsdk_config(), audio.clips(1))
    peer = ASTConfig(max_length=audio.FRAMES)
    grid = ((peer.num_mel_bins - 16) // peer.frequency_stride + 1) * ((peer.max_length - 16) // peer.time_stride + 1)
    assert batch.tokens.shape[1] == grid == audio.tokens()["mmsdk"] == audio.tokens()["peer"] - 2


def test_a_report_keeps_earlier_rows_and_renders_them(tmp_path: Path) -> None:
    env = {"device": "CPU (test)", "threads": 1, "torch": "t", "transformers": "x", "python": "3"}
    side = {"ms_per_step": 100.0, "samples_per_s": 10.0, "flops_per_step": 1e9, "flop_per_s": 1e10}
    row = {
        "configuration": {
            "batch": 16, "tokens": 196, "patch": 16, "masking": {"ratio": 0.75}, "clip": 1.0, "rounds": 1,
            "warmup_steps": 1, "timed_steps_per_round": 1, "encoder": mae.ENCODER, "decoder": mae.DECODER,
            "parameters": {"mmsdk": 1e6, "peer": 1e6},
        },
        "sides": {"mmsdk_fp32": side, "peer_fp32": {**side, "ms_per_step": 120.0}},
        "results": {"speedup_fp32": 1.2}, "targets_met": {"speedup_fp32 >= 1.5": False},
    }  # fmt: skip
    old = {"environment": env, "peaks": {"fp32": 1e11}, "notes": ["an old note"], "rows": {"mae": row}}
    (tmp_path / "perf.json").write_text(json.dumps(old))
    rows = load_rows(tmp_path / "perf")
    assert rows["mae"]["environment"] == env and rows["mae"]["notes"] == ["an old note"]
    text = markdown({"rows": rows})
    assert "## 2. MAE pretraining step" in text and "| mmsdk_fp32 | 100 |" in text and "- an old note" in text
    assert "speedup_fp32 >= 1.5: **no**" in text


def test_the_scaling_exponent_is_the_log_log_slope() -> None:
    from benchmarks.perf.scaling import exponent

    assert exponent([100, 200, 400, 800], [3.0, 6.0, 12.0, 24.0]) == pytest.approx(1.0)
    assert exponent([100, 200, 400, 800], [1.0, 4.0, 16.0, 64.0]) == pytest.approx(2.0)


def test_the_scaled_rows_grow_the_token_count_they_report() -> None:
    from benchmarks.perf import patchtst, scaling

    batch = tokenize(mae.mmsdk_config(frames=mae.SIZE * 2), mae.waveforms(1, frames=mae.SIZE * 2)[:1])
    assert batch.tokens.shape[1] == scaling.ROWS["mae"]["tokens"](2) == 392
    context = patchtst.CONTEXT * 2
    config = patchtst.mmsdk_config(context=context)
    tokens = tokenize(config, patchtst.data(1, context=context)[:1]).tokens  # (C, N, D): channel-independent
    assert tokens.shape[0] * tokens.shape[1] == scaling.ROWS["patchtst"]["tokens"](2) == 7 * (context // 12)
