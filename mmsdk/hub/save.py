"""`save_pretrained`: a model as `model.safetensors` + `config.json` (tensors shared between modules stored once).

Both files are written atomically (a crash leaves the previous file or the new one, never half of either), and a
model whose weights hold NaN or Inf is refused: a diverged run cannot overwrite a good model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import Tensor, nn

from mmsdk.hub.format import CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME
from mmsdk.hub.integrity import atomic_write, atomic_write_text, first_nonfinite, nonfinite_summary
from mmsdk.models.embedding_model import EmbeddingModel
from mmsdk.models.objectives.base import Objective
from mmsdk.models.task_model import TaskModel

logger = logging.getLogger(__name__)


def kind_of(model: nn.Module) -> str:
    """ "task", "embedding" or "pretrain" for the three model kinds the format holds.

    Raises:
        ValueError: for any other module.
    """
    if isinstance(model, TaskModel):
        return "task"
    if isinstance(model, EmbeddingModel):
        return "embedding"
    if isinstance(model, Objective):
        return "pretrain"
    raise ValueError(
        f"save_pretrained expects a pretraining (Objective), task or embedding model, got {type(model).__name__}"
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a training system (anything with a `.model`), else the model itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and not isinstance(model, (TaskModel, Objective)) else model


def aliases(state: dict[str, Tensor]) -> dict[str, str]:
    """Maps each key whose tensor is the same memory as an earlier key's (tied/shared modules) to that key."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for name, tensor in state.items():
        if tensor.numel() == 0:
            continue
        ident = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()), tensor.device)
        if ident in first:
            out[name] = first[ident]
        else:
            first[ident] = name
    return out


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Writes `model.safetensors` and `config.json` for a pretraining, task or embedding model.

    Args:
        model: an objective (pretraining model), TaskModel or EmbeddingModel (or a training system holding one as
            `.model`).
        directory: created if needed; existing files of the same names are overwritten.

    Returns:
        The directory.

    Raises:
        ValueError: if a weight or buffer holds NaN or Inf (named in the message); nothing is written then.
    """
    from safetensors.torch import save_file

    from mmsdk import __version__

    model = unwrap(model)
    kind = kind_of(model)
    directory = Path(directory)
    state = model.state_dict()
    bad = first_nonfinite(state)
    if bad is not None:
        raise ValueError(
            f"save_pretrained refuses to write {directory}: the weights are not finite "
            f"({nonfinite_summary(bad, state[bad])}); the run diverged (lower the learning rate, or resume from its "
            "last good checkpoint)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    shared = aliases(state)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items() if name not in shared}
    metadata = {"format": FORMAT, "kind": kind}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmsdk_version": __version__,
        "kind": kind,
        "model": model.config.to_dict(),
        "head": model.head_config.to_dict() if kind == "task" else None,
    }
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    logger.info("saved %s model (%d tensors) to %s", kind, len(tensors), directory)
    return directory
