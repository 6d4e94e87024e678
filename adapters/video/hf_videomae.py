"""Hugging Face VideoMAE → mmsdk: configs and weights of `VideoMAEForPreTraining` / `VideoMAEForVideoClassification`.

The converted model computes what the reference computes (outputs match within 1e-5 in eval mode; for pretraining,
on the same mask):

- the Conv3d tube embedding → the adapter's linear embedding of tubes flattened (t, p, p, C), tokens time-major;
- the fixed 1-D sinusoid table over the flattened tube index → the `learned` (T', H', W', D) table (encoder width,
  and decoder width for pretraining) filled from the same float64 formula, over the grid of `num_frames` ×
  `image_size`. mmsdk reads the table by trilinear interpolation at other frame counts and sizes, so a converted
  model runs (and fine-tunes) on clips the reference rejects. The table is a trainable parameter in mmsdk; freeze
  it (`requires_grad_(False)`) to keep the reference's fixed positions while fine-tuning;
- qv_bias → query and value biases (the key has none: mmsdk's fused kv bias is zeros for the keys);
- pre-norm blocks with `layer_norm_eps`; `VideoMAEModel.layernorm` (use_mean_pooling=False) → the encoder's final
  norm; `fc_norm` + `classifier` (use_mean_pooling=True) → the video head (mean over tubes → LayerNorm → linear);
- encoder_to_decoder (no bias) → `decoder_embed` with a zero bias, mask_token, the decoder blocks, `decoder.norm`
  (LayerNorm with PyTorch's default eps, which the decoder's `final_norm_eps` keeps) and the decoder head;
- norm_pix_loss → `target_norm="tube"` (per-tube, per-channel normalized targets), else `"none"`;
- hidden_dropout_prob → encoder `dropout` (none on the MLP activations), attention_probs_dropout_prob →
  `attention_dropout`.

Inputs: the reference takes normalized `pixel_values` (B, T, C, H, W); mmsdk takes [0, 1] frames and normalizes them
inside the model with the adapter's `mean`/`std`. The conversion sets them to ImageNet's statistics for 3 channels
(what the Hugging Face VideoMAE processors use) and to mean 0 / std 1 for other channel counts (so mmsdk reads the
very values the reference reads); pass `mean=`/`std=` for checkpoints trained with other statistics. Then
`frames = pixel_values * std + mean` gives the reference's outputs. The pretraining targets match the reference's
labels too: it unnormalizes 3-channel pixel values with ImageNet's statistics (other channel counts are used as
they are), and norm_pix_loss normalizes each tube per channel, which no per-channel affine map changes.

Masks: the reference's `bool_masked_pos` (B, N) (True = masked, the same count in every row) is the mmsdk mask
`Mask.from_hidden(bool_masked_pos)`; mmsdk predicts every token, the reference's logits are `pred[mask.hidden]`.
Options without an mmsdk equivalent raise ValueError naming the option. Users can convert their own checkpoints::

    from safetensors.torch import load_file
    from transformers import VideoMAEConfig

    config = VideoMAEConfig.from_pretrained("path/to/checkpoint")
    model = load_hf_videomae(load_file("path/to/checkpoint/model.safetensors"), config)
"""

from __future__ import annotations

import collections.abc
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmsdk.adapters.video.videomae import IMAGENET_MEAN, IMAGENET_STD
from mmsdk.contracts.heads import HeadConfig
from mmsdk.hub.load import load_converted
from mmsdk.models import TaskModel, build_model
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives import Objective

logger = logging.getLogger(__name__)

HFKind = Literal["pretraining", "classification"]
_KINDS: dict[str, HFKind] = {
    "VideoMAEForPreTraining": "pretraining",
    "VideoMAEForVideoClassification": "classification",
}
_TASKS = {
    None: "classification",
    "single_label_classification": "classification",
    "multi_label_classification": "multilabel",
    "regression": "regression",
}
_MODALITY = "videomae"
_DECODER_FINAL_NORM_EPS = 1e-5
"""`VideoMAEDecoder.norm` is `nn.LayerNorm(decoder_hidden_size)`: PyTorch's default eps, not layer_norm_eps."""
_SINCOS_ATOL = 1e-6


def _get(hf_config: Any, name: str, default: Any = None) -> Any:
    return getattr(hf_config, name, default)


