"""Point-MAE's point-cloud transforms: normalisation, subsampling and the training augmentations (re-exported by
`data`). A cloud is a (N, C) array (or (B, N, C) batch) whose first three columns are xyz; further columns
(colours, normals) are carried along by subsampling and dropout but not changed by the geometric transforms. Every
random choice is drawn from a `numpy.random.Generator` passed by the caller."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from mmsdk.config import Config, require

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _check_cloud(fn: str, points: Array) -> None:
    if not isinstance(points, (np.ndarray, torch.Tensor)) or points.ndim < 2 or points.shape[-1] < 3:
        shape = getattr(points, "shape", type(points).__name__)
        raise ValueError(f"{fn}: expected a (..., N, 3+) numpy array or torch tensor, got {shape}")


def _like(values: np.ndarray, ref: Array) -> Array:
    """Casts numpy `values` to the array type, dtype and device of `ref`."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
    return values.astype(ref.dtype, copy=False)


def _copy(points: Array) -> Array:
    return points.clone() if isinstance(points, torch.Tensor) else points.copy()


def normalize_unit_sphere(points: Array, eps: float = 1e-12) -> Array:
    """Centres xyz at the centroid and scales the farthest point to norm 1 (per cloud; other columns unchanged).

    A cloud whose points all coincide (or a single point) is only centred, i.e. becomes zeros, never NaN.

    Args:
        points: (..., N, 3+) array or tensor.
        eps: clouds with a max centred norm at or below this are not scaled.
    """
    _check_cloud("normalize_unit_sphere", points)
    out = _copy(points)
    xyz = points[..., :3]
    if isinstance(points, torch.Tensor):
        centered = xyz - xyz.mean(dim=-2, keepdim=True)
        radius = centered.norm(dim=-1, keepdim=True).amax(dim=-2, keepdim=True)  # (..., 1, 1)
        out[..., :3] = centered / torch.where(radius > eps, radius, torch.ones_like(radius))
    else:
        centered = xyz - xyz.mean(axis=-2, keepdims=True)
        radius = np.linalg.norm(centered, axis=-1, keepdims=True).max(axis=-2, keepdims=True)  # (..., 1, 1)
        out[..., :3] = centered / np.where(radius > eps, radius, 1.0)
    return out


def subsample(points: Array, n: int, method: Literal["random", "fps"], rng: np.random.Generator) -> Array:
    """Picks `n` points of each cloud (all columns kept).

    "random" draws without replacement; "fps" is farthest point sampling from the first point, as Point-MAE's
    pointnet2_ops does (deterministic; `rng` unused). A cloud with fewer than `n` points keeps every point (in a
    random order) and fills the remaining `n - N` slots with points drawn with replacement, for either method.

    Args:
        points: (N, C) or (B, N, C), C >= 3 with xyz first.
        n: points to keep.
        method: "random" or "fps".
        rng: randomness for "random" and for padding.

    Returns:
        (n, C) or (B, n, C), same type, dtype and device as `points`.
    """
    _check_cloud("subsample", points)
    require(n >= 1, "subsample", "n", f"must be >= 1, got {n}")
    require(method in ("random", "fps"), "subsample", "method", f"must be 'random' or 'fps', got {method!r}")
    if points.ndim > 3:
        raise ValueError(f"subsample: expected (N, C) or (B, N, C), got {tuple(points.shape)}")
    batch = points if points.ndim == 3 else points[None]  # (B, N, C)
    B, N = batch.shape[0], batch.shape[1]
    require(N >= 1, "subsample", "points", "the cloud has no points")
    if n > N:
        idx = np.stack([np.concatenate([rng.permutation(N), rng.integers(0, N, n - N)]) for _ in range(B)])
    elif method == "random":
        idx = np.stack([rng.choice(N, n, replace=False) for _ in range(B)])  # (B, n)
    else:
        from mmsdk.adapters.pointcloud.ops import farthest_point_sample

        xyz = torch.as_tensor(batch[..., :3]).float()  # (B, N, 3), on the device of a tensor input
        idx = farthest_point_sample(xyz, n).cpu().numpy()  # (B, n)
    rows = np.arange(B)[:, None]  # (B, 1)
    if isinstance(batch, torch.Tensor):
        out = batch[torch.as_tensor(rows, device=batch.device), torch.as_tensor(idx, device=batch.device)]
    else:
        out = batch[rows, idx]
    return out if points.ndim == 3 else out[0]


