"""Parity with Hugging Face PatchTST: converted weights give the reference's outputs within 1e-5 (eval mode)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

from mmsdk.adapters.timeseries.hf_patchtst import config_from_hf, load_hf_patchtst  # noqa: E402
from mmsdk.contracts.masking import Mask, mask_from_noise  # noqa: E402
from mmsdk.hub import from_pretrained, save_pretrained  # noqa: E402
from mmsdk.models import TaskModel  # noqa: E402
from mmsdk.models.objectives import MaskedTokenModel  # noqa: E402

B, C, ATOL = 3, 3, 1e-5
RTOL = 1e-6
"""Forecasts are in data units (up to ~36 here) and float32 rounding grows with them; it also differs between CPUs
(pre_bn_sincos: 1.3e-5 on an Intel Xeon, under 1e-5 on an AMD EPYC), so data-unit comparisons add RTOL · scale."""
BASE: dict[str, Any] = {
    "num_input_channels": C,
    "d_model": 16,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "ffn_dim": 32,
    "prediction_length": 5,
    "pooling_type": None,
    "random_mask_ratio": 0.4,
}
# (L - P) % S != 0 in "pre_bn_sincos" and "post_ln_random": the oldest steps are dropped
CONFIGS: dict[str, dict[str, Any]] = {
    "pre_bn_sincos": {"context_length": 37, "patch_length": 8, "patch_stride": 4, "norm_type": "batchnorm"},
    "post_ln_random": {
        "context_length": 30,
        "patch_length": 8,
        "patch_stride": 8,
        "pre_norm": False,
        "norm_type": "layernorm",
        "positional_encoding_type": "random",
    },
    "post_bn_sincos_noscale": {
        "context_length": 36,
        "patch_length": 6,
        "patch_stride": 6,
        "pre_norm": False,
        "scaling": None,
        "path_dropout": 0.1,
        "ff_dropout": 0.2,
        "positional_dropout": 0.1,
        "attention_dropout": 0.1,
        "head_dropout": 0.1,
    },
    "pre_ln_random_nobias": {
        "context_length": 32,
        "patch_length": 5,
        "patch_stride": 3,
        "norm_type": "layernorm",
        "positional_encoding_type": "random",
        "bias": False,
        "ffn_dim": 24,
        "num_attention_heads": 4,
        "mask_type": "forecast",
        "num_forecast_mask_patches": 2,
    },
}


def _hf_config(name: str, **changes: Any) -> Any:
    return transformers.PatchTSTConfig(**{**BASE, **CONFIGS[name], **changes})


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Moves every weight and BatchNorm statistic away from its initialization (zero biases, unit norms hide
    mapping mistakes); the fixed sin-cos table is left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def _series(length: int, seed: int = 0) -> Tensor:
    """(B, L, C) NaN-free series with per-channel level, scale and trend (exercises the scaler)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length).view(1, length, 1)
    level, scale = torch.randn(B, 1, C, generator=generator) * 5, torch.rand(B, 1, C, generator=generator) * 3 + 0.5
    return level + scale * (torch.randn(B, length, C, generator=generator) + 2 * t)


def _prediction_pair(name: str) -> tuple[Any, TaskModel]:
    torch.manual_seed(0)
    hf = _randomize(transformers.PatchTSTForPrediction(_hf_config(name)), seed=1)
    model = load_hf_patchtst(hf)
    assert isinstance(model, TaskModel)
    return hf, model


