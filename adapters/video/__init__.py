"""Video adapters (installed as `mmsdk.adapters.video`): VideoMAE tube pretraining on the shared core for any
number of channels, PyAV decoding, synthetic moving shapes, and Hugging Face VideoMAE checkpoints.

PyAV is imported only when files are read or written, so the adapter itself needs only torch.

Names are imported on first use (this package's modules import only what they need).
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "CHANNELS": "mmsdk.adapters.video.synthetic",
    "IMAGENET_MEAN": "mmsdk.adapters.video.videomae",
    "IMAGENET_STD": "mmsdk.adapters.video.videomae",
    "MOTIONS": "mmsdk.adapters.video.synthetic",
    "MovingShapes": "mmsdk.adapters.video.synthetic",
    "MovingShapesConfig": "mmsdk.adapters.video.synthetic",
    "SHAPES": "mmsdk.adapters.video.synthetic",
    "SYNTHETIC_CHANNELS": "mmsdk.adapters.video.recipe_data",
    "VIDEO_EXTENSIONS": "mmsdk.adapters.video.io",
    "VideoDataConfig": "mmsdk.adapters.video.recipe_data",
    "VideoFileError": "mmsdk.adapters.video.io",
    "VideoFiles": "mmsdk.adapters.video.datasets",
    "VideoFolder": "mmsdk.adapters.video.datasets",
    "VideoHead": "mmsdk.adapters.video.videomae",
    "VideoInfo": "mmsdk.adapters.video.io",
    "VideoMAEAdapter": "mmsdk.adapters.video.videomae",
    "VideoMAEConfig": "mmsdk.adapters.video.videomae",
    "VideoManifest": "mmsdk.adapters.video.datasets",
    "average_clip_scores": "mmsdk.adapters.video.evaluation",
    "build_video_data": "mmsdk.adapters.video.recipe_data",
    "center_crop": "mmsdk.adapters.video.transforms",
    "check_frames": "mmsdk.adapters.video.videomae",
    "collate_clips": "mmsdk.adapters.video.datasets",
    "convert_videomae_state_dict": "mmsdk.adapters.video.hf_videomae",
    "evaluate_videos": "mmsdk.adapters.video.evaluation",
    "example_clips": "mmsdk.adapters.video.videomae",
    "find_video_files": "mmsdk.adapters.video.io",
    "fold_tubes": "mmsdk.adapters.video.videomae",
    "load_hf_videomae": "mmsdk.adapters.video.hf_videomae",
    "moving_shapes_arrays": "mmsdk.adapters.video.synthetic",
    "plot_video_reconstruction": "mmsdk.adapters.video.plots",
    "predict_video": "mmsdk.adapters.video.evaluation",
    "probe_video": "mmsdk.adapters.video.io",
    "random_crop": "mmsdk.adapters.video.transforms",
    "read_clips": "mmsdk.adapters.video.io",
    "read_video": "mmsdk.adapters.video.io",
    "render_clip": "mmsdk.adapters.video.synthetic",
    "resize": "mmsdk.adapters.video.transforms",
    "resize_crop": "mmsdk.adapters.video.transforms",
    "short_side_resize": "mmsdk.adapters.video.transforms",
    "to_clips": "mmsdk.adapters.video.io",
    "to_tubes": "mmsdk.adapters.video.videomae",
    "tube_grid_positions": "mmsdk.adapters.video.videomae",
    "tube_strategy": "mmsdk.adapters.video.masking",
    "videomae_config_from_hf": "mmsdk.adapters.video.hf_videomae",
    "write_video": "mmsdk.adapters.video.writer",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