def scale_translate(
    points: Array, rng: np.random.Generator, scale: tuple[float, float] = (2 / 3, 3 / 2), shift: float = 0.2
) -> Array:
    """Point-MAE's `PointcloudScaleAndTranslate`: xyz * U(scale) + U(-shift, shift), drawn per axis and per cloud.

    Args:
        points: (..., N, 3+); columns past xyz are unchanged.
    """
    _check_cloud("scale_translate", points)
    size = (*points.shape[:-2], 1, 3)
    factors = rng.uniform(scale[0], scale[1], size=size)
    offsets = rng.uniform(-shift, shift, size=size)
    out = _copy(points)
    out[..., :3] = points[..., :3] * _like(factors, points) + _like(offsets, points)
    return out


def rotate(
    points: Array, rng: np.random.Generator, axis: Literal["x", "y", "z"] = "z", max_angle: float = math.pi
) -> Array:
    """Rotates xyz about a coordinate axis by an angle drawn from U(-max_angle, max_angle) radians, per cloud.

    Use "y" for ModelNet/ShapeNet (y is up there) and "z" for scans with z up. Normal columns are not rotated.
    """
    _check_cloud("rotate", points)
    require(axis in ("x", "y", "z"), "rotate", "axis", f"must be 'x', 'y' or 'z', got {axis!r}")
    angle = rng.uniform(-max_angle, max_angle, size=points.shape[:-2])
    c, s, zero, one = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    rows = {
        "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    matrix = np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)  # (..., 3, 3)
    out = _copy(points)
    out[..., :3] = points[..., :3] @ _like(np.swapaxes(matrix, -1, -2), points)  # row vectors: p @ R^T
    return out


def jitter(points: Array, rng: np.random.Generator, sigma: float = 0.01, clip: float = 0.05) -> Array:
    """Adds Gaussian noise N(0, sigma^2) clipped to [-clip, clip] to every coordinate (PointNet's jitter)."""
    _check_cloud("jitter", points)
    noise = np.clip(sigma * rng.standard_normal((*points.shape[:-1], 3)), -clip, clip)
    out = _copy(points)
    out[..., :3] = points[..., :3] + _like(noise, points)
    return out


def point_dropout(points: Array, rng: np.random.Generator, max_ratio: float = 0.875) -> Array:
    """PointNet++'s random point dropout: per cloud, a ratio r ~ U(0, max_ratio) of points (each dropped with
    probability r) is replaced by the cloud's first point, so N is unchanged (all columns are replaced)."""
    _check_cloud("point_dropout", points)
    out = _copy(points)
    flat = out.reshape(-1, *points.shape[-2:])  # (B, N, C) view of the copy
    for cloud in flat:
        drop = rng.random(cloud.shape[0]) <= rng.random() * max_ratio  # (N,)
        if drop.any():
            mask = torch.as_tensor(drop, device=cloud.device) if isinstance(cloud, torch.Tensor) else drop
            cloud[mask] = cloud[0].copy() if isinstance(cloud, np.ndarray) else cloud[0].clone()
    return out


@dataclass
class AugmentConfig(Config):
    """Training augmentations, applied in the order dropout, rotate, scale/translate, jitter.

    The default is Point-MAE's: only scale-and-translate.
    """

    scale_translate: bool = True
    """Anisotropic scale and translation (Point-MAE's `PointcloudScaleAndTranslate`)."""
    scale: tuple[float, float] = (2 / 3, 3 / 2)
    """Range of the per-axis scale factors."""
    shift: float = 0.2
    """Per-axis translations are drawn from [-shift, shift]."""
    rotate_axis: Literal["none", "x", "y", "z"] = "none"
    """Axis of the random rotation, or none."""
    max_angle_deg: float = 180.0
    """Rotations are drawn from [-max_angle_deg, max_angle_deg] degrees."""
    jitter_sigma: float = 0.0
    """Standard deviation of the clipped Gaussian jitter (0 = off; PointNet uses 0.01)."""
    jitter_clip: float = 0.05
    """Jitter is clipped to [-jitter_clip, jitter_clip]."""
    dropout_max_ratio: float = 0.0
    """Largest ratio of points dropped (0 = off; PointNet++ uses 0.875)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.scale[0] <= self.scale[1], self, "scale", f"must be 0 < low <= high, got {self.scale}")
        require(self.shift >= 0, self, "shift", f"must be >= 0, got {self.shift}")
        require(self.max_angle_deg >= 0, self, "max_angle_deg", f"must be >= 0, got {self.max_angle_deg}")
        require(self.jitter_sigma >= 0, self, "jitter_sigma", f"must be >= 0, got {self.jitter_sigma}")
        require(self.jitter_clip >= 0, self, "jitter_clip", f"must be >= 0, got {self.jitter_clip}")
        require(
            0 <= self.dropout_max_ratio < 1,
            self,
            "dropout_max_ratio",
            f"must be in [0, 1), got {self.dropout_max_ratio}",
        )


class Augment:
    """Applies the augmentations an `AugmentConfig` enables: `Augment(config)(points, rng)`.

    Args:
        config: an AugmentConfig, a mapping of its fields, or None for the defaults.
    """

    def __init__(self, config: AugmentConfig | Mapping[str, Any] | None = None) -> None:
        self.config = AugmentConfig.from_dict(config)
        c = self.config
        steps: list[Callable[[Any, np.random.Generator], Any]] = []
        if c.dropout_max_ratio > 0:
            steps.append(lambda p, rng: point_dropout(p, rng, c.dropout_max_ratio))
        if c.rotate_axis != "none" and c.max_angle_deg > 0:
            steps.append(lambda p, rng: rotate(p, rng, c.rotate_axis, math.radians(c.max_angle_deg)))  # type: ignore[arg-type]
        if c.scale_translate:
            steps.append(lambda p, rng: scale_translate(p, rng, c.scale, c.shift))
        if c.jitter_sigma > 0:
            steps.append(lambda p, rng: jitter(p, rng, c.jitter_sigma, c.jitter_clip))
        self.steps = steps

    def __call__(self, points: Array, rng: np.random.Generator) -> Array:
        """Augments a (..., N, 3+) cloud; returns the same type and shape."""
        for step in self.steps:
            points = step(points, rng)
        return points


class CloudAugment:
    """An :class:`Augment` as an item → item function, for shards that redo it at every read: augments the cloud of
    a (points, label) item or a bare cloud, drawing from torch's RNG (which the loader seeds per worker and epoch).

    Args:
        config: the AugmentConfig's fields.
    """

    shard_rebuildable = True  # shards may rebuild it from its spec (mmsdk.contracts.shards)

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self._augment: Augment | None = None

    def spec(self) -> dict[str, Any]:
        """The fields that rebuild it (`CloudAugment(**spec)`)."""
        return {"config": self.config}

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "_augment": None}  # the built steps are closures: rebuilt where used

    def __call__(self, item: Any) -> Any:
        if self._augment is None:
            self._augment = Augment(self.config)
        rng = _item_rng(None, 0)
        if isinstance(item, tuple):
            return (self._augment(item[0], rng), *item[1:])
        return self._augment(item, rng)


def _item_rng(seed: int | None, index: int) -> np.random.Generator:
    """Fixed per (seed, index) when seeded; else drawn from torch's RNG, which DataLoader seeds per worker/epoch."""
    if seed is not None:
        return np.random.default_rng([seed, index])
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
