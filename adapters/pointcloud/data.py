"""Point-cloud data: Point-MAE transforms, a bundled synthetic dataset, folder datasets.

File reading lives in `readers`, the transforms and augmentations in `transforms` (both re-exported here, so
`data.read_points`, `data.Augment` and friends keep working). open3d is
imported lazily, only by the functions that read files or build meshes, so this module (and the transforms)
import on machines without it (the export runtime, GPU training images).

Conventions: a cloud is a (N, C) array (or (B, N, C) batch) whose first three columns are xyz; further columns
(colours, normals) are carried along by subsampling and dropout but not changed by the geometric transforms.
Every random choice is drawn from a `numpy.random.Generator` passed by the caller.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from mmsdk.adapters.pointcloud.readers import (
    ARRAY_EXTENSIONS,
    MESH_EXTENSIONS,
    POINT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    Channel,
    PointCloud,
    _import_open3d,
    read_points,
)
from mmsdk.adapters.pointcloud.transforms import (
    Augment,
    AugmentConfig,
    CloudAugment,
    _item_rng,
    jitter,
    normalize_unit_sphere,
    point_dropout,
    rotate,
    scale_translate,
    subsample,
)
from mmsdk.config import require

__all__ = [
    "ARRAY_EXTENSIONS",
    "MESH_EXTENSIONS",
    "POINT_EXTENSIONS",
    "SHAPE_CLASSES",
    "SUPPORTED_EXTENSIONS",
    "Augment",
    "AugmentConfig",
    "Channel",
    "CloudAugment",
    "PointCloud",
    "PointCloudFolder",
    "ShapesDataset",
    "jitter",
    "make_shapes",
    "normalize_unit_sphere",
    "point_dropout",
    "read_points",
    "rotate",
    "sample_surface",
    "scale_translate",
    "subsample",
]

logger = logging.getLogger(__name__)


SHAPE_CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "arrow")
SHAPE_CLASSES += ("tetrahedron", "octahedron", "icosahedron", "mobius")  # the 10 classes of `make_shapes`


# ------------------------------------------------------------------------------------------------- synthetic shapes


def _primitive(o3d: Any, name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (T, 3) of an open3d primitive, with class-specific random proportions."""
    make = o3d.geometry.TriangleMesh
    u = rng.uniform
    mesh = {
        "box": lambda: make.create_box(1.0, u(0.8, 1.2), u(0.8, 1.2)),
        "sphere": lambda: make.create_sphere(1.0, resolution=20),
        "cylinder": lambda: make.create_cylinder(0.5, u(1.5, 2.5), resolution=32, split=1),
        "cone": lambda: make.create_cone(0.6, u(1.2, 2.0), resolution=32),
        "torus": lambda: make.create_torus(1.0, u(0.2, 0.4), radial_resolution=32, tubular_resolution=16),
        "arrow": lambda: make.create_arrow(0.1, 0.2, u(1.2, 1.8), 0.5, resolution=20, cylinder_split=1),
        "tetrahedron": lambda: make.create_tetrahedron(1.0),
        "octahedron": lambda: make.create_octahedron(1.0),
        "icosahedron": lambda: make.create_icosahedron(1.0),
        "mobius": lambda: make.create_mobius(70, 15, 1, 1.0, 1.0, u(0.4, 0.8), 1.0),
    }[name]()
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, signs fixed, det forced to +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform surface sampling (area-weighted triangle choice, uniform barycentric point), as open3d's
    `sample_points_uniformly`, but driven by a numpy Generator.

    Args:
        vertices: (V, 3); triangles: (T, 3) vertex indices.

    Returns:
        (n, 3) points.
    """
    corners = vertices[triangles]  # (T, 3, 3)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = corners[rng.choice(len(triangles), size=n, p=areas / areas.sum())]  # (n, 3, 3)
    r1, r2 = np.sqrt(rng.random((n, 1))), rng.random((n, 1))
    return (1 - r1) * chosen[:, 0] + r1 * (1 - r2) * chosen[:, 1] + r1 * r2 * chosen[:, 2]


def make_shapes(
    num_per_class: int, num_points: int = 1024, seed: int = 0, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic 10-class point clouds from open3d mesh primitives (no download), deterministic for a seed.

    Each shape gets random class-specific proportions, a mild anisotropic scale (0.85-1.15 per axis), a uniformly
    random 3-D rotation, `num_points` uniform surface samples, Gaussian noise of std `noise` (in unit-sphere
    units) and is normalized to the unit sphere.

    Returns:
        points (M, num_points, 3) float32 with M = 10 * num_per_class (class-major order), labels (M,) int64
        indexing `class_names` (= SHAPE_CLASSES).
    """
    require(num_per_class >= 1, "make_shapes", "num_per_class", f"must be >= 1, got {num_per_class}")
    require(num_points >= 1, "make_shapes", "num_points", f"must be >= 1, got {num_points}")
    require(noise >= 0, "make_shapes", "noise", f"must be >= 0, got {noise}")
    o3d = _import_open3d()
    rng = np.random.default_rng(seed)
    clouds = np.empty((len(SHAPE_CLASSES) * num_per_class, num_points, 3), dtype=np.float32)
    for label, name in enumerate(SHAPE_CLASSES):
        for i in range(num_per_class):
            vertices, triangles = _primitive(o3d, name, rng)
            vertices = (vertices * rng.uniform(0.85, 1.15, size=3)) @ _random_rotation(rng).T
            points = normalize_unit_sphere(sample_surface(vertices, triangles, num_points, rng))
            points = points + noise * rng.standard_normal(points.shape)
            clouds[label * num_per_class + i] = normalize_unit_sphere(points)
    labels = np.repeat(np.arange(len(SHAPE_CLASSES), dtype=np.int64), num_per_class)
    return clouds, labels, list(SHAPE_CLASSES)


