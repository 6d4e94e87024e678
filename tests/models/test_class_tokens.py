"""Class tokens (`ModelConfig.class_tokens`): learned tokens the backbone prepends to every encoder sequence and a
`pooling: first` head reads. Models without them are unchanged; with them padding stays invisible, every non-causal
objective trains, checkpoints without them still initialize a model with them, and the head exports to ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.export.onnx import to_onnx
from mmsdk.hub import load_backbone, save_pretrained
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.models import build_model, build_task_model
from mmsdk.models.backbone import with_class_tokens

ENCODER = {"dim": 16, "depth": 2, "heads": 2}
HEAD = {"task": "classification", "num_outputs": 3, "pooling": "first"}


def _config(adapter: str = "pointmae", objective: str = "mae", class_tokens: int = 1, **fields: Any) -> dict:
    config = get_adapter_class(adapter).example_config()
    return {"adapter": adapter, "adapter_config": config, "encoder": ENCODER, "objective": objective,
            "class_tokens": class_tokens, **fields}  # fmt: skip


def _raw(model: torch.nn.Module, batch_size: int = 3) -> torch.Tensor:
    return model.backbone.adapter.example_input(batch_size, torch.Generator().manual_seed(0))


def test_a_model_without_class_tokens_has_no_class_token_weights() -> None:
    model = build_task_model(_config(class_tokens=0), {**HEAD, "pooling": None})
    assert model.backbone.cls_token is None
    assert not [key for key in model.state_dict() if "cls_token" in key]
    batch = model.backbone.tokenize(_raw(model))
    features, hidden = model.backbone.encode_all(model.backbone.embed(batch), batch)
    assert features is None and hidden.shape == (3, batch.num_tokens, ENCODER["dim"])


def test_class_tokens_ignore_padding_and_leave_the_token_count_alone() -> None:
    model = build_model(_config(objective="bert", class_tokens=2)).eval()
    batch = model.tokenize(_raw(model))
    real = torch.ones(batch.batch_size, batch.num_tokens, dtype=torch.bool)
    real[:, -3:] = False
    padded = batch.replace(padding_mask=real)
    noisy = padded.replace(tokens=torch.where(real[..., None], batch.tokens, 1e3 * torch.randn_like(batch.tokens)))
    backbone = model.backbone
    with torch.no_grad():
        cls_padded, hidden = backbone.encode_all(backbone.embed(padded), padded)
        cls_noisy, _ = backbone.encode_all(backbone.embed(noisy), noisy)
    assert cls_padded.shape == (3, 2, ENCODER["dim"]) and hidden.shape[1] == batch.num_tokens
    torch.testing.assert_close(cls_noisy, cls_padded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("objective", ["mae", "bert", "4m"])
def test_every_non_causal_objective_trains_the_class_token(objective: str) -> None:
    model = build_model(_config(objective=objective)).train()
    out = model.step(_raw(model), None, torch.Generator().manual_seed(1))
    out.loss.backward()
    grad = model.backbone.cls_token.grad
    assert torch.isfinite(out.loss) and grad is not None and float(grad.abs().sum()) > 0


def test_causal_objectives_pooling_first_without_a_class_token_and_packing_are_refused() -> None:
    with pytest.raises(ValueError, match=r"class_tokens.*causal"):
        build_model(_config("timerxl", objective="causal"))
    with pytest.raises(ValueError, match="class_tokens"):
        build_model(_config(class_tokens=-1))
    with pytest.raises(ValueError, match=r"pooling='first'.*class_tokens is 0"):
        build_task_model(_config(class_tokens=0), HEAD)
    packed = AttentionMask(sample_ids=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="packed"):
        with_class_tokens(1, packed, None, None)


def test_with_class_tokens_extends_padding_rotary_coordinates_and_variate_ids() -> None:
    padding = torch.tensor([[True, True, False]])
    rope = torch.tensor([[[1, 2], [3, 4], [5, 6]]])  # (B, N, 2) axial coordinates
    mask, coords, variates = with_class_tokens(2, AttentionMask(padding_mask=padding), rope, torch.tensor([[0, 1, 1]]))
    assert mask.padding_mask.tolist() == [[True, True, True, True, False]]
    assert coords.tolist() == [[[0, 0], [0, 0], [1, 2], [3, 4], [5, 6]]]
    assert variates.tolist() == [[-1, -1, 0, 1, 1]]


def test_a_checkpoint_without_class_tokens_initializes_a_class_token_classifier(tmp_path: Path) -> None:
    pretrained = build_model(_config(class_tokens=0))
    save_pretrained(pretrained, tmp_path / "pre")
    model = build_task_model(_config(), HEAD)
    report = load_backbone(model, tmp_path / "pre")
    assert "backbone.cls_token" in report.missing
    torch.testing.assert_close(
        model.backbone.encoder.blocks[0].attn.proj.weight, pretrained.backbone.encoder.blocks[0].attn.proj.weight
    )
    save_pretrained(build_model(_config(class_tokens=1)), tmp_path / "with")  # and the other way round
    plain = build_task_model(_config(class_tokens=0), {**HEAD, "pooling": None})
    assert "backbone.cls_token" in load_backbone(plain, tmp_path / "with").unexpected


def test_a_multimodal_classifier_reads_the_shared_class_token() -> None:
    cloud = get_adapter_class("pointmae").example_config()
    series = {"context_length": 32, "num_channels": 2, "patch_len": 8}
    config = {
        "modalities": {"series": {"adapter": "timerxl", "adapter_config": series},
                       "cloud": {"adapter": "pointmae", "adapter_config": cloud}},
        "encoder": ENCODER, "objective": "bert", "class_tokens": 1,
    }  # fmt: skip
    model = build_task_model(config, {**HEAD, "modality": "cloud"}).eval()
    g = torch.Generator().manual_seed(0)
    inputs = {name: adapter.example_input(2, g) for name, adapter in model.backbone.adapters.items()}
    with torch.no_grad():
        logits = model(inputs)
        changed = model({**inputs, "series": torch.randn(inputs["series"].shape, generator=g)})
    assert logits.shape == (2, 3) and not torch.allclose(logits, changed)  # the class token saw the series too


def test_a_class_token_classifier_exports_to_onnx_with_a_dynamic_batch(tmp_path: Path) -> None:
    model = build_task_model(_config("patchtst"), HEAD)
    result = to_onnx(model, tmp_path / "cls.onnx", verify_batch_sizes=(1, 3))  # raises on any mismatch
    assert result.verified and set(result.max_abs_error) == {1, 3}
