"""Cross-modal evaluation of a 4m model: per-direction errors against the training mean.

A direction is "sources → target" (e.g. `video→series`): the model sees every token of the source modalities and
predicts every token of the target. Errors are mean squared errors in the target adapter's own target space (the
values its loss compares: normalized patches, tube pixels, log-mel patches), over the target's real tokens, so
directions into one modality are comparable with each other and with two references:

- the **mean** baseline: every token predicted as the training set's mean target token at that place;
- any other model's predictions of the same tokens (the benchmark adds a model of the target alone).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmsdk.contracts.tokens import PRESENT_KEY

__all__ = [
    "Direction",
    "DirectionError",
    "cross_modal_errors",
    "direction_name",
    "mean_tokens",
    "parse_direction",
    "target_tokens",
]

logger = logging.getLogger(__name__)

Direction = tuple[tuple[str, ...], str]
"""(source modalities, target modality)."""


def parse_direction(text: str) -> Direction:
    """`"video+audio→series"` (or `->`) → (("video", "audio"), "series").

    Raises:
        ValueError: for text without exactly one arrow or with empty sides.
    """
    parts = text.replace("->", "→").split("→")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"a direction reads 'source[+source]→target', got {text!r}")
    return tuple(s.strip() for s in parts[0].split("+")), parts[1].strip()


def direction_name(direction: Direction) -> str:
    """(("video", "audio"), "series") → "video+audio→series"."""
    return "+".join(direction[0]) + "→" + direction[1]


@dataclass
class DirectionError:
    """One direction's errors over a dataset.

    Attributes:
        direction: e.g. "video→series".
        mse: the model's mean squared error per target value.
        mean_mse: the training-mean baseline's.
        tokens: target tokens scored.
    """

    direction: str
    mse: float
    mean_mse: float
    tokens: int

    @property
    def ratio(self) -> float:
        """mse / mean_mse: below 1 means the sources say something about the target."""
        return self.mse / max(self.mean_mse, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "mse": self.mse, "mean_mse": self.mean_mse, "ratio": self.ratio}


def _batches(data: Dataset | Iterable[Any], batch_size: int) -> Iterable[Mapping[str, Any]]:
    """Batches of inputs mappings (the inputs of `(inputs, targets)` batches)."""
    batches = DataLoader(data, batch_size=batch_size, shuffle=False) if isinstance(data, Dataset) else data
    for batch in batches:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _without_presence(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in inputs.items() if name != PRESENT_KEY}


@torch.no_grad()
def target_tokens(model: Any, inputs: Mapping[str, Any], name: str) -> tuple[Tensor, Tensor]:
    """A modality's target tokens (B, N_m, P) and real-token map (B, N_m) from raw inputs."""
    batch = model.backbone.tokenize({name: inputs[name]})
    part = model.backbone.parts(batch)[name]
    if part.targets is None:
        raise ValueError(f"modality {name!r}: its adapter's tokens carry no targets")
    real = part.padding_mask if part.padding_mask is not None else torch.ones(part.targets.shape[:2], dtype=torch.bool)
    return torch.nan_to_num(part.targets.float()), real


@torch.no_grad()
def mean_tokens(model: Any, data: Dataset | Iterable[Mapping[str, Any]], name: str, batch_size: int = 64) -> Tensor:
    """(N_m, P) the mean target token of modality `name` at each place over `data` (the training-mean baseline)."""
    total, count = None, None
    for inputs in _batches(data, batch_size):
        values, real = target_tokens(model, _without_presence(inputs), name)
        weight = real.unsqueeze(-1).to(values.dtype)
        part_sum, part_count = (values * weight).sum(0), weight.sum(0)
        total = part_sum if total is None else total + part_sum
        count = part_count if count is None else count + part_count
    if total is None or count is None:
        raise ValueError("mean_tokens: no data")
    return total / count.clamp_min(1.0)


@torch.no_grad()
def cross_modal_errors(
    model: Any,
    data: Dataset | Iterable[Mapping[str, Any]],
    directions: Sequence[Direction | str],
    means: Mapping[str, Tensor],
    batch_size: int = 64,
) -> list[DirectionError]:
    """Errors of each direction over `data`, beside the training-mean baseline.

    Args:
        model: a 4m model (its `predict` is used with `decode=False`).
        data: a dataset of inputs mappings or `(inputs, targets)` pairs, or batches of them.
        directions: (sources, target) pairs or "a+b→c" strings.
        means: target modality → (N_m, P) training means (:func:`mean_tokens`).
        batch_size: for a dataset.
    """
    parsed = [parse_direction(d) if isinstance(d, str) else (tuple(d[0]), d[1]) for d in directions]
    sums = {direction_name(d): [0.0, 0.0, 0] for d in parsed}
    was_training = model.training
    model.eval()
    try:
        for inputs in _batches(data, batch_size):
            inputs = _without_presence(inputs)
            for sources, target in parsed:
                values, real = target_tokens(model, inputs, target)
                shape = {target: tuple(inputs[target].shape[1:])}  # query as many tokens as the truth has
                pred = model.predict({s: inputs[s] for s in sources}, [target], decode=False, shapes=shape)[target]
                weight = real.unsqueeze(-1).to(values.dtype).expand_as(values)
                entry = sums[direction_name((sources, target))]
                entry[0] += float((((pred - values) ** 2) * weight).sum())
                entry[1] += float((((means[target] - values) ** 2) * weight).sum())
                entry[2] += int(weight.sum())
    finally:
        model.train(was_training)
    out = []
    for name, (model_sum, mean_sum, count) in sums.items():
        out.append(DirectionError(name, model_sum / max(count, 1), mean_sum / max(count, 1), count))
        logger.info("%s: mse %.4f, training mean %.4f", name, out[-1].mse, out[-1].mean_mse)
    return out
