"""The VideoMAE adapter: tube embedding = Conv3d, tube masking, positions on other grids, the size rule, bad input,
next-tube prediction, decoding and pictures, and a model pretrained at one clip size fine-tuned and exported at
another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmsdk.adapters.video.masking import tube_strategy
from mmsdk.adapters.video.videomae import (
    VideoMAEAdapter,
    VideoMAEConfig,
    example_clips,
    fold_tubes,
    to_tubes,
    tube_grid_positions,
)
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import load_backbone, save_pretrained
from mmsdk.models import TaskModel, build_model
from mmsdk.models.config import ModelConfig

GEN = torch.Generator().manual_seed(0)


def _adapter(**overrides: object) -> VideoMAEAdapter:
    fields = {"channels": 3, "num_frames": 4, "frame_size": (16, 16), "tubelet": 2, "patch": 8} | overrides
    return VideoMAEAdapter(VideoMAEConfig.from_dict(fields), dim=16)


def test_tube_embedding_is_a_strided_conv3d() -> None:
    adapter = _adapter(channels=5)
    x = torch.rand(2, 4, 5, 16, 24, generator=GEN)
    conv = nn.Conv3d(5, 16, kernel_size=(2, 8, 8), stride=(2, 8, 8))
    with torch.no_grad():  # Linear over (t, p, p, C)-flattened tubes ← Conv3d weight (D, C, t, p, p)
        adapter.embed.weight.copy_(conv.weight.permute(0, 2, 3, 4, 1).reshape(16, -1))
        adapter.embed.bias.copy_(conv.bias)
    normalized = (x - adapter.mean) / adapter.std
    expected = conv(normalized.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)  # (B, N, D) in (t, h, w) order
    torch.testing.assert_close(adapter.tokenize(x).tokens, expected, atol=1e-5, rtol=1e-5)


def test_fold_tubes_inverts_to_tubes() -> None:
    x = torch.rand(2, 6, 3, 16, 32, generator=GEN)
    tubes = to_tubes(x, 2, 8)  # (B, 3·2·4, 2·8·8·3)
    assert tubes.shape == (2, 24, 384)
    torch.testing.assert_close(fold_tubes(tubes, (3, 2, 4), 2, 8), x, atol=0, rtol=0)


def test_tube_masking_hides_the_same_places_at_every_time_step() -> None:
    adapter = _adapter(num_frames=8, frame_size=(32, 32))
    batch = adapter.tokenize(example_clips(3, 8, 3, (32, 32), GEN))  # 4 time steps × 16 places
    mask = tube_strategy(batch, MaskingConfig(strategy="tube", ratio=0.9), 0.9, GEN)
    hidden = mask.hidden.reshape(3, 4, 16)
    assert (hidden == hidden[:, :1]).all()  # one spatial mask shared over time
    assert (hidden[:, 0].sum(dim=1) == 14).all()  # round(16 · 0.1) = 2 places visible
    assert not (hidden[0, 0] == hidden[1, 0]).all() or not (hidden[1, 0] == hidden[2, 0]).all()  # per clip


def test_tube_masking_hides_padding_first_and_needs_time_ids() -> None:
    adapter = _adapter(num_frames=4, frame_size=(16, 32))
    clips = example_clips(2, 4, 3, (16, 32), GEN)
    clips[1, :, :, :, 16:] = float("nan")  # the right half of clip 1 is padding: 2 of its 4 places
    batch = adapter.tokenize(clips)
    mask = tube_strategy(batch, MaskingConfig(strategy="tube", ratio=0.5), 0.5, GEN)
    assert mask.hidden[1][~batch.padding_mask[1]].all()
    with pytest.raises(ValueError, match="time_ids"):
        tube_strategy(batch.replace(time_ids=None), MaskingConfig(strategy="tube"), 0.5, GEN)


def test_learned_positions_at_another_grid_are_the_trilinearly_resized_table() -> None:
    adapter = _adapter(num_frames=8, frame_size=(32, 48), positions="learned")  # table grid (4, 4, 6)
    table = adapter.build_positions(16)
    with torch.no_grad():
        table.table.normal_(generator=GEN)
    same = table(tube_grid_positions((4, 4, 6), (4, 4, 6), torch.device("cpu"))[None])  # (1, N, D)
    torch.testing.assert_close(same[0], table.table.reshape(-1, 16), atol=0, rtol=0)  # exact at its own grid
    for grid in [(2, 3, 5), (8, 6, 7), (1, 4, 6)]:
        looked_up = table(tube_grid_positions(grid, (4, 4, 6), torch.device("cpu"))[None])[0]
        resized = F.interpolate(table.table.permute(3, 0, 1, 2)[None], size=grid, mode="trilinear")
        torch.testing.assert_close(looked_up, resized[0].permute(1, 2, 3, 0).reshape(-1, 16), atol=1e-5, rtol=1e-5)


def test_sizes_the_tubes_do_not_divide_are_padded_with_missing_pixels() -> None:
    adapter = _adapter()
    clips = example_clips(2, 5, 3, (20, 13), GEN)  # 5 frames, 20 × 13: padded to 6 × 24 × 16
    batch = adapter.tokenize(clips)
    assert batch.context["frames"].shape == (2, 6, 3, 24, 16)
    assert batch.num_tokens == 3 * 3 * 2 and batch.padding_mask.all()  # every tube holds a real pixel
    assert batch.target_mask is not None and not batch.target_mask.all()  # missing pixels are not scored
    seen = to_tubes(~torch.isnan(batch.context["frames"]), 2, 8)
    assert torch.equal(batch.target_mask, seen)
    one = adapter.tokenize(example_clips(1, 1, 3, (16, 16), GEN))  # fewer frames than a tubelet: one tube deep
    assert one.num_tokens == 4 and one.target_mask[..., : 8 * 8 * 3].all() and not one.target_mask[..., 192:].any()


def test_a_nan_padded_clip_gives_the_output_of_the_clip_alone() -> None:
    config = ModelConfig.from_dict(
        {
            "adapter": "videomae",
            "adapter_config": {"num_frames": 4, "frame_size": [16, 16], "patch": 8},  # sincos positions
            "encoder": {"dim": 24, "depth": 2, "heads": 2},
        }
    )
    model = TaskModel(config, HeadConfig(num_outputs=3)).eval()
    small = example_clips(1, 4, 3, (16, 16), GEN)
    big = example_clips(1, 6, 3, (24, 32), GEN)
    padded = torch.full((2, 6, 3, 24, 32), float("nan"))
    padded[0, :4, :, :16, :16] = small[0]
    padded[1] = big[0]
    with torch.no_grad():
        together = model(padded)
        torch.testing.assert_close(together[0], model(small)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together[1], model(big)[0], atol=1e-5, rtol=1e-5)


def test_uint8_frames_are_scaled_once() -> None:
    adapter = _adapter()
    clips = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8, generator=GEN)
    torch.testing.assert_close(adapter.tokenize(clips).tokens, adapter.tokenize(clips.float() / 255).tokens)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 4, 3, 16, 16), dtype=np.float32), "torch.Tensor"),
        (torch.rand(4, 3, 16, 16), "add a batch dimension"),
        (torch.rand(2, 4, 4, 16, 16), "drop the alpha channel"),
        (torch.rand(2, 4, 1, 16, 16), "repeat the gray channel"),
        (torch.rand(2, 4, 16, 16, 3), "to_clips"),
        (torch.rand(2, 0, 3, 16, 16), "empty"),
        (torch.randint(0, 9, (2, 4, 3, 16, 16)), "dtype"),
        (torch.full((2, 4, 3, 16, 16), float("inf")), "Inf"),
        (torch.cat([torch.rand(1, 4, 3, 16, 16), torch.full((1, 4, 3, 16, 16), float("nan"))]), r"clip\(s\) \[1\]"),
    ],
)
def test_bad_frames_are_refused_by_name(frames: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _adapter().tokenize(frames)  # type: ignore[arg-type]


def test_next_tube_loss_scores_the_same_place_one_time_step_later() -> None:
    adapter = _adapter(num_frames=6)
    batch = adapter.tokenize(example_clips(2, 6, 3, (16, 16), GEN))  # 3 time steps × 4 places
    shifted = torch.cat([batch.targets[:, 4:], torch.zeros_like(batch.targets[:, :4])], dim=1)
    assert float(adapter.next_token_loss(shifted, batch)["mse"]) < 1e-12
    assert float(adapter.next_token_loss(batch.targets, batch)["mse"]) > 0.01
    with pytest.raises(ValueError, match="at least 2 tubes in time"):
        adapter.next_token_loss(batch.targets, adapter.tokenize(example_clips(2, 2, 3, (16, 16), GEN)))


@pytest.mark.parametrize("target_norm", ["tube", "none"])
def test_decode_of_the_targets_gives_the_frames_back(target_norm: str) -> None:
    adapter = _adapter(target_norm=target_norm)
    clips = example_clips(2, 4, 3, (16, 16), GEN)
    batch = adapter.tokenize(clips)
    torch.testing.assert_close(adapter.decode(batch.targets, batch), clips, atol=1e-5, rtol=1e-5)


def test_plot_reconstruction_writes_a_png(tmp_path: Path) -> None:
    adapter = _adapter(channels=5)
    batch = adapter.tokenize(example_clips(2, 4, 5, (16, 16), GEN))
    target = torch.zeros(2, batch.num_tokens, dtype=torch.bool)
    target[:, ::2] = True
    path = adapter.plot_reconstruction(batch, batch.targets, target, tmp_path / "recon.png")
    assert path is not None and path.stat().st_size > 1000


def test_pretrained_at_16x112x112_fine_tunes_and_exports_at_8x96x128(tmp_path: Path) -> None:
    adapter_config = {"num_frames": 16, "frame_size": [112, 112], "positions": "learned"}
    encoder = {"dim": 24, "depth": 1, "heads": 2}
    pretrain = build_model({"adapter": "videomae", "adapter_config": adapter_config, "encoder": encoder})
    masking = MaskingConfig(strategy="tube", ratio=0.9)
    out = pretrain.step(example_clips(2, 16, 3, (112, 112), GEN), masking, GEN)
    out.loss.backward()
    assert out.mask is not None and out.mask.num_keep == 8 * 5  # 8 time steps × 5 of 49 places
    save_pretrained(pretrain, tmp_path / "pretrained")

    config = ModelConfig.from_dict({"adapter": "videomae", "adapter_config": adapter_config, "encoder": encoder})
    model = TaskModel(config, HeadConfig(num_outputs=4))
    load_backbone(model, tmp_path / "pretrained")
    clips = example_clips(4, 8, 3, (96, 128), GEN)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]

    model.eval()
    result = to_onnx(model, tmp_path / "video.onnx", example_input=clips[:2], verify_batch_sizes=(1, 3))
    assert result.verified
    served = OnnxModel(tmp_path / "video.onnx")
    assert served.metadata["mmsdk.channels"] == "3" and served.metadata["mmsdk.num_frames"] == "16"
    assert served.metadata["mmsdk.mean"] == "0.485,0.456,0.406"
    logits = served(clips[:2].numpy())
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(clips[:2]).numpy(), atol=1e-4)
