"""Parity with Hugging Face VideoMAE: converted weights give the reference's outputs within 1e-5 (eval mode)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402

from mmsdk.adapters.video.hf_videomae import (  # noqa: E402
    convert_videomae_state_dict,
    load_hf_videomae,
    videomae_config_from_hf,
)
from mmsdk.contracts.masking import Mask  # noqa: E402
from mmsdk.hub import from_pretrained, save_pretrained  # noqa: E402
from mmsdk.models import TaskModel  # noqa: E402
from mmsdk.models.objectives.mae import MaskedAutoencoder  # noqa: E402

B, ATOL, LOSS_RTOL, MASK_RATIO = 3, 1e-5, 1e-5, 0.9
log = logging.getLogger(__name__)
BASE: dict[str, Any] = {
    "num_frames": 4,
    "tubelet_size": 2,
    "patch_size": 8,
    "image_size": (32, 48),
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
    "num_labels": 5,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "rgb_rect": {},
    "gray": {"num_channels": 1},
    # use_mean_pooling=False: the encoder's final norm; qv_bias=False: zero query and value biases
    "four_channel_final_norm_no_qv_bias": {"num_channels": 4, "use_mean_pooling": False, "qv_bias": False},
    "rgb_square_p16_raw_targets": {"image_size": 32, "patch_size": 16, "norm_pix_loss": False},
}


def _hf_config(name: str, **changes: Any) -> Any:
    return transformers.VideoMAEConfig(**{**BASE, **CONFIGS[name], **changes})


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Moves every weight away from its initialization (zero biases, unit norms and a zero mask token hide mapping
    mistakes); the fixed sinusoid tables are plain attributes and stay as they are."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _clips(config: Any, seed: int = 0, frames: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Raw [0, 1] frames (B, T, C, H, W) of the config's geometry (or the given one)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size or (
        config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    )
    return torch.rand(B, frames or config.num_frames, config.num_channels, height, width, generator=generator)


def _pixel_values(raw: Tensor) -> Tensor:
    """What the HF processors feed the reference: ImageNet-normalized RGB; other channel counts as they are
    (the conversion's default mean 0 / std 1)."""
    if raw.shape[2] != 3:
        return raw
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, 3, 1, 1)
    return (raw - mean) / std