class ShapesDataset(Dataset):
    """The `make_shapes` demo set split into train/test: items are (points (N, 3) float32 tensor, label int).

    The split is stratified: per class, a seeded `test_fraction` of the shapes is held out. Train and test
    datasets built with the same arguments never share a shape.

    Args:
        split: "train" or "test".
        num_per_class: shapes per class before the split.
        num_points, seed, noise: as for `make_shapes`.
        test_fraction: share of each class held out for test.
        augment: applied per item (typically only for train).
        augment_seed: fixes each item's augmentation (reproducible epochs); None = drawn from torch's RNG.
    """

    def __init__(
        self,
        split: Literal["train", "test"] = "train",
        num_per_class: int = 50,
        num_points: int = 1024,
        seed: int = 0,
        noise: float = 0.01,
        test_fraction: float = 0.2,
        augment: Augment | None = None,
        augment_seed: int | None = None,
    ) -> None:
        require(split in ("train", "test"), self, "split", f"must be 'train' or 'test', got {split!r}")
        require(0 < test_fraction < 1, self, "test_fraction", f"must be in (0, 1), got {test_fraction}")
        points, labels, self.class_names = make_shapes(num_per_class, num_points, seed, noise)
        num_test = max(1, round(test_fraction * num_per_class))
        order = np.random.default_rng([seed, 1]).permuted(
            np.tile(np.arange(num_per_class), (len(SHAPE_CLASSES), 1)), axis=1
        )
        chosen = order[:, :num_test] if split == "test" else order[:, num_test:]  # (classes, k) within-class ids
        index = (chosen + num_per_class * np.arange(len(SHAPE_CLASSES))[:, None]).ravel()
        self.points = torch.from_numpy(points[np.sort(index)])  # (M, N, 3)
        self.labels = torch.from_numpy(labels[np.sort(index)])  # (M,)
        self.augment, self.augment_seed = augment, augment_seed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        points = self.points[index]
        if self.augment is not None:
            points = self.augment(points, _item_rng(self.augment_seed, index))
        return points, int(self.labels[index])

    def shard_augmentation(self) -> tuple[ShapesDataset, CloudAugment | None]:
        """For shards: these shapes without the augmentation, and the augmentation to draw anew at every read
        (unseeded there: `augment_seed` fixes draws by item index, which a stream does not keep)."""
        if self.augment is None:
            return self, None
        plain = copy.copy(self)
        plain.augment = None
        return plain, CloudAugment(self.augment.config.to_dict())


class PointCloudFolder(Dataset):
    """A user's files laid out as `root/<class_name>/*.{ply,pcd,obj,...}`; items are (points (n, C), label int).

    Each item is read with `read_points`, subsampled to `num_points`, normalized to the unit sphere and
    optionally augmented. Class ids follow the sorted folder names (or `class_names`, to share one mapping
    between a train and a test root). Files are searched recursively inside each class folder.

    Args:
        root: the folder of class folders.
        num_points: points per item.
        method: "random" or "fps" subsampling.
        channels: features per point, e.g. ("xyz",) or ("xyz", "rgb"); xyz should come first.
        augment: optional augmentation (geometric transforms do not rotate normal channels).
        class_names: the classes to use, in label order; None = every sub-folder of `root`.
        num_mesh_samples: surface samples drawn from mesh files.
        seed: fixes each item's subsampling/augmentation and mesh sampling; None = random per access.
        cache: keep every file's features in memory after the first read.

    Raises:
        FileNotFoundError: `root` or a listed class folder is missing.
        ValueError: no class folders or no supported files.
    """

    def __init__(
        self,
        root: str | Path,
        num_points: int = 1024,
        method: Literal["random", "fps"] = "random",
        channels: Sequence[Channel] = ("xyz",),
        augment: Augment | None = None,
        class_names: Sequence[str] | None = None,
        num_mesh_samples: int = 8192,
        seed: int | None = None,
        cache: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"point cloud folder not found: {self.root}")
        if class_names is None:
            class_names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise ValueError(f"{self.root}: no class folders (expected root/<class_name>/<files>)")
        self.class_names = list(class_names)
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.class_names):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder not found: {folder}")
            found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)
            if not found:
                logger.warning("%s: class folder has no point cloud files", folder)
            self.files += [(p, label) for p in found]
        if not self.files:
            raise ValueError(f"{self.root}: no files with a supported extension ({', '.join(SUPPORTED_EXTENSIONS)})")
        if augment is not None and "normal" in channels and augment.config.rotate_axis != "none":
            logger.warning("PointCloudFolder: rotation augmentation does not rotate the normal channels")
        self.num_points, self.method, self.channels = num_points, method, tuple(channels)
        self.augment, self.num_mesh_samples, self.seed = augment, num_mesh_samples, seed
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def per_read_randomness(self) -> str | None:
        """What each read draws anew (None: nothing): shards written from this dataset hold one draw of it."""
        if self.seed is not None:
            return None
        return "subsampling and augmentation" if self.augment is not None else "subsampling"

    def _features(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        path = self.files[index][0]
        features = read_points(path, self.num_mesh_samples, seed=self.seed or 0).features(self.channels)  # (N, C)
        if self._cache is not None:
            self._cache[index] = features
        return features

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = _item_rng(self.seed, index)
        points = normalize_unit_sphere(subsample(self._features(index), self.num_points, self.method, rng))
        if self.augment is not None:
            points = self.augment(points, rng)
        return torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)), self.files[index][1]
