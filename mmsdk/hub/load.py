"""Loading pretrained directories: whole models (`from_pretrained`) and backbones for fine-tuning (`load_backbone`).

Weights are loaded with strict checking and errors name the file, the key and both shapes. A checkpoint's backbone
only initializes a model that computes the same thing: the adapters (and their configs), the modalities and the
encoder fields that change what the weights compute must agree, and every backbone tensor must be present (unless
the caller asks for a partial load).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.hub.format import Saved, migrate_weights, read_saved
from mmsdk.hub.remote import resolve_pretrained
from mmsdk.hub.save import aliases
from mmsdk.models.backbone import Backbone
from mmsdk.models.build import build_model
from mmsdk.models.config import ModelConfig
from mmsdk.models.embedding_model import EmbeddingModel
from mmsdk.models.task_model import TaskModel

logger = logging.getLogger(__name__)

# encoder fields that change parameter shapes or names, or what the weights compute; others (dropout, attention
# backend, drop path, ...) may differ between pretraining and fine-tuning
ENCODER_FIELDS = ("dim", "depth", "heads", "mlp_ratio", "norm", "mlp", "qk_norm", "variate_bias", "norm_position")
ENCODER_FIELDS += ("final_norm", "rope", "rope_axes")


def _read_weights(saved: Saved) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = saved.weights_path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; save_pretrained writes the weights there")
    try:
        weights = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    return migrate_weights(weights, saved)


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


def _build(saved: Saved) -> nn.Module:
    """The model `config.json` describes; errors of configs that validate but do not build name the file."""
    try:
        if saved.kind == "task":
            assert saved.head is not None
            return TaskModel(saved.model, saved.head)
        if saved.kind == "embedding":
            return EmbeddingModel(Backbone(saved.model))
        return build_model(saved.model)
    except ValueError as err:
        raise ValueError(f"{saved.config_path}: {err}") from err


def from_pretrained(
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> nn.Module:
    """Rebuilds a model from `config.json` and loads `model.safetensors` strictly; returns it in eval mode.

    Directories of every supported format version load (older weight names are migrated).

    Args:
        directory: a directory written by `save_pretrained`, or a Hub repository id ("org/name", see
            :func:`~mmsdk.hub.remote.push_to_hub`): downloaded into the Hub cache, or read from it alone with
            `HF_HUB_OFFLINE=1`.
        map_location: the device of the returned model.
        revision: for a repository, the branch, tag or commit to load (None: main); pin a commit for a model
            that cannot change under you.
        cache_dir: for a repository, the Hub cache to use (None: huggingface_hub's, `HF_HUB_CACHE`).

    Raises:
        FileNotFoundError: for a missing directory or file (named in the message), or a repository that is
            neither reachable nor cached.
        ValueError: for an unknown format, an invalid config, shape mismatches (key and both shapes), or
            missing/unexpected keys.
    """
    saved = read_saved(resolve_pretrained(directory, revision, cache_dir))
    model = _build(saved)
    weights = _read_weights(saved)
    state = model.state_dict()
    shared = aliases(state)
    source = str(saved.weights_path)
    expected = [k for k in state if k not in shared]
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in state]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the {saved.kind} model of {saved.config_path}: "
            f"missing keys [{_listing(missing)}]; unexpected keys [{_listing(unexpected)}]"
        )
    _shape_errors(source, weights, state, expected)
    model.load_state_dict({k: weights[shared.get(k, k)] for k in state}, strict=True)
    return model.to(map_location).eval()


@dataclass
class LoadReport:
    """What :func:`load_backbone` did.

    Attributes:
        loaded: model keys now holding checkpoint values.
        missing: model keys left at their initialization (typically the task head).
        unexpected: checkpoint keys that were not used (decoder, pretraining heads, mask tokens).
        source: the pretrained directory.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    source: str = ""

    @staticmethod
    def _groups(keys: list[str]) -> str:
        """Keys summarized by their first two name parts, e.g. `decoder.blocks (24), heads.patchtst (2)`."""
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


CLASS_TOKEN = "backbone.cls_token"
"""The state-dict key of a model's class tokens (`ModelConfig.class_tokens`)."""


def config_differences(saved: ModelConfig, config: ModelConfig) -> list[str]:
    """What keeps a checkpoint of `saved` from initializing a backbone of `config`: modalities, adapters, adapter
    config fields (except each adapter's `free_fields`) and the encoder fields that change what the weights
    compute. Empty when compatible."""
    if saved.modality_names != config.modality_names:
        theirs = {n: m.adapter for n, m in saved.modalities.items()}
        ours = {n: m.adapter for n, m in config.modalities.items()}
        if len(theirs) == len(ours) == 1 and list(theirs.values()) != list(ours.values()):
            return [
                f"the checkpoint was trained with adapter {saved.only_modality()[1].adapter!r}, but the model uses "
                f"{config.only_modality()[1].adapter!r}"
            ]
        return [f"modalities (name: adapter) {theirs} in the checkpoint vs {ours}"]
    diffs = []
    for name, theirs in saved.modalities.items():
        ours = config.modalities[name]
        if theirs.adapter != ours.adapter:
            diffs.append(f"modality {name!r}: adapter {theirs.adapter!r} in the checkpoint vs {ours.adapter!r}")
            continue
        from mmsdk.contracts.adapter import get_adapter_class

        free = set(get_adapter_class(ours.adapter).free_fields)
        for key in sorted(set(theirs.adapter_config) | set(ours.adapter_config)):
            a, b = theirs.adapter_config.get(key), ours.adapter_config.get(key)
            if key not in free and a != b:
                diffs.append(f"{ours.adapter}.{key}={a!r} in the checkpoint vs {b!r}")
    theirs_enc, ours_enc = saved.encoder.to_dict(), config.encoder.to_dict()
    diffs += [
        f"encoder.{f}={theirs_enc[f]!r} in the checkpoint vs {ours_enc[f]!r}"
        for f in ENCODER_FIELDS
        if theirs_enc[f] != ours_enc[f]
    ]
    return diffs


def _same_head(saved: Saved, model: nn.Module) -> bool:
    """Whether a saved task model's head can initialize `model`'s head (same task, outputs and head options)."""
    head = getattr(model, "head_config", None)
    return saved.kind == "task" and saved.head is not None and head is not None and saved.head == head


def load_backbone(model: nn.Module, directory: str | Path, partial: bool = False) -> LoadReport:
    """Loads the `backbone.*` weights of a pretrained directory into `model` (anything with `.backbone`).

    The checkpoint's decoder and pretraining heads are dropped; the model's own head keeps its initialization,
    except when the directory holds a task model with the same head config (e.g. a linear probe saved to be
    fine-tuned next, the LP-FT recipe): then its head is loaded too.

    Args:
        model: the model to initialize.
        directory: a directory written by `save_pretrained`, or a Hub repository id ("org/name", its main branch).
        partial: allow backbone tensors missing from the checkpoint (they keep their initialization; the report
            lists them). Without it a missing backbone tensor is an error: fine-tuning would silently run on a
            partly random encoder. Class tokens the checkpoint lacks (`ModelConfig.class_tokens`) always start
            fresh, as a head does.

    Raises:
        ValueError: when the modalities, adapters, adapter configs or encoder fields disagree (each difference is
            named), a backbone tensor has another shape (key and both shapes), or is missing without `partial`.
        FileNotFoundError: for a missing directory or file.
    """
    if not isinstance(getattr(model, "backbone", None), Backbone):
        raise ValueError(f"load_backbone expects a model with a `.backbone`, got {type(model).__name__}")
    saved = read_saved(resolve_pretrained(directory))
    diffs = config_differences(saved.model, model.backbone.config)
    if diffs:
        raise ValueError(f"{saved.config_path}: the checkpoint does not match the model: " + "; ".join(diffs))
    weights = _read_weights(saved)
    state = model.state_dict()
    shared = aliases(state)
    source = str(saved.weights_path)
    # a model key takes the checkpoint value of its canonical name (shared tensors are loaded once)
    prefixes = ("backbone.", "head.") if _same_head(saved, model) else ("backbone.",)
    wanted = {k: shared.get(k, k) for k in state if shared.get(k, k).startswith(prefixes)}
    available = [k for k, canonical in wanted.items() if canonical in weights]
    # class tokens are the one backbone tensor a fine-tuning model may add (ViT fine-tuning from an MAE without one)
    fresh = tuple(
        f"backbone.adapters.{name}.{module}."
        for name, adapter in model.backbone.adapters.items()
        for module in getattr(adapter, "fresh_parameters", ())
    )  # what an adapter may add at fine-tuning
    absent = sorted(
        {c for k, c in wanted.items() if c.startswith("backbone.") and c not in weights and not c.startswith(fresh)}
        - {CLASS_TOKEN}
    )
    if absent and not partial:
        raise ValueError(
            f"{source} lacks {len(absent)} backbone tensor(s) of the model [{_listing(absent)}]; fine-tuning would "
            "start from a partly random encoder. Pass partial=True to load what is there."
        )
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
    saved = read_saved(directory)
    return {
        "kind": saved.kind,
        "model": saved.model.to_dict(),
        "head": None if saved.head is None else saved.head.to_dict(),
    }


def load_converted(
    model: nn.Module, state: dict[str, Tensor], unmapped: list[str], source: str, strict: bool = True
) -> nn.Module:
    """Loads weights converted from another library's checkpoint into `model`; returns it in eval mode.

    Args:
        model: the mmsdk model the conversion targets.
        state: the converted state dict (mmsdk names).
        unmapped: the source's keys the conversion did not use.
        source: what was converted, for messages (e.g. "HF VideoMAE").
        strict: raise on unmapped source keys; False logs and skips them.

    Raises:
        ValueError: for unmapped source keys (when strict), shape mismatches (key and both shapes), mmsdk weights
            the conversion left unset, or converted keys the model does not have.
    """
    if unmapped:
        message = f"{source} keys not converted: {unmapped}"
        if strict:
            raise ValueError(message + " (pass strict=False to skip them)")
        logger.warning(message)
    target = model.state_dict()
    bad = [
        f"{k}: {tuple(v.shape)} converted vs {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    if bad:
        raise ValueError(f"{source} weight shape mismatch:\n  " + "\n  ".join(bad))
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(f"conversion left mmsdk keys unset {missing} or produced unknown keys {unexpected}")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)
    logger.info("converted %s: %d tensors", source, len(state))
    return model.eval()