def _bool_masked_pos(num_tokens: int, seed: int) -> Tensor:
    """(B, N) bool, True = masked: the same count (90 %) in every row, as the reference requires."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.zeros(B, num_tokens, dtype=torch.bool)
    count = int(MASK_RATIO * num_tokens)
    for row in range(B):
        hidden[row, torch.randperm(num_tokens, generator=generator)[:count]] = True
    return hidden


def _classification_pair(name: str, **changes: Any) -> tuple[Any, TaskModel]:
    torch.manual_seed(0)
    hf = _randomize(transformers.VideoMAEForVideoClassification(_hf_config(name, **changes)), seed=1)
    model = load_hf_videomae(hf)
    assert isinstance(model, TaskModel)
    return hf, model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_pretraining_matches_reference_for_the_same_mask(name: str) -> None:
    torch.manual_seed(0)
    hf = _randomize(transformers.VideoMAEForPreTraining(_hf_config(name)), seed=2)
    model = load_hf_videomae(hf)
    assert isinstance(model, MaskedAutoencoder)
    raw = _clips(hf.config, seed=3)
    batch = model.tokenize(raw)
    masked = _bool_masked_pos(batch.num_tokens, seed=4)
    mask = Mask.from_hidden(masked)
    with torch.no_grad():
        expected = hf(pixel_values=_pixel_values(raw), bool_masked_pos=masked)
        prediction = model(batch, mask)
        terms = model.loss(batch, prediction, mask)
    got = prediction.pred[mask.hidden].reshape(expected.logits.shape)  # (B, M, P), masked tokens in order
    diff = float((got - expected.logits).abs().max())
    loss, reference = float(sum(terms.values())), float(expected.loss)
    log.info("%s pretraining max abs diff %.3g, loss rel diff %.3g", name, diff, abs(loss - reference) / reference)
    assert diff <= ATOL, f"{name}: max abs diff {diff}"
    assert abs(loss - reference) <= LOSS_RTOL * reference, f"{name}: loss {loss} vs reference {reference}"


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("rgb_rect", {}),
        ("gray", {"qv_bias": False, "problem_type": "multi_label_classification"}),
        ("rgb_square_p16_raw_targets", {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}),
    ],
)
def test_classification_matches_reference(name: str, changes: dict[str, Any]) -> None:
    hf, model = _classification_pair(name, **changes)
    raw = _clips(hf.config, seed=5)
    with torch.no_grad():
        expected = hf(pixel_values=_pixel_values(raw)).logits
        got = model(raw)
    assert got.shape == expected.shape == (B, BASE["num_labels"])
    diff = float((got - expected).abs().max())
    log.info("%s classification max abs diff %.3g", name, diff)
    assert diff <= ATOL, f"{name}: max abs diff {diff}"


def test_position_tables_are_the_reference_sinusoids() -> None:
    torch.manual_seed(0)
    hf = transformers.VideoMAEForPreTraining(_hf_config("rgb_rect"))
    model = load_hf_videomae(hf)
    encoder = model.backbone.positions["videomae"].table  # (T', H', W', D)
    decoder = model.decoder_positions["videomae"].table
    assert encoder.shape == (2, 4, 6, 32) and decoder.shape == (2, 4, 6, 16)
    torch.testing.assert_close(encoder.reshape(1, -1, 32), hf.videomae.embeddings.position_embeddings, atol=0, rtol=0)
    torch.testing.assert_close(decoder.reshape(1, -1, 16), hf.position_embeddings, atol=0, rtol=0)


def test_state_dict_checkpoint_with_config_converts(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    hf, _ = _classification_pair("gray")
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    converted = load_hf_videomae(load_file(str(tmp_path / "model.safetensors")), hf.config.to_dict())
    assert isinstance(converted, TaskModel)  # kind inferred from the classifier weights
    raw = _clips(hf.config, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(converted(raw), hf(pixel_values=_pixel_values(raw)).logits, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="config"):
        load_hf_videomae(hf.state_dict())
    with pytest.raises(ValueError, match="cannot convert VideoMAEModel"):
        load_hf_videomae(hf.videomae)
    pretraining = transformers.VideoMAEForPreTraining(hf.config)
    state, unused = convert_videomae_state_dict(pretraining.state_dict(), hf.config, "pretraining")
    assert unused == [] and state["mask_token"].shape == (16,) and not state["decoder_embed.bias"].any()
    assert isinstance(load_hf_videomae(pretraining.state_dict(), hf.config), MaskedAutoencoder)


def test_unconverted_keys_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    hf, _ = _classification_pair("rgb_rect")
    state = {**hf.state_dict(), "videomae.extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"videomae\.extra\.weight"):
        load_hf_videomae(state, hf.config)
    with caplog.at_level(logging.WARNING):
        load_hf_videomae(state, hf.config, strict=False)
    assert "videomae.extra.weight" in caplog.text
    incomplete = {k: v for k, v in hf.state_dict().items() if "layer.1.intermediate" not in k}
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1"):
        load_hf_videomae(incomplete, hf.config)
    wrong = {**hf.state_dict(), "classifier.weight": torch.zeros(7, 32), "classifier.bias": torch.zeros(7)}
    with pytest.raises(ValueError, match=r"head\.linear\.weight: \(7, 32\) converted vs \(5, 32\)"):
        load_hf_videomae(wrong, hf.config)


def test_config_mapping() -> None:
    model, head = videomae_config_from_hf(
        _hf_config(
            "rgb_rect",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.2,
            problem_type="multi_label_classification",
            id2label={i: f"class{i}" for i in range(5)},
        ),
        "classification",
    )
    assert model["objective"] == "mae" and head is not None
    assert head["task"] == "multilabel" and head["num_outputs"] == 5 and head["pooling"] == "mean"
    assert head["labels"] == [f"class{i}" for i in range(5)]  # from id2label
    encoder, adapter = model["encoder"], model["modalities"]["videomae"]["adapter_config"]
    assert encoder["final_norm"] is False and encoder["norm_eps"] == 1e-12 and encoder["mlp_ratio"] == 2.0
    assert encoder["dropout"] == 0.1 and encoder["mlp_dropout"] == 0.0 and encoder["attention_dropout"] == 0.2
    assert adapter["positions"] == "learned" and adapter["target_norm"] == "tube"
    assert list(adapter["frame_size"]) == [32, 48] and adapter["patch"] == 8 and adapter["tubelet"] == 2
    assert list(adapter["mean"]) == pytest.approx(IMAGENET_DEFAULT_MEAN)
    assert list(adapter["std"]) == pytest.approx(IMAGENET_DEFAULT_STD)

    pretraining, none = videomae_config_from_hf(_hf_config("four_channel_final_norm_no_qv_bias"))
    assert none is None  # no architectures recorded: pretraining
    adapter = pretraining["modalities"]["videomae"]["adapter_config"]
    assert list(adapter["mean"]) == [0.0] * 4 and list(adapter["std"]) == [1.0] * 4
    assert pretraining["encoder"]["final_norm"] is True
    decoder = pretraining["decoder"]
    assert (decoder["dim"], decoder["depth"], decoder["heads"], decoder["mlp_ratio"]) == (16, 1, 2, 2.0)
    assert decoder["norm_eps"] == 1e-12 and decoder["final_norm_eps"] == 1e-5
    raw_targets, _ = videomae_config_from_hf(_hf_config("gray", norm_pix_loss=False), mean=[0.5], std=[0.2])
    adapter = raw_targets["modalities"]["videomae"]["adapter_config"]
    assert adapter["target_norm"] == "none" and list(adapter["mean"]) == [0.5] and list(adapter["std"]) == [0.2]
    with pytest.raises(ValueError, match="num_channels=1"):
        videomae_config_from_hf(_hf_config("gray"), mean=[0.5, 0.5])


@pytest.mark.parametrize(
    ("option", "changes", "kind"),
    [
        ("use_mean_pooling", {"use_mean_pooling": False}, "classification"),
        ("hidden_act", {"hidden_act": "relu"}, "pretraining"),
        ("hidden_act", {"hidden_act": "gelu_new"}, "classification"),
        ("patch_size", {"patch_size": (8, 16)}, "classification"),
        ("image_size", {"image_size": 36}, "pretraining"),
        ("num_frames", {"num_frames": 5}, "classification"),
        ("intermediate_size", {"hidden_size": 28, "intermediate_size": 61}, "pretraining"),  # 28 * (61 / 28) < 61
        ("decoder_num_hidden_layers", {"decoder_num_hidden_layers": 0}, "pretraining"),
    ],
)
def test_unsupported_options_raise_naming_the_option(option: str, changes: dict[str, Any], kind: str) -> None:
    config = _hf_config("rgb_rect", **changes)
    with pytest.raises(ValueError, match=option):
        videomae_config_from_hf(config, kind)  # type: ignore[arg-type]
    if option == "use_mean_pooling":
        with pytest.raises(ValueError, match=option):
            load_hf_videomae(transformers.VideoMAEForVideoClassification(config))


def test_converted_classifier_runs_and_fine_tunes_at_another_clip_size() -> None:
    hf, model = _classification_pair("rgb_rect")
    raw = _clips(hf.config, seed=7, frames=8, size=(40, 56))  # 4 × 5 × 7 tubes instead of 2 × 4 × 6
    for other in (raw, _clips(hf.config, seed=7, frames=8)):
        with pytest.raises((ValueError, RuntimeError)), torch.no_grad():
            hf(pixel_values=_pixel_values(other))  # the reference is tied to its num_frames and image_size
    labels = torch.tensor([0, 3, 1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    losses = []
    for _ in range(2):
        logits = model(raw)
        assert logits.shape == (B, 5) and bool(torch.isfinite(logits).all())
        loss = nn.functional.cross_entropy(logits, labels)
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.backbone.positions["videomae"].table.grad is not None  # interpolated positions are trained too
    assert losses[1] < losses[0], losses


def test_converted_pretraining_model_survives_the_hub_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = _randomize(transformers.VideoMAEForPreTraining(_hf_config("gray")), seed=8)
    model = load_hf_videomae(hf)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "model"))
    assert loaded.decoder.norm.eps == 1e-5 and loaded.decoder.blocks[0].norm1.eps == 1e-12
    raw = _clips(hf.config, seed=9)
    batch = model.tokenize(raw)
    mask = Mask.from_hidden(_bool_masked_pos(batch.num_tokens, seed=10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch, mask).pred, model(batch, mask).pred, atol=0, rtol=0)
