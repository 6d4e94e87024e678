"""Pictures of Point-MAE reconstructions: the input cloud, the visible groups, and visible + predicted groups.

As in Point-MAE's visualisation, a group's points are stored re-centred on its center, so they are drawn at
`center + offsets`; predicted (hidden) groups are placed at their true centers, which the decoder receives as
positions. matplotlib is imported only when a picture is drawn (Agg backend, no display needed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from mmsdk.adapters._plotting import pyplot, save_figure

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | Tensor


def _numpy(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"plot_point_reconstruction: {name} must be a numpy array or torch tensor, got {type(value)}")
    return value


def _check(
    points: np.ndarray, centers: np.ndarray, groups: np.ndarray, predicted: np.ndarray, hidden: np.ndarray
) -> None:
    """Raises ValueError unless the shapes are (N, 3+), (S, 3), (S, k, 3), (S, k, 3) and (S,) bool."""
    fn = "plot_point_reconstruction"
    if points.ndim != 2 or points.shape[1] < 3 or points.shape[0] == 0:
        raise ValueError(f"{fn}: points must be one (N, 3) cloud, got shape {points.shape}")
    if centers.ndim != 2 or centers.shape[1] != 3:
        raise ValueError(f"{fn}: centers must be (S, 3), got shape {centers.shape}")
    s = centers.shape[0]
    if groups.ndim != 3 or groups.shape[0] != s or groups.shape[2] != 3:
        raise ValueError(f"{fn}: groups must be (S={s}, k, 3) re-centred points, got shape {groups.shape}")
    if predicted.shape != groups.shape:
        raise ValueError(f"{fn}: predicted must have the shape of groups {groups.shape}, got {predicted.shape}")
    if hidden.shape != (s,) or hidden.dtype != np.bool_:
        raise ValueError(f"{fn}: hidden must be a (S={s},) bool mask, got {hidden.dtype} {hidden.shape}")


def _scatter(ax: Any, xyz: np.ndarray, color: str, label: str | None, size: float = 3.0) -> None:
    if len(xyz):
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], s=size, c=color, label=label, depthshade=False, linewidths=0)


def plot_point_reconstruction(
    points: ArrayLike,
    centers: ArrayLike,
    groups: ArrayLike,
    predicted: ArrayLike,
    hidden: ArrayLike,
    path: str | Path,
    title: str = "Point-MAE masked-group reconstruction",
) -> Path:
    """Draws a 3-D scatter PNG with three panels: input cloud, visible groups, visible + predicted groups.

    Args:
        points: (N, 3) input cloud (extra columns past xyz are ignored).
        centers: (S, 3) group centers.
        groups: (S, k, 3) target groups, re-centred on their centers (the adapter's targets).
        predicted: (S, k, 3) predicted groups, re-centred (only the hidden groups' predictions are drawn).
        hidden: (S,) bool, True for masked groups.
        path: the PNG to write (its folder is created).
        title: figure title.

    Returns:
        `path` as a Path.

    Raises:
        ValueError: for inputs of the wrong type or shape.
    """
    points, centers, groups = _numpy("points", points), _numpy("centers", centers), _numpy("groups", groups)
    predicted, hidden = _numpy("predicted", predicted), _numpy("hidden", hidden)
    _check(points, centers, groups, predicted, hidden)
    plt = pyplot()

    visible = (groups[~hidden] + centers[~hidden, None]).reshape(-1, 3)  # (S_visible·k, 3)
    rebuilt = (predicted[hidden] + centers[hidden, None]).reshape(-1, 3)  # (S_hidden·k, 3)
    xyz = points[:, :3]
    everything = np.concatenate([xyz, visible, rebuilt])  # (M, 3)
    finite = everything[np.isfinite(everything).all(axis=1)]
    low, high = (finite.min(0), finite.max(0)) if len(finite) else (np.full(3, -1.0), np.full(3, 1.0))
    middle, radius = (low + high) / 2, max(float((high - low).max()) / 2, 1e-6)

    n_hidden, n_groups = int(hidden.sum()), len(hidden)
    fig = plt.figure(figsize=(12, 4.4))
    panels = [
        (f"input ({len(xyz)} points)", [(xyz, "tab:gray", None)]),
        (f"visible groups ({n_groups - n_hidden} of {n_groups})", [(visible, "tab:blue", "visible")]),
        (
            f"reconstruction ({n_hidden} groups predicted)",
            [(visible, "tab:blue", "visible"), (rebuilt, "tab:orange", "predicted")],
        ),
    ]
    for i, (name, layers) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        for cloud, color, label in layers:
            _scatter(ax, cloud, color, label)
        for axis, centre in zip("xyz", middle):
            getattr(ax, f"set_{axis}lim")(centre - radius, centre + radius)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-60)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=6)
        if i == 2:
            ax.legend(loc="upper left", fontsize=8, markerscale=4)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
