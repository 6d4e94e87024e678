"""Saving and loading models as a directory of `model.safetensors` + `config.json` (never unpickles anything).

`config.json` holds everything needed to rebuild the model (`kind`, the :class:`~mmsdk.backbone.ModelConfig`
and, for task models, the :class:`~mmsdk.heads.HeadConfig`); the weights are loaded with strict checking and
errors name the file, the key and both shapes. Tensors shared between modules (e.g. the PatchTST forecast head
re-using the adapter's normalization) are stored once and restored through every name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.backbone import Backbone, ModelConfig
from mmsdk.heads import HeadConfig
from mmsdk.models import EmbeddingModel, TaskModel, build_model
from mmsdk.objectives import PretrainModel

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "mmsdk"
FORMAT_VERSION = 1
# encoder fields that change parameter shapes or names, or what the weights compute (norm placement); others
# (dropout, attention backend, ...) may differ
_ENCODER_SHAPE_FIELDS = ("dim", "depth", "heads", "mlp_ratio", "norm", "mlp", "qk_norm", "variate_bias")
_ENCODER_SHAPE_FIELDS += ("norm_position", "final_norm")


def _kind(model: nn.Module) -> str:
    if isinstance(model, TaskModel):
        return "task"
    if isinstance(model, EmbeddingModel):
        return "embedding"
    if isinstance(model, PretrainModel):
        return "pretrain"
    raise ValueError(
        f"save_pretrained expects a PretrainModel, TaskModel or EmbeddingModel, got {type(model).__name__}"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a training system (anything with a `.model`), else the model itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and not isinstance(model, (TaskModel, PretrainModel)) else model


def _aliases(state: dict[str, Tensor]) -> dict[str, str]:
    """Maps each key whose tensor is the same memory as an earlier key's (tied/shared modules) to that key."""
    first: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        if tensor.numel() == 0:
            continue
        ident = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()), tensor.device)
        if ident in first:
            aliases[name] = first[ident]
        else:
            first[ident] = name
    return aliases


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Writes `model.safetensors` and `config.json` for a pretraining, task or embedding model.

    Args:
        model: a PretrainModel, TaskModel or EmbeddingModel (or a training system holding one as `.model`).
        directory: created if needed; existing files of the same names are overwritten.

    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    from mmsdk import __version__

    model = _unwrap(model)
    kind = _kind(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    aliases = _aliases(state)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items() if name not in aliases}
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT, "kind": kind})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmsdk_version": __version__,
        "kind": kind,
        "model": model.config.to_dict(),
        "head": model.head_config.to_dict() if kind == "task" else None,
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    logger.info("saved %s model (%d tensors) to %s", kind, len(tensors), directory)
    return directory


@dataclass
class _Saved:
    """A parsed pretrained directory."""

    directory: Path
    kind: str
    model: ModelConfig
    head: HeadConfig | None


def _read_config(directory: str | Path) -> _Saved:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"pretrained directory {str(directory)!r} does not exist")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {str(directory)!r} a directory written by save_pretrained?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: unknown format {found!r}; expected {FORMAT!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this mmsdk reads <= {FORMAT_VERSION})")
    kind = data.get("kind")
    if kind not in ("pretrain", "task", "embedding"):
        raise ValueError(f"{path}: unknown kind {kind!r}; expected 'pretrain', 'task' or 'embedding'")
    try:
        model = ModelConfig.from_dict(data.get("model"))
        head = HeadConfig.from_dict(data["head"]) if kind == "task" else None
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: invalid config: {err}") from err
    return _Saved(directory, kind, model, head)