def _unsupported(option: str, value: Any, reason: str) -> ValueError:
    return ValueError(f"HF VideoMAE option {option}={value!r} is not supported: {reason}")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, collections.abc.Iterable) and not isinstance(value, str):
        items = tuple(int(v) for v in value)
        if len(items) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return items[0], items[1]
    return int(value), int(value)


def _patch(hf_config: Any) -> int:
    height, width = _pair(hf_config.patch_size)
    if height != width:
        raise _unsupported("patch_size", hf_config.patch_size, "mmsdk tubes are square (t × p × p)")
    return height


def _mlp_ratio(hidden: int, intermediate: int, option: str) -> float:
    ratio = intermediate / hidden
    if int(hidden * ratio) != intermediate:
        raise _unsupported(option, intermediate, f"its ratio to the width {hidden} does not round-trip")
    return ratio


def _check_supported(hf_config: Any, kind: HFKind) -> None:
    """Raises ValueError naming the first HF option the mmsdk model cannot express."""
    patch = _patch(hf_config)
    height, width = _pair(hf_config.image_size)
    tubelet, frames = int(hf_config.tubelet_size), int(hf_config.num_frames)
    checks: list[tuple[str, bool, str]] = [
        ("hidden_act", _get(hf_config, "hidden_act", "gelu") == "gelu", "the MLP uses exact GELU ('gelu')"),
        (
            "image_size",
            height % patch == 0 and width % patch == 0,
            f"must be a multiple of patch_size={patch} (the reference drops the remainder, mmsdk pads it)",
        ),
        (
            "num_frames",
            frames % tubelet == 0,
            f"must be a multiple of tubelet_size={tubelet} (the reference drops the remainder, mmsdk pads it)",
        ),
    ]
    if kind == "classification":
        checks += [
            (
                "use_mean_pooling",
                bool(_get(hf_config, "use_mean_pooling", True)),
                "the reference then classifies token 0 after the final norm; mmsdk video tokens have no class "
                "token (the video head averages all tubes)",
            ),
            ("num_labels", int(hf_config.num_labels) >= 1, "the classifier needs at least one output"),
            ("problem_type", _get(hf_config, "problem_type") in _TASKS, f"known: {sorted(map(str, _TASKS))}"),
        ]
    else:
        checks.append(
            (
                "decoder_num_hidden_layers",
                int(hf_config.decoder_num_hidden_layers) >= 1,
                "the mmsdk MAE decoder has at least one block",
            )
        )
    for option, ok, reason in checks:
        if not ok:
            raise _unsupported(option, _get(hf_config, option), reason)


def _infer_kind(hf_config: Any) -> HFKind:
    for architecture in _get(hf_config, "architectures", None) or ():
        if architecture in _KINDS:
            return _KINDS[architecture]
    return "pretraining"


