"""Point-cloud adapters (installed as `mmsdk.adapters.pointcloud`): Point-MAE on the shared core, no CUDA extensions.

open3d is imported only when files are read or demo shapes are made, and matplotlib only when a picture is drawn,
so the ops and the adapter work without them.

Names are imported on first use (this package's modules import only what they need).
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Augment": "mmsdk.adapters.pointcloud.data",
    "AugmentConfig": "mmsdk.adapters.pointcloud.data",
    "PointCloud": "mmsdk.adapters.pointcloud.data",
    "PointCloudDataConfig": "mmsdk.adapters.pointcloud.recipe_data",
    "PointCloudFolder": "mmsdk.adapters.pointcloud.data",
    "PointMAEAdapter": "mmsdk.adapters.pointcloud.pointmae",
    "PointMAEConfig": "mmsdk.adapters.pointcloud.pointmae",
    "ResampledClouds": "mmsdk.adapters.pointcloud.resampled",
    "ShapesDataset": "mmsdk.adapters.pointcloud.data",
    "chamfer_distance": "mmsdk.adapters.pointcloud.ops",
    "embed": "mmsdk.adapters.pointcloud.evaluation",
    "farthest_point_sample": "mmsdk.adapters.pointcloud.ops",
    "few_shot": "mmsdk.adapters.pointcloud.evaluation",
    "group_points": "mmsdk.adapters.pointcloud.ops",
    "knn": "mmsdk.adapters.pointcloud.ops",
    "linear_probe": "mmsdk.adapters.pointcloud.evaluation",
    "make_shapes": "mmsdk.adapters.pointcloud.data",
    "normalize_unit_sphere": "mmsdk.adapters.pointcloud.data",
    "plot_point_reconstruction": "mmsdk.adapters.pointcloud.plots",
    "point_block_strategy": "mmsdk.adapters.pointcloud.masking",
    "read_points": "mmsdk.adapters.pointcloud.data",
    "subsample": "mmsdk.adapters.pointcloud.data",
    "vote_predict": "mmsdk.adapters.pointcloud.evaluation",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