def _read_weights(directory: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; save_pretrained writes the weights there")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def _shape_errors(source: str, weights: dict[str, Tensor], state: dict[str, Tensor], keys: list[str]) -> None:
    """Raises ValueError listing every key whose checkpoint shape differs from the model's."""
    bad = [k for k in keys if tuple(weights[k].shape) != tuple(state[k].shape)]
    if bad:
        lines = [
            f"{k}: {tuple(weights[k].shape)} in the checkpoint vs {tuple(state[k].shape)} in the model" for k in bad
        ]
        raise ValueError(f"{source}: weight shape mismatch for {len(bad)} key(s):\n  " + "\n  ".join(lines[:10]))


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _build(saved: _Saved) -> nn.Module:
    if saved.kind == "task":
        assert saved.head is not None
        return TaskModel(saved.model, saved.head)
    if saved.kind == "embedding":
        return EmbeddingModel(Backbone(saved.model))
    return build_model(saved.model)


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a model from `config.json` and loads `model.safetensors` strictly; returns it in eval mode.

    Raises:
        FileNotFoundError: for a missing directory or file (named in the message).
        ValueError: for an unknown format, an invalid config, shape mismatches (key and both shapes), or
            missing/unexpected keys.
    """
    saved = _read_config(directory)
    model = _build(saved)
    weights = _read_weights(saved.directory)
    state = model.state_dict()
    aliases = _aliases(state)
    source = str(saved.directory / WEIGHTS_NAME)
    expected = [k for k in state if k not in aliases]
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in state]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the {saved.kind} model of {saved.directory / CONFIG_NAME}: "
            f"missing keys [{_listing(missing)}]; unexpected keys [{_listing(unexpected)}]"
        )
    _shape_errors(source, weights, state, expected)
    full = {k: weights[aliases.get(k, k)] for k in state}
    model.load_state_dict(full, strict=True)
    return model.to(map_location).eval()


@dataclass
class LoadReport:
    """What :func:`load_backbone` did.

    Attributes:
        loaded: model keys now holding checkpoint values.
        missing: model keys left at their initialization (typically the task head).
        unexpected: checkpoint keys that were not used (decoder, pretraining head, mask token).
        source: the pretrained directory.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    source: str = ""

    @staticmethod
    def _groups(keys: list[str]) -> str:
        """Keys summarized by their first two name parts, e.g. `decoder.blocks (24), head (2)`."""
        counts: dict[str, int] = {}
        for key in keys:
            prefix = ".".join(key.split(".")[:2]) if key.count(".") >= 2 else key.rsplit(".", 1)[0]
            counts[prefix] = counts.get(prefix, 0) + 1
        return ", ".join(f"{p} ({n})" for p, n in counts.items()) or "none"

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors from {self.source or 'the checkpoint'}\n"
            f"  missing (left initialized): {self._groups(self.missing)}\n"
            f"  unexpected (ignored): {self._groups(self.unexpected)}"
        )


def _check_compatible(saved: _Saved, config: ModelConfig) -> None:
    """Raises ValueError when the checkpoint's adapter or encoder shapes differ from the model's."""
    where = saved.directory / CONFIG_NAME
    if saved.model.adapter != config.adapter:
        raise ValueError(
            f"{where}: the checkpoint was trained with adapter {saved.model.adapter!r}, "
            f"but the model uses {config.adapter!r}"
        )
    ours, theirs = config.encoder.to_dict(), saved.model.encoder.to_dict()
    diffs = [
        f"{f}={theirs[f]!r} in the checkpoint vs {ours[f]!r}" for f in _ENCODER_SHAPE_FIELDS if ours[f] != theirs[f]
    ]
    if diffs:
        raise ValueError(f"{where}: encoder does not match the model: " + "; ".join(diffs))


def _same_head(saved: _Saved, model: nn.Module) -> bool:
    """Whether a saved task model's head can initialize `model`'s head (same task, outputs and head options)."""
    head = getattr(model, "head_config", None)
    return saved.kind == "task" and isinstance(head, HeadConfig) and saved.head.to_dict() == head.to_dict()


def load_backbone(model: nn.Module, directory: str | Path) -> LoadReport:
    """Loads the `backbone.*` weights of a pretrained directory into `model` (anything with `.backbone`).

    The checkpoint's decoder and pretraining head are dropped; the model's own head keeps its initialization,
    except when the directory holds a task model with the same head config (e.g. a linear probe saved to be
    fine-tuned next, the LP-FT recipe): then its head is loaded too.

    Raises:
        ValueError: when the adapter or encoder shapes disagree, or a backbone tensor has another shape
            (the key and both shapes are named).
        FileNotFoundError: for a missing directory or file.
    """
    if not isinstance(getattr(model, "backbone", None), Backbone):
        raise ValueError(f"load_backbone expects a model with a `.backbone`, got {type(model).__name__}")
    saved = _read_config(directory)
    _check_compatible(saved, model.backbone.config)
    weights = _read_weights(saved.directory)
    state = model.state_dict()
    aliases = _aliases(state)
    source = str(saved.directory / WEIGHTS_NAME)
    # a model key takes the checkpoint value of its canonical name (shared tensors are loaded once)
    prefixes = ("backbone.", "head.") if _same_head(saved, model) else ("backbone.",)
    wanted = {k: aliases.get(k, k) for k in state if aliases.get(k, k).startswith(prefixes)}
    available = [k for k, canonical in wanted.items() if canonical in weights]
    _shape_errors(source, {k: weights[wanted[k]] for k in available}, state, available)
    incompatible = model.load_state_dict({k: weights[wanted[k]] for k in available}, strict=False)
    assert not incompatible.unexpected_keys, incompatible.unexpected_keys
    used = {wanted[k] for k in available}
    report = LoadReport(
        loaded=available,
        missing=[k for k in state if k not in set(available)],
        unexpected=[k for k in weights if k not in used],
        source=str(saved.directory),
    )
    logger.info("%s", report)
    return report


def read_config(directory: str | Path) -> dict[str, Any]:
    """The validated `config.json` of a pretrained directory, as plain dicts (`kind`, `model`, `head`)."""
    saved = _read_config(directory)
    return {
        "kind": saved.kind,
        "model": saved.model.to_dict(),
        "head": None if saved.head is None else saved.head.to_dict(),
    }
