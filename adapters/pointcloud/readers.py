"""Reading point clouds and meshes from files: every format open3d reads, plus numpy arrays.

open3d is imported lazily, only when a file other than .npy/.npz is read, so this module imports on machines
without it (the export runtime, GPU training images).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmsdk.adapters.pointcloud.headers import Header, check_body
from mmsdk.config import require

logger = logging.getLogger(__name__)

Channel = Literal["xyz", "rgb", "normal"]

POINT_EXTENSIONS = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_EXTENSIONS = (".obj", ".off", ".stl", ".ply")  # a .ply is a mesh when its header declares faces
ARRAY_EXTENSIONS = (".npy", ".npz")
SUPPORTED_EXTENSIONS = tuple(dict.fromkeys(POINT_EXTENSIONS + MESH_EXTENSIONS + ARRAY_EXTENSIONS))


@dataclass
class PointCloud:
    """A cloud read from a file.

    Attributes:
        points: (N, 3) float32 xyz, all finite.
        colors: (N, 3) float32 RGB in [0, 1], or None.
        normals: (N, 3) float32, or None.
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("points", "colors", "normals"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.ndim != 2 or value.shape[1] != 3 or value.shape[0] != self.points.shape[0]:
                raise ValueError(f"PointCloud.{name} must be (N, 3) with N = {self.points.shape[0]}, got {value.shape}")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def features(self, channels: Sequence[Channel] = ("xyz",)) -> np.ndarray:
        """Concatenates attributes into a (N, C) float32 array, C = 3 * len(channels), in the order given.

        Raises:
            ValueError: for an unknown channel, or one the cloud lacks (e.g. "rgb" for a file without colours).
        """
        if not channels:
            raise ValueError("PointCloud.features needs at least one channel")
        parts = []
        for channel in channels:
            value = {"xyz": self.points, "rgb": self.colors, "normal": self.normals}.get(channel, ...)
            if value is ...:
                raise ValueError(f"unknown point channel {channel!r}; choose from 'xyz', 'rgb', 'normal'")
            if value is None:
                raise ValueError(f"channel {channel!r} requested but the cloud has no {channel} data")
            parts.append(value)
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------------- reading


def _import_open3d() -> Any:
    try:
        import open3d as o3d
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading point clouds and meshes needs open3d: pip install 'mmsdk[pointcloud]'") from error
    return o3d


def _pts_has_count_line(path: Path) -> bool:
    """True when a .pts starts with its point-count line (open3d's PTS reader needs it and otherwise misreads
    the first point as the count)."""
    with path.open("r", errors="replace") as file:
        first = next((line.split() for line in file if line.strip()), [])
    return len(first) == 1


def _text_columns(path: Path) -> int | None:
    """Number of numeric columns on the first data line of a text cloud (a lone count line is skipped)."""
    with path.open("r", errors="replace") as file:
        for _, line in zip(range(20), file):
            words = line.replace(",", " ").split()
            try:
                [float(w) for w in words]
            except ValueError:
                return None
            if len(words) >= 2:
                return len(words)
    return None


def _unusable(path: Path) -> ValueError:
    return ValueError(f"{path}: the file could not be read as a point cloud (no points found)")


def _check_xyz(path: Path, array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: {what} must be a numeric (N, 3+) array, got {array.dtype} {array.shape}")
    if array.shape[1] < 3:
        raise ValueError(
            f"{path}: {what} has {array.shape[1]}-D points {array.shape}; 3-D coordinates (N, 3) are needed"
        )
    return array


def _attribute(path: Path, value: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.shape != (n, 3):
        raise ValueError(f"{path}: {name} must be ({n}, 3) like the points, got {value.shape}")
    if name == "colors" and (np.issubdtype(value.dtype, np.integer) or value.max(initial=0) > 1.0):
        value = value / 255.0  # 8-bit colours
    return value.astype(np.float32)


def _read_array(path: Path) -> PointCloud:
    """.npy: (N, 3+) with xyz first (other columns ignored); .npz: points|xyz, optional colors / normals."""
    if path.suffix.lower() == ".npy":
        array = _check_xyz(path, np.load(path, allow_pickle=False), "the array")
        return PointCloud(array[:, :3].astype(np.float32))
    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in ("points", "xyz") if k in archive), None)
        if key is None:
            raise ValueError(f"{path}: the .npz has no 'points' or 'xyz' array (keys: {sorted(archive.files)})")
        points = _check_xyz(path, archive[key], f"'{key}'")[:, :3].astype(np.float32)
        colors, normals = (archive[k] if k in archive.files else None for k in ("colors", "normals"))
    n = points.shape[0]
    return PointCloud(points, _attribute(path, colors, n, "colors"), _attribute(path, normals, n, "normals"))


def _from_open3d(cloud: Any) -> PointCloud:
    points = np.asarray(cloud.points, dtype=np.float32)
    colors = np.asarray(cloud.colors, dtype=np.float32) if cloud.has_colors() else None
    normals = np.asarray(cloud.normals, dtype=np.float32) if cloud.has_normals() else None
    return PointCloud(points, colors, normals)


def _declared(header: Header | None, name: str) -> int | None:
    element = None if header is None else header.element(name)
    return None if element is None else element.count


def _check_read(path: Path, header: Header | None, name: str, read: int) -> None:
    """Raises when open3d read another number of `name` rows than the (already checked) header declares."""
    element = None if header is None else header.element(name)
    if element is not None and read and read != element.count:
        raise ValueError(f"{path}: the header declares {element.count} {element.plural()}, open3d read {read}")


def _read_mesh(o3d: Any, path: Path, num_samples: int, seed: int, header: Header | None) -> PointCloud:
    mesh = o3d.io.read_triangle_mesh(str(path))
    _check_read(path, header, "vertex", len(mesh.vertices))
    faces = _declared(header, "face")
    if len(mesh.triangles) == 0 and faces and len(mesh.vertices):
        raise ValueError(
            f"{path}: the header declares {faces} faces but open3d read none (a face refers to a missing vertex,"
            " or a polygon cannot be triangulated)"
        )
    if len(mesh.triangles) == 0:
        if len(mesh.vertices) == 0:
            raise _unusable(path)
        logger.warning("%s: mesh file without faces; using its %d vertices as points", path, len(mesh.vertices))
        cloud = o3d.geometry.PointCloud(mesh.vertices)
        if mesh.has_vertex_colors():
            cloud.colors = mesh.vertex_colors
        if mesh.has_vertex_normals():
            cloud.normals = mesh.vertex_normals
        return _from_open3d(cloud)
    area = mesh.get_surface_area()
    if not math.isfinite(area) or area <= 0:
        raise ValueError(f"{path}: the mesh has zero or non-finite surface area ({area}); cannot sample its surface")
    mesh.compute_triangle_normals()
    o3d.utility.random.seed(seed)
    # Area-weighted uniform sampling; normals interpolate vertex normals, or are face normals when there are none.
    return _from_open3d(mesh.sample_points_uniformly(num_samples, use_triangle_normal=not mesh.has_vertex_normals()))


def read_points(path: str | Path, num_mesh_samples: int = 8192, seed: int = 0) -> PointCloud:
    """Reads a point cloud or a mesh file; meshes are sampled uniformly over their surface.

    Formats: point clouds .ply/.pcd/.xyz/.xyzn/.xyzrgb/.pts (open3d; a .pts without its leading count line is
    read as plain "x y z ..." columns), meshes .obj/.off/.stl and .ply files with faces (`num_mesh_samples`
    points, seeded), arrays .npy ((N, 3+), xyz first) and .npz (`points` or `xyz`, optional `colors`,
    `normals`). Points with a NaN or infinite coordinate (e.g. the holes of organized Kinect scans) are dropped
    along with their colours and normals, and the count is logged.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file: empty file, unknown extension (supported ones listed), a PLY / PCD / OFF file
            whose header is malformed or whose body is shorter than its header declares (truncated; open3d would
            pad it with zeros or garbage), a file open3d reads no points from, 2-D points, or no finite point at all.
    """
    path = Path(path)
    require(num_mesh_samples >= 1, "read_points", "num_mesh_samples", f"must be >= 1, got {num_mesh_samples}")
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"{path}: unsupported extension {suffix!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    if suffix in ARRAY_EXTENSIONS:
        cloud = _read_array(path)
    else:
        header = check_body(path)  # PLY / PCD / OFF: a short body would be padded by open3d, not reported
        o3d = _import_open3d()
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):  # we raise our own errors
            if suffix in (".obj", ".off", ".stl") or (suffix == ".ply" and (_declared(header, "face") or 0) > 0):
                cloud = _read_mesh(o3d, path, num_mesh_samples, seed, header)
            else:
                headerless_pts = suffix == ".pts" and not _pts_has_count_line(path)
                raw = o3d.io.read_point_cloud(str(path), format="xyz" if headerless_pts else "auto")
                cloud = _from_open3d(raw)
                _check_read(path, header, "vertex" if suffix == ".ply" else "points", len(cloud))
        if len(cloud) == 0:
            if suffix in (".xyz", ".xyzn", ".xyzrgb", ".pts") and _text_columns(path) == 2:
                raise ValueError(f"{path}: the file has 2-D points (x y); 3-D coordinates (x y z) are needed")
            raise _unusable(path)
    if len(cloud) == 0:
        raise ValueError(f"{path}: the file holds no points")
    finite = np.isfinite(cloud.points).all(axis=1)  # (N,)
    dropped = int((~finite).sum())
    if dropped == len(cloud):
        raise ValueError(f"{path}: all {dropped} points have NaN or infinite coordinates")
    if dropped:
        logger.info("%s: dropped %d of %d points with NaN/infinite coordinates", path, dropped, len(cloud))
        cloud = PointCloud(
            cloud.points[finite],
            None if cloud.colors is None else cloud.colors[finite],
            None if cloud.normals is None else cloud.normals[finite],
        )
    return cloud