def _hf_masked_reconstruction(hf: Any, x: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """HF reconstructions (B, C, N, P) and the mask (B, C, N) its masking drew, driven by the global seed."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = hf.model(past_values=x)
        reconstruction = hf.head(out.last_hidden_state)
        torch.manual_seed(seed)
        full = hf(past_values=x).prediction_output  # the same draw through the public forward
    torch.testing.assert_close(full, reconstruction, atol=0, rtol=0)
    return reconstruction, out.mask


def _mmsdk_mask(hf_mask: Tensor) -> Mask:
    """The HF mask (B, C, N) as an mmsdk Mask over B·C sequences (same count hidden in every sequence)."""
    hidden = hf_mask.reshape(-1, hf_mask.shape[-1])  # (B·C, N), sequence b*C + c as in the adapter
    mask = mask_from_noise(hidden.float(), int((~hidden[0]).sum()))
    assert torch.equal(mask.hidden, hidden)
    return mask


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prediction_matches_reference(name: str) -> None:
    hf, model = _prediction_pair(name)
    x = _series(hf.config.context_length)
    with torch.no_grad():
        expected = hf(past_values=x).prediction_outputs  # (B, H, C)
        got = model(x)
    assert got.shape == expected.shape == (B, hf.config.prediction_length, C)
    diff = float((got - expected).abs().max())
    logging.getLogger(__name__).info("%s prediction max abs diff %.3g", name, diff)
    tol = ATOL + RTOL * float(expected.abs().max())
    assert diff <= tol, f"{name}: max abs diff {diff} > {tol:.3g}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_pretraining_reconstruction_matches_reference_for_the_same_mask(name: str) -> None:
    torch.manual_seed(0)
    hf = _randomize(transformers.PatchTSTForPretraining(_hf_config(name)), seed=2)
    model = load_hf_patchtst(hf)
    assert isinstance(model, MaskedTokenModel) and len(model.mask_tokens) == 0  # PatchTST's zero patch
    x = _series(hf.config.context_length, seed=3)
    expected, hf_mask = _hf_masked_reconstruction(hf, x, seed=4)
    assert hf_mask.any() and not hf_mask.all()
    with torch.no_grad():
        out = model(model.tokenize(x), _mmsdk_mask(hf_mask))
    got = out.pred.reshape(expected.shape)  # (B·C, N, P) → (B, C, N, P)
    diff = float((got - expected).abs().max())
    logging.getLogger(__name__).info("%s pretraining max abs diff %.3g", name, diff)
    assert diff <= ATOL, f"{name}: max abs diff {diff}"


@pytest.mark.parametrize("name", ["pre_bn_sincos", "post_ln_random"])
def test_converted_model_survives_the_hub_round_trip(name: str, tmp_path: Path) -> None:
    hf, model = _prediction_pair(name)
    x = _series(hf.config.context_length, seed=5)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "model"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_state_dict_checkpoint_with_config_converts(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    hf, _ = _prediction_pair("pre_ln_random_nobias")
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    converted = load_hf_patchtst(load_file(str(tmp_path / "model.safetensors")), hf.config.to_dict())
    assert isinstance(converted, TaskModel)  # kind inferred from the head weights
    x = _series(hf.config.context_length, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), hf(past_values=x).prediction_outputs, atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="hf_config"):
        load_hf_patchtst(hf.state_dict())


def test_unconverted_keys_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    hf, _ = _prediction_pair("post_ln_random")
    state = {**hf.state_dict(), "model.extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"model\.extra\.weight"):
        load_hf_patchtst(state, hf.config)
    with caplog.at_level(logging.WARNING):
        load_hf_patchtst(state, hf.config, strict=False)
    assert "model.extra.weight" in caplog.text
    incomplete = {k: v for k, v in hf.state_dict().items() if "layers.1.ff.0" not in k}
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1"):
        load_hf_patchtst(incomplete, hf.config)


def test_config_mapping() -> None:
    model, head = config_from_hf(_hf_config("post_bn_sincos_noscale"), "prediction")
    assert model["objective"] == "bert" and head is not None
    assert head == {
        "task": "forecast",
        "num_outputs": 5,
        "pooling": "flatten",
        "dropout": 0.1,
        "modality": None,
        "labels": None,
        "quantiles": None,
        "quantile_scales": None,
    }
    encoder, adapter = model["encoder"], model["modalities"]["patchtst"]["adapter_config"]
    assert encoder["norm_position"] == "post" and encoder["final_norm"] is False and encoder["norm"] == "batchnorm"
    assert encoder["dropout"] == 0.1 and encoder["mlp_dropout"] == 0.2 and encoder["attention_dropout"] == 0.1
    assert adapter["revin"] is False and adapter["positions"] == "sincos_normalized"
    assert adapter["padding_patch"] == "none" and adapter["mask_value"] == "zero_patch"
    assert adapter["positional_dropout"] == 0.1
    assert config_from_hf(_hf_config("pre_bn_sincos"))[1] is None  # no architectures recorded: pretraining


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("channel_attention", True, "pretraining"),
        ("use_cls_token", True, "pretraining"),
        ("share_embedding", False, "prediction"),
        ("scaling", "mean", "prediction"),
        ("activation_function", "relu", "pretraining"),
        ("mask_value", 1, "pretraining"),
        ("loss", "nll", "prediction"),
        ("share_projection", False, "prediction"),
        ("pooling_type", "median", "prediction"),
    ],
)
def test_unsupported_options_raise_naming_the_option(option: str, value: Any, kind: str) -> None:
    config = _hf_config("pre_bn_sincos", **{option: value})
    with pytest.raises(ValueError, match=option):
        config_from_hf(config, kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("pooling_type", ["mean", "max"])
def test_pooled_prediction_heads_match_reference(pooling_type: str) -> None:
    # HF's default pooling_type is "mean", so most real forecasting checkpoints use a pooled head
    torch.manual_seed(0)
    hf = _randomize(transformers.PatchTSTForPrediction(_hf_config("pre_bn_sincos", pooling_type=pooling_type)), 1)
    model = load_hf_patchtst(hf)
    assert model.head_config.pooling == pooling_type
    x = _series(hf.config.context_length)
    with torch.no_grad():
        expected = hf(past_values=x).prediction_outputs
        got = model(x)
    assert float((got - expected).abs().max()) <= ATOL + RTOL * float(expected.abs().max())
