"""Dense clouds served as a fresh random subset of points at every access: Point-MAE's training-time resampling."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mmsdk.adapters.pointcloud.data import Augment, subsample


class ResampledClouds(Dataset):
    """Dense clouds (M, N_dense, 3) served as fresh random `n`-point subsets, optionally augmented; items are points
    (n, 3), or (points, label) when labels are given.

    Every access draws its subset (and augmentation) from a numpy generator seeded by torch's global RNG, which the
    training API seeds, so runs are reproducible and every epoch sees other subsets.

    Args:
        points: (M, N_dense, 3) dense clouds (e.g. `ShapesDataset(..., num_points=2 * n).points`).
        labels: (M,) class ids, or None for pretraining.
        n: points per served cloud, at most N_dense.
        augment: applied to every served cloud (e.g. `Augment()`, Point-MAE's scale-and-translate), or None.
    """

    def __init__(self, points: torch.Tensor, labels: torch.Tensor | None, n: int, augment: Augment | None) -> None:
        if points.dim() != 3 or not 1 <= n <= points.shape[1]:
            shape = tuple(points.shape)
            raise ValueError(f"ResampledClouds needs (M, N_dense, 3) clouds and n <= N_dense, got {shape}, n={n}")
        if labels is not None and len(labels) != len(points):
            raise ValueError(f"ResampledClouds: {len(labels)} labels for {len(points)} clouds")
        self.points, self.labels, self.n, self.augment = points, labels, n, augment

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        cloud = subsample(self.points[index], self.n, "random", rng)  # (n, 3)
        if self.augment is not None:
            cloud = self.augment(cloud, rng)
        return cloud if self.labels is None else (cloud, int(self.labels[index]))
