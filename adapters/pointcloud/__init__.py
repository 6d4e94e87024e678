"""Point-cloud adapters (installed as `mmsdk.adapters.pointcloud`): Point-MAE on the shared core, no CUDA extensions.

open3d is imported only when files are read or demo shapes are made, so the ops and the adapter work without it.
"""

from mmsdk.adapters.pointcloud.data import (
    Augment,
    AugmentConfig,
    PointCloud,
    PointCloudFolder,
    ShapesDataset,
    make_shapes,
    normalize_unit_sphere,
    read_points,
    subsample,
)
from mmsdk.adapters.pointcloud.evaluation import embed, few_shot, linear_probe, vote_predict
from mmsdk.adapters.pointcloud.ops import chamfer_distance, farthest_point_sample, group_points, knn
from mmsdk.adapters.pointcloud.pointmae import PointMAEAdapter, PointMAEConfig

__all__ = [
    "Augment",
    "AugmentConfig",
    "PointCloud",
    "PointCloudFolder",
    "PointMAEAdapter",
    "PointMAEConfig",
    "ShapesDataset",
    "chamfer_distance",
    "embed",
    "farthest_point_sample",
    "few_shot",
    "group_points",
    "knn",
    "linear_probe",
    "make_shapes",
    "normalize_unit_sphere",
    "read_points",
    "subsample",
    "vote_predict",
]
