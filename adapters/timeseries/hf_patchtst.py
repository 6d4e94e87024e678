"""Hugging Face PatchTST → mmsdk: configs and weights of `PatchTSTForPretraining` / `PatchTSTForPrediction`.

The converted model computes what the reference computes (outputs match within 1e-5 in eval mode):

- scaler "std" → instance normalization (`revin`), None → no scaling; patches aligned to the context end;
- positional_encoding_type "sincos" → fixed `positions="sincos_normalized"`, "random" → the learned table;
- pre_norm → `norm_position` "pre"/"post", norm_type → `norm` (batchnorm or layernorm), no final norm;
- masked patches (mask_value=0) → `mask_value="zero_patch"` under the bert objective;
- path_dropout → encoder `dropout`, ff_dropout → `mlp_dropout`, attention/positional/head dropout as named.

Masking (mask_type, random_mask_ratio, ...) is a training-time choice and belongs to the mmsdk training config; a
converted pretraining model reproduces the reference for any mask it is given. Options without an mmsdk equivalent
raise ValueError naming the option. Users can convert their own checkpoints::

    from safetensors.torch import load_file
    from transformers import PatchTSTConfig

    config = PatchTSTConfig.from_pretrained("path/to/checkpoint")
    model = load_hf_patchtst(load_file("path/to/checkpoint/model.safetensors"), config)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk.contracts.heads import HeadConfig
from mmsdk.hub.load import load_converted
from mmsdk.layers.positions import normalized_sincos_table
from mmsdk.models import TaskModel, build_model
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives import Objective

logger = logging.getLogger(__name__)

HFKind = Literal["pretraining", "prediction"]
_KINDS: dict[str, HFKind] = {"PatchTSTForPretraining": "pretraining", "PatchTSTForPrediction": "prediction"}
_SINCOS_ATOL = 1e-5


def _get(hf_config: Any, name: str, default: Any = None) -> Any:
    return getattr(hf_config, name, default)


def _unsupported(option: str, value: Any, reason: str) -> ValueError:
    return ValueError(f"HF PatchTST option {option}={value!r} is not supported: {reason}")


def _check_supported(hf_config: Any, kind: HFKind) -> None:
    """Raises ValueError naming the first HF option the mmsdk model cannot express."""
    checks: list[tuple[str, bool, str]] = [
        ("channel_attention", not _get(hf_config, "channel_attention", False), "mmsdk PatchTST is channel-independent"),
        ("use_cls_token", not _get(hf_config, "use_cls_token", False), "the PatchTST adapter has no class token"),
        ("share_embedding", _get(hf_config, "share_embedding", True), "the patch embedding is shared by channels"),
        (
            "scaling",
            _get(hf_config, "scaling", "std") not in ("mean", True),
            "only 'std' (instance normalization) or None (no scaling) convert",
        ),
        ("activation_function", _get(hf_config, "activation_function", "gelu") == "gelu", "the MLP uses exact GELU"),
        ("norm_type", _get(hf_config, "norm_type", "batchnorm") in ("batchnorm", "layernorm"), "unknown norm"),
        (
            "positional_encoding_type",
            _get(hf_config, "positional_encoding_type", "sincos") in ("sincos", "random"),
            "only 'sincos' and 'random' exist",
        ),
    ]
    if kind == "pretraining":
        checks.append(("mask_value", _get(hf_config, "mask_value", 0) == 0, "masked patches must be zero patches"))
    else:
        checks += [
            ("loss", _get(hf_config, "loss", "mse") == "mse", "distribution heads (loss='nll') are not implemented"),
            ("share_projection", _get(hf_config, "share_projection", True), "the forecast head is shared by channels"),
            (
                "pooling_type",
                _get(hf_config, "pooling_type", "mean") in (None, "mean", "max"),
                "the forecast head flattens all patches (None) or pools them (mean, max)",
            ),
        ]
    for option, ok, reason in checks:
        if not ok:
            raise _unsupported(option, _get(hf_config, option), reason)


def _infer_kind(hf_config: Any) -> HFKind:
    for architecture in _get(hf_config, "architectures", None) or ():
        if architecture in _KINDS:
            return _KINDS[architecture]
    return "pretraining"


def config_from_hf(hf_config: Any, kind: HFKind | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """mmsdk configs that express a Hugging Face PatchTST config exactly.

    Args:
        hf_config: a `transformers.PatchTSTConfig` (or any object with its attributes).
        kind: "pretraining" (masked-patch model, no head config) or "prediction" (forecast head); None reads
            `hf_config.architectures`, defaulting to pretraining.

    Returns:
        The :class:`~mmsdk.models.config.ModelConfig` dict (bert objective) and the
        :class:`~mmsdk.contracts.heads.HeadConfig` dict for prediction, or None for pretraining.

    Raises:
        ValueError: naming the HF option that has no mmsdk equivalent.
    """
    kind = kind or _infer_kind(hf_config)
    if kind not in ("pretraining", "prediction"):
        raise ValueError(f"kind must be 'pretraining' or 'prediction', got {kind!r}")
    _check_supported(hf_config, kind)
    d_model, ffn_dim = int(hf_config.d_model), int(hf_config.ffn_dim)
    mlp_ratio = ffn_dim / d_model
    if int(d_model * mlp_ratio) != ffn_dim:
        raise _unsupported("ffn_dim", ffn_dim, f"d_model * (ffn_dim / d_model) does not round-trip for {d_model=}")
    path_dropout, ff_dropout = float(hf_config.path_dropout), float(hf_config.ff_dropout)
    if kind == "pretraining" and float(hf_config.head_dropout) > 0:
        logger.warning(
            "head_dropout=%s of the pretraining head is not converted (eval outputs are unaffected)",
            hf_config.head_dropout,
        )
    encoder = {
        "dim": d_model,
        "depth": int(hf_config.num_hidden_layers),
        "heads": int(hf_config.num_attention_heads),
        "mlp_ratio": mlp_ratio,
        "norm": hf_config.norm_type,
        "norm_position": "pre" if hf_config.pre_norm else "post",
        "final_norm": False,
        "mlp": "gelu",
        "dropout": path_dropout,
        "mlp_dropout": None if ff_dropout == path_dropout else ff_dropout,
        "attention_dropout": float(hf_config.attention_dropout),
        "norm_eps": float(hf_config.norm_eps),
    }
    adapter = {
        "context_length": int(hf_config.context_length),
        "num_channels": int(hf_config.num_input_channels),
        "patch_len": int(hf_config.patch_length),
        "stride": int(hf_config.patch_stride),
        "padding_patch": "none",
        "revin": hf_config.scaling == "std",
        "affine": False,
        "positions": "sincos_normalized" if hf_config.positional_encoding_type == "sincos" else "learned",
        "positional_dropout": float(hf_config.positional_dropout),
        "mask_value": "zero_patch",
    }
    model = ModelConfig.from_dict(
        {"adapter": "patchtst", "adapter_config": adapter, "encoder": encoder, "objective": "bert"}
    )
    head = None
    if kind == "prediction":
        head = HeadConfig(
            task="forecast",
            num_outputs=int(hf_config.prediction_length),
            pooling={None: "flatten", "mean": "mean", "max": "max"}[_get(hf_config, "pooling_type", "mean")],
            dropout=float(hf_config.head_dropout),
        ).to_dict()
    return model.to_dict(), head


def _layer_map(i: int, norm_type: str) -> dict[str, str]:
    """HF name → mmsdk name of the single-tensor weights of encoder layer i (q/k/v handled separately)."""
    hf, ours = f"model.encoder.layers.{i}.", f"backbone.encoder.blocks.{i}."
    names = {
        "self_attn.q_proj.weight": "attn.q.weight",
        "self_attn.q_proj.bias": "attn.q.bias",
        "self_attn.out_proj.weight": "attn.proj.weight",
        "self_attn.out_proj.bias": "attn.proj.bias",
        "ff.0.weight": "mlp.fc1.weight",
        "ff.0.bias": "mlp.fc1.bias",
        "ff.3.weight": "mlp.fc2.weight",
        "ff.3.bias": "mlp.fc2.bias",
    }
    if norm_type == "batchnorm":
        stats = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        for sub, norm in (("norm_sublayer1", "norm1"), ("norm_sublayer3", "norm2")):
            names |= {f"{sub}.batchnorm.{s}": f"{norm}.batchnorm.{s}" for s in stats}
    else:
        for sub, norm in (("norm_sublayer1", "norm1"), ("norm_sublayer3", "norm2")):
            names |= {f"{sub}.weight": f"{norm}.weight", f"{sub}.bias": f"{norm}.bias"}
    return {hf + k: ours + v for k, v in names.items()}


def convert_state_dict(
    hf_state: Mapping[str, Tensor], hf_config: Any, kind: HFKind
) -> tuple[dict[str, Tensor], list[str]]:
    """Renames (and fuses) HF PatchTST weights into mmsdk names.

    Keys are taken with the `model.` prefix of the task models; k_proj and v_proj are concatenated into mmsdk's
    fused `kv` projection (keys first). A fixed "sincos" table is checked against the formula, not copied.

    Returns:
        The mmsdk state dict and the HF keys that were not used.
    """
    state: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(hf_name: str, ours: str) -> None:
        if hf_name in hf_state:
            state[ours] = hf_state[hf_name]
            used.add(hf_name)

    take("model.encoder.embedder.input_embedding.weight", "backbone.adapters.patchtst.value_embedding.weight")
    take("model.encoder.embedder.input_embedding.bias", "backbone.adapters.patchtst.value_embedding.bias")
    position = "model.encoder.positional_encoder.position_enc"
    if position in hf_state:
        used.add(position)
        if hf_config.positional_encoding_type == "random":
            state["backbone.positions.patchtst.table"] = hf_state[position]
        else:
            table = hf_state[position]
            expected = normalized_sincos_table(table.shape[0], table.shape[1]).to(table)
            if not torch.allclose(table, expected, atol=_SINCOS_ATOL):
                raise ValueError(f"{position} differs from the fixed 'sincos' formula; it cannot be converted")
    for i in range(int(hf_config.num_hidden_layers)):
        for hf_name, ours in _layer_map(i, hf_config.norm_type).items():
            take(hf_name, ours)
        prefix = f"model.encoder.layers.{i}.self_attn."
        for part in ("weight", "bias"):
            k, v = hf_state.get(f"{prefix}k_proj.{part}"), hf_state.get(f"{prefix}v_proj.{part}")
            if k is not None and v is not None:
                state[f"backbone.encoder.blocks.{i}.attn.kv.{part}"] = torch.cat([k, v], dim=0)  # (2D, ...)
                used |= {f"{prefix}k_proj.{part}", f"{prefix}v_proj.{part}"}
    if kind == "pretraining":
        take("head.linear.weight", "heads.patchtst.weight")
        take("head.linear.bias", "heads.patchtst.bias")
    else:
        take("head.projection.weight", "head.linear.weight")
        take("head.projection.bias", "head.linear.bias")
    return state, [k for k in hf_state if k not in used]


def _fill_absent_biases(state: dict[str, Tensor], target: dict[str, Tensor]) -> None:
    """HF bias=False drops the MLP biases; mmsdk's MLP always has them, so they are loaded as zeros."""
    for name, tensor in target.items():
        if name not in state and ".mlp.fc" in name and name.endswith(".bias"):
            state[name] = torch.zeros_like(tensor)


