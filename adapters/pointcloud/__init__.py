"""Point-cloud adapters (installed as `mmsdk.adapters.pointcloud`): Point-MAE on the shared core, no CUDA extensions.

open3d is imported only when files are read or demo shapes are made, and matplotlib only when a picture is drawn,
so the ops and the adapter work without them.
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
from mmsdk.adapters.pointcloud.plots import plot_point_reconstruction
from mmsdk.adapters.pointcloud.pointmae import PointCloudDataConfig, PointMAEAdapter, PointMAEConfig

__all__ = [
    "Augment",
    "AugmentConfig",
    "PointCloud",
    "PointCloudDataConfig",
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
    "plot_point_reconstruction",
    "read_points",
    "subsample",
    "vote_predict",
]