def _statistics(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel input statistics: the caller's, else ImageNet's for 3 channels and 0 / 1 otherwise."""
    default_mean, default_std = (
        (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.0,) * channels, (1.0,) * channels)
    )
    chosen_mean = tuple(float(v) for v in (default_mean if mean is None else mean))
    chosen_std = tuple(float(v) for v in (default_std if std is None else std))
    for name, value in (("mean", chosen_mean), ("std", chosen_std)):
        if len(value) != channels:
            raise ValueError(f"{name} has {len(value)} values but the HF config has num_channels={channels}")
    return chosen_mean, chosen_std


def _labels(hf_config: Any, num_labels: int) -> tuple[str, ...] | None:
    """The class names of `id2label`, or None when they are the default LABEL_i placeholders."""
    id2label = _get(hf_config, "id2label") or {}
    try:
        names = tuple(str(id2label[i]) for i in range(num_labels))
    except KeyError:
        return None
    return None if names == tuple(f"LABEL_{i}" for i in range(num_labels)) else names


def videomae_config_from_hf(
    hf_config: Any,
    kind: HFKind | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """mmsdk configs that express a Hugging Face VideoMAE config exactly.

    Args:
        hf_config: a `transformers.VideoMAEConfig` (or any object with its attributes).
        kind: "pretraining" (MAE model, no head config) or "classification" (video head); None reads
            `hf_config.architectures`, defaulting to pretraining.
        mean, std: per-channel statistics of the [0, 1] frames the checkpoint's pixel values were normalized with;
            None = ImageNet's for 3 channels (the VideoMAE processors'), 0 and 1 for other channel counts.

    Returns:
        The :class:`~mmsdk.models.config.ModelConfig` dict (mae objective, `videomae` adapter with learned
        positions) and the :class:`~mmsdk.contracts.heads.HeadConfig` dict for classification, or None for
        pretraining.

    Raises:
        ValueError: naming the HF option that has no mmsdk equivalent.
    """
    kind = kind or _infer_kind(hf_config)
    if kind not in ("pretraining", "classification"):
        raise ValueError(f"kind must be 'pretraining' or 'classification', got {kind!r}")
    _check_supported(hf_config, kind)
    channels = int(hf_config.num_channels)
    channel_mean, channel_std = _statistics(channels, mean, std)
    dim = int(hf_config.hidden_size)
    dropout = float(hf_config.hidden_dropout_prob)
    attention_dropout = float(hf_config.attention_probs_dropout_prob)
    eps = float(hf_config.layer_norm_eps)
    common = {
        "norm": "layernorm",
        "norm_position": "pre",
        "mlp": "gelu",
        "dropout": dropout,
        "mlp_dropout": 0.0 if dropout > 0 else None,  # HF drops after each dense output, not on the activations
        "attention_dropout": attention_dropout,
        "norm_eps": eps,
    }
    encoder = {
        "dim": dim,
        "depth": int(hf_config.num_hidden_layers),
        "heads": int(hf_config.num_attention_heads),
        "mlp_ratio": _mlp_ratio(dim, int(hf_config.intermediate_size), "intermediate_size"),
        "final_norm": not bool(_get(hf_config, "use_mean_pooling", True)),
        **common,
    }
    height, width = _pair(hf_config.image_size)
    adapter = {
        "channels": channels,
        "num_frames": int(hf_config.num_frames),
        "frame_size": [height, width],
        "tubelet": int(hf_config.tubelet_size),
        "patch": _patch(hf_config),
        "positions": "learned",
        "mean": list(channel_mean),
        "std": list(channel_std),
        "target_norm": "tube" if _get(hf_config, "norm_pix_loss", True) else "none",
    }
    config: dict[str, Any] = {"adapter": _MODALITY, "adapter_config": adapter, "encoder": encoder, "objective": "mae"}
    if kind == "pretraining":
        decoder_dim = int(hf_config.decoder_hidden_size)
        config["decoder"] = {
            "dim": decoder_dim,
            "depth": int(hf_config.decoder_num_hidden_layers),
            "heads": int(hf_config.decoder_num_attention_heads),
            "mlp_ratio": _mlp_ratio(decoder_dim, int(hf_config.decoder_intermediate_size), "decoder_intermediate_size"),
            "final_norm": True,
            **common,
            "final_norm_eps": _DECODER_FINAL_NORM_EPS,
        }
    model = ModelConfig.from_dict(config)
    head = None
    if kind == "classification":
        num_labels = int(hf_config.num_labels)
        head = HeadConfig(
            task=_TASKS[_get(hf_config, "problem_type")],
            num_outputs=num_labels,
            pooling="mean",
            dropout=0.0,
            labels=_labels(hf_config, num_labels),
        ).to_dict()
    return model.to_dict(), head


def _sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """(N, D) float32: VideoMAE's fixed table over the flattened token index, computed in float64 as the reference
    does (sin on even channels, cos on odd ones; the float32 formula differs by ~1e-4 at large positions)."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (N, 1)
    channel = torch.arange(dim, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)  # (N, D)
    return torch.where(channel.long() % 2 == 0, angle.sin(), angle.cos()).float()


def _grid(hf_config: Any) -> tuple[int, int, int]:
    height, width = _pair(hf_config.image_size)
    patch = _patch(hf_config)
    return int(hf_config.num_frames) // int(hf_config.tubelet_size), height // patch, width // patch


def _layer_map(hf: str, ours: str) -> dict[str, str]:
    """HF name → mmsdk name of the single-tensor weights of one block (query bias and key/value handled apart)."""
    names = {
        "layernorm_before.weight": "norm1.weight",
        "layernorm_before.bias": "norm1.bias",
        "layernorm_after.weight": "norm2.weight",
        "layernorm_after.bias": "norm2.bias",
        "attention.attention.query.weight": "attn.q.weight",
        "attention.output.dense.weight": "attn.proj.weight",
        "attention.output.dense.bias": "attn.proj.bias",
        "intermediate.dense.weight": "mlp.fc1.weight",
        "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight",
        "output.dense.bias": "mlp.fc2.bias",
    }
    return {hf + k: ours + v for k, v in names.items()}