def _as_hf_config(hf_config: Any) -> Any:
    if isinstance(hf_config, Mapping):
        from transformers import PatchTSTConfig

        return PatchTSTConfig.from_dict(dict(hf_config))
    return hf_config


def load_hf_patchtst(
    hf_model_or_state_dict: nn.Module | Mapping[str, Tensor],
    hf_config: Any = None,
    kind: HFKind | None = None,
    strict: bool = True,
) -> Objective | TaskModel:
    """Builds the mmsdk model of a Hugging Face PatchTST and loads its weights; returns it in eval mode.

    Args:
        hf_model_or_state_dict: a `PatchTSTForPretraining` / `PatchTSTForPrediction`, or its state dict (e.g.
            `safetensors.torch.load_file` of a checkpoint).
        hf_config: the `PatchTSTConfig` (or its dict); defaults to the model's config, required for a state dict.
        kind: "pretraining" or "prediction"; None infers it from the model class or the state dict's head keys.
        strict: raise on HF keys that were not converted; with False they are logged and skipped.

    Returns:
        A :class:`~mmsdk.models.objectives.MaskedTokenModel` for pretraining, a forecast
        :class:`~mmsdk.models.TaskModel` for prediction.

    Raises:
        ValueError: for unsupported HF options (named), shape mismatches (key and both shapes), HF keys that
            were not converted (when strict), or mmsdk weights the checkpoint does not provide.
    """
    if isinstance(hf_model_or_state_dict, nn.Module):
        module = hf_model_or_state_dict
        hf_config = _as_hf_config(hf_config) if hf_config is not None else module.config
        kind = kind or _KINDS.get(type(module).__name__)
        if kind is None:
            raise ValueError(f"cannot convert {type(module).__name__}; expected one of {sorted(_KINDS)}")
        hf_state = dict(module.state_dict())
    else:
        if hf_config is None:
            raise ValueError("converting a state dict needs its hf_config (a transformers PatchTSTConfig)")
        hf_config = _as_hf_config(hf_config)
        hf_state = dict(hf_model_or_state_dict)
        if kind is None:
            kind = "prediction" if "head.projection.weight" in hf_state else "pretraining"
            if kind == "pretraining" and "head.linear.weight" not in hf_state:
                raise ValueError("the state dict has no PatchTSTForPretraining or PatchTSTForPrediction head weights")
    model_dict, head_dict = config_from_hf(hf_config, kind)
    model: Objective | TaskModel
    if head_dict is None:
        model = build_model(model_dict)
    else:
        model = TaskModel(ModelConfig.from_dict(model_dict), HeadConfig.from_dict(head_dict))
    state, unmapped = convert_state_dict(hf_state, hf_config, kind)
    _fill_absent_biases(state, model.state_dict())
    return load_converted(model, state, unmapped, f"HF PatchTST ({kind})", strict)  # type: ignore[return-value]


__all__ = ["config_from_hf", "convert_state_dict", "load_hf_patchtst"]
