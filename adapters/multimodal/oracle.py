"""The best any model can do on the bouncing-ball scene: a floor under each cross-modal direction's error.

Each view carries some fields of the hidden state and not others (`CARRIED`): the series shows the trajectory
(height, restitution, release time) but not the ball's size or horizontal place; the sound shows the trajectory
(impact times and loudness) and the size (pitch); the video shows everything. Given a direction's sources, the
target is random only through the fields no source carries and through its own noise, so the MSE-optimal
prediction is the mean of the target's tokens over those, given the carried fields. Its error is the floor:

    floor(A → B) = E ‖tokens_B − E[tokens_B | fields carried by A]‖²   (per target value, over real tokens)

An oracle knows the carried fields exactly, while a model must read them from noisy views (8 frames, noisy
samples), so the floor is a lower bound: a model at the floor has learnt all that can be learnt; a model far above
it has not, whatever the training mean says.

Estimated by Monte Carlo: each scene is drawn again `draws` (K) times with its carried fields kept, the other fields
drawn afresh from the scene's ranges and new noise, and the mean of the K re-draws' tokens is the prediction. The
truth is one more draw from the same conditional distribution, so that prediction's error is the floor times
(1 + 1/K) (the K-mean's own variance adds σ²/K), which the estimate divides out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsdk.adapters.multimodal.evaluation import (
    Direction,
    DirectionError,
    direction_name,
    parse_direction,
    target_tokens,
)
from mmsdk.adapters.multimodal.scene import MODALITIES, STATE_FIELDS, BouncingScene, render

__all__ = ["CARRIED", "carried_fields", "oracle_errors", "oracle_tokens"]

logger = logging.getLogger(__name__)

CARRIED: dict[str, tuple[str, ...]] = {
    "series": ("height", "restitution", "offset"),
    "audio": ("height", "restitution", "offset", "radius"),
    "video": STATE_FIELDS,
}
"""View → the hidden-state fields it determines (the series' height curve fixes the trajectory; the sound's impact
times and loudness fix it too, and its pitch the radius; the video shows all five)."""


def carried_fields(sources: Sequence[str]) -> tuple[str, ...]:
    """The state fields that any of `sources` carries, in STATE_FIELDS order.

    Raises:
        ValueError: for a source that is not a view of the scene.
    """
    unknown = [s for s in sources if s not in CARRIED]
    if unknown:
        raise ValueError(f"oracle: unknown source view(s) {unknown}; the scene's views are {list(MODALITIES)}")
    return tuple(f for f in STATE_FIELDS if any(f in CARRIED[s] for s in sources))


def _redraws(scene: BouncingScene, index: int, kept: Sequence[str], draws: int, target: str) -> Tensor:
    """(K, ...) the target view of `draws` re-draws of item `index`: the kept fields as they are, the others drawn
    uniformly from the scene's ranges, fresh noise (a pure function of the scene's seed and the index)."""
    state = scene.state(index)
    rng = np.random.default_rng([scene.seed, index, 7919])
    views = []
    for _ in range(draws):
        redrawn = {f: state[f] if f in kept else float(rng.uniform(*getattr(scene.config, f))) for f in STATE_FIELDS}
        seed = int(rng.integers(0, 2**62)) if scene.config.noise > 0 else None
        views.append(render(redrawn, scene.config, seed=seed, modalities=[target])[target])
    return torch.stack(views)


@torch.no_grad()
def oracle_tokens(
    model: Any, scene: BouncingScene, indices: Sequence[int], sources: Sequence[str], target: str, draws: int = 16
) -> Tensor:
    """(B, N_m, P) the Monte Carlo mean of the target's tokens given the fields `sources` carry, for the items
    `indices` of `scene` (in the model's target units, as :func:`target_tokens` gives them)."""
    if draws < 1:
        raise ValueError(f"oracle: draws must be >= 1, got {draws}")
    kept = carried_fields(sources)
    views = torch.cat([_redraws(scene, i, kept, draws, target) for i in indices])  # (B·K, ...)
    values, real = target_tokens(model, {target: views}, target)  # (B·K, N_m, P)
    weight = real.unsqueeze(-1).to(values.dtype)
    values = (values * weight).unflatten(0, (len(indices), draws))  # (B, K, N_m, P)
    return values.sum(dim=1) / weight.unflatten(0, (len(indices), draws)).sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def oracle_errors(
    model: Any,
    scene: BouncingScene,
    directions: Sequence[Direction | str],
    means: Mapping[str, Tensor],
    draws: int = 16,
    batch_size: int = 64,
) -> list[DirectionError]:
    """The floor of each direction over `scene` (see the module doc), beside the training-mean baseline, in the
    units of :func:`~mmsdk.adapters.multimodal.evaluation.cross_modal_errors` (so the two lists line up).

    Args:
        model: a model holding the target modalities' adapters (only its tokenizers are used).
        scene: the test scenes; their hidden states drive the re-draws.
        directions: (sources, target) pairs or "a+b→c" strings.
        means: target modality → (N_m, P) training means.
        draws: K re-draws per scene (the estimate is corrected for K; more draws, less variance).
        batch_size: scenes per tokenizer call.
    """
    if not isinstance(scene, BouncingScene):
        raise TypeError(f"oracle_errors needs a BouncingScene (its hidden states), got {type(scene).__name__}")
    parsed = [parse_direction(d) if isinstance(d, str) else (tuple(d[0]), d[1]) for d in directions]
    sums: dict[tuple[tuple[str, ...], str], tuple[float, float, int]] = {}  # directions that carry the same fields
    out = []
    for sources, target in parsed:
        key = (carried_fields(sources), target)
        if key not in sums:
            sums[key] = _floor_sums(model, scene, sources, target, means[target], draws, batch_size)
        floor_sum, mean_sum, count = sums[key]
        name = direction_name((sources, target))
        out.append(DirectionError(name, floor_sum / max(count, 1), mean_sum / max(count, 1), count))
        logger.info("%s: oracle floor %.4f, training mean %.4f", name, out[-1].mse, out[-1].mean_mse)
    return out


def _floor_sums(
    model: Any, scene: BouncingScene, sources: Sequence[str], target: str, mean: Tensor, draws: int, batch_size: int
) -> tuple[float, float, int]:
    """Summed squared errors of the corrected oracle and of the training mean over the scene, and the value count
    (the re-draws depend only on the fields the sources carry, so directions carrying the same ones share these)."""
    floor_sum, mean_sum, count = 0.0, 0.0, 0
    for start in range(0, len(scene), batch_size):
        indices = list(range(start, min(start + batch_size, len(scene))))
        truth_views = torch.stack([scene[i][0][target] if scene.pairs else scene[i][target] for i in indices])
        truth, real = target_tokens(model, {target: truth_views}, target)
        pred = oracle_tokens(model, scene, indices, sources, target, draws)
        weight = real.unsqueeze(-1).to(truth.dtype).expand_as(truth)
        floor_sum += float((((pred - truth) ** 2) * weight).sum()) * draws / (draws + 1)
        mean_sum += float((((mean - truth) ** 2) * weight).sum())
        count += int(weight.sum())
    return floor_sum, mean_sum, count