def convert_videomae_state_dict(
    hf_state: Mapping[str, Tensor], hf_config: Any, kind: HFKind
) -> tuple[dict[str, Tensor], list[str]]:
    """Renames (and fuses) HF VideoMAE weights into mmsdk names.

    Keys are taken with the `videomae.` prefix of the task models. The Conv3d tube embedding (D, C, t, p, p) becomes
    the linear embedding of (t, p, p, C) tubes; key and value projections are concatenated into mmsdk's fused `kv`
    projection (keys first), absent biases (the key's, and query and value without qv_bias) become zeros; the fixed
    sinusoid tables, which the reference does not save, are written from the formula (a saved one is checked
    against it).

    Returns:
        The mmsdk state dict and the HF keys that were not used.
    """
    state: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(hf_name: str, ours: str) -> Tensor | None:
        if hf_name in hf_state:
            state[ours] = hf_state[hf_name]
            used.add(hf_name)
            return state[ours]
        return None

    projection = "videomae.embeddings.patch_embeddings.projection.weight"
    if projection in hf_state:
        weight = hf_state[projection]
        if weight.dim() != 5:
            raise ValueError(f"{projection} must be a Conv3d weight (D, C, t, p, p), got shape {tuple(weight.shape)}")
        state[f"backbone.adapters.{_MODALITY}.embed.weight"] = weight.permute(0, 2, 3, 4, 1).reshape(
            weight.shape[0], -1
        )
        used.add(projection)
    take("videomae.embeddings.patch_embeddings.projection.bias", f"backbone.adapters.{_MODALITY}.embed.bias")
    grid = _grid(hf_config)
    n = grid[0] * grid[1] * grid[2]
    tables = {
        "videomae.embeddings.position_embeddings": (f"backbone.positions.{_MODALITY}.table", hf_config.hidden_size)
    }
    if kind == "pretraining":
        tables["position_embeddings"] = (f"decoder_positions.{_MODALITY}.table", hf_config.decoder_hidden_size)
    for hf_name, (ours, width) in tables.items():
        table = _sinusoid_table(n, int(width))  # (N, D), tokens time-major (t, h, w)
        if hf_name in hf_state:  # not saved by transformers; checked if a checkpoint carries it
            saved = hf_state[hf_name].reshape(-1, hf_state[hf_name].shape[-1]).float()
            if saved.shape != table.shape or not torch.allclose(saved, table, atol=_SINCOS_ATOL):
                raise ValueError(f"{hf_name} differs from VideoMAE's fixed sinusoid table; it cannot be converted")
            used.add(hf_name)
        state[ours] = table.reshape(*grid, -1)  # (T', H', W', D)

    def block(hf: str, ours: str) -> None:
        for hf_name, name in _layer_map(hf, ours).items():
            take(hf_name, name)
        attn = hf + "attention.attention."
        query, key, value = (hf_state.get(f"{attn}{part}.weight") for part in ("query", "key", "value"))
        biases: dict[str, Tensor | None] = {}
        for part, weight in (("query", query), ("value", value)):
            bias = hf_state.get(f"{attn}{part}.bias")
            if bias is not None:
                used.add(f"{attn}{part}.bias")
            elif weight is not None:  # qv_bias=False
                bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
            biases[part] = bias
        if biases["query"] is not None:
            state[ours + "attn.q.bias"] = biases["query"]
        value_bias = biases["value"]
        if key is not None and value is not None and value_bias is not None:
            state[ours + "attn.kv.weight"] = torch.cat([key, value], dim=0)  # (2D, D)
            state[ours + "attn.kv.bias"] = torch.cat([torch.zeros_like(value_bias), value_bias])  # the key has none
            used.update((f"{attn}key.weight", f"{attn}value.weight"))

    for i in range(int(hf_config.num_hidden_layers)):
        block(f"videomae.encoder.layer.{i}.", f"backbone.encoder.blocks.{i}.")
    take("videomae.layernorm.weight", "backbone.encoder.norm.weight")
    take("videomae.layernorm.bias", "backbone.encoder.norm.bias")
    if kind == "pretraining":
        weight = take("encoder_to_decoder.weight", "decoder_embed.weight")
        if weight is not None:
            state["decoder_embed.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        if "mask_token" in hf_state:
            state["mask_token"] = hf_state["mask_token"].reshape(-1)  # (1, 1, Dd) → (Dd,)
            used.add("mask_token")
        for i in range(int(hf_config.decoder_num_hidden_layers)):
            block(f"decoder.decoder_layers.{i}.", f"decoder.blocks.{i}.")
        for part in ("weight", "bias"):
            take(f"decoder.norm.{part}", f"decoder.norm.{part}")
            take(f"decoder.head.{part}", f"heads.{_MODALITY}.{part}")
    else:
        for part in ("weight", "bias"):
            take(f"fc_norm.{part}", f"head.norm.{part}")
            take(f"classifier.{part}", f"head.linear.{part}")
    return state, [k for k in hf_state if k not in used]


def _as_hf_config(hf_config: Any) -> Any:
    if isinstance(hf_config, Mapping):
        from transformers import VideoMAEConfig

        return VideoMAEConfig.from_dict(dict(hf_config))
    return hf_config


def _kind_of_state(hf_state: Mapping[str, Tensor]) -> HFKind:
    if "classifier.weight" in hf_state:
        return "classification"
    if "decoder.head.weight" in hf_state or "encoder_to_decoder.weight" in hf_state:
        return "pretraining"
    raise ValueError(
        "the state dict has no VideoMAEForPreTraining (decoder.head, encoder_to_decoder) or "
        "VideoMAEForVideoClassification (classifier) weights; pass kind= to convert it anyway"
    )


def load_hf_videomae(
    model_or_state_dict: nn.Module | Mapping[str, Tensor],
    config: Any = None,
    kind: HFKind | None = None,
    strict: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Objective | TaskModel:
    """Builds the mmsdk model of a Hugging Face VideoMAE and loads its weights; returns it in eval mode.

    Args:
        model_or_state_dict: a `VideoMAEForPreTraining` / `VideoMAEForVideoClassification`, or its state dict (e.g.
            `safetensors.torch.load_file` of a checkpoint).
        config: the `VideoMAEConfig` (or its dict); defaults to the model's config, required for a state dict.
        kind: "pretraining" or "classification"; None infers it from the model class or the state dict's head keys.
        strict: raise on HF keys that were not converted; with False they are logged and skipped.
        mean, std: per-channel statistics of the [0, 1] frames behind the checkpoint's pixel values; None =
            ImageNet's for 3 channels, 0 and 1 otherwise (see the module docstring).

    Returns:
        A :class:`~mmsdk.models.objectives.mae.MaskedAutoencoder` for pretraining, a video
        :class:`~mmsdk.models.TaskModel` for classification. Both take [0, 1] frames (B, T, C, H, W).

    Raises:
        ValueError: for unsupported HF options (named), shape mismatches (key and both shapes), HF keys that
            were not converted (when strict), or mmsdk weights the checkpoint does not provide.
    """
    if isinstance(model_or_state_dict, nn.Module):
        module = model_or_state_dict
        hf_config = _as_hf_config(config) if config is not None else module.config
        kind = kind or _KINDS.get(type(module).__name__)
        if kind is None:
            raise ValueError(f"cannot convert {type(module).__name__}; expected one of {sorted(_KINDS)}")
        hf_state = dict(module.state_dict())
    else:
        if config is None:
            raise ValueError("converting a state dict needs its config (a transformers VideoMAEConfig)")
        hf_config = _as_hf_config(config)
        hf_state = dict(model_or_state_dict)
        kind = kind or _kind_of_state(hf_state)
    model_dict, head_dict = videomae_config_from_hf(hf_config, kind, mean, std)
    model: Objective | TaskModel
    if head_dict is None:
        model = build_model(model_dict)
    else:
        model = TaskModel(ModelConfig.from_dict(model_dict), HeadConfig.from_dict(head_dict))
    state, unmapped = convert_videomae_state_dict(hf_state, hf_config, kind)
    return load_converted(model, state, unmapped, f"HF VideoMAE ({kind})", strict)  # type: ignore[return-value]


__all__ = ["convert_videomae_state_dict", "load_hf_videomae", "videomae_config_from_hf"]
