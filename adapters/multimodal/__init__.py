"""Multimodal data and tools (installed as `mmsdk.adapters.multimodal`) for models of several adapters' tokens
(the 4m objective): the bouncing-ball scene seen as video, sound and sensor series, its recipe data builder,
cross-modal evaluation, the floor under it (an oracle of the scene's hidden state) and plots.

Names are imported on first use (this package's modules import only what they need).
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "MODALITIES": "mmsdk.adapters.multimodal.scene",
    "STATE_FIELDS": "mmsdk.adapters.multimodal.scene",
    "BouncingScene": "mmsdk.adapters.multimodal.scene",
    "SceneConfig": "mmsdk.adapters.multimodal.scene",
    "impacts": "mmsdk.adapters.multimodal.scene",
    "render": "mmsdk.adapters.multimodal.scene",
    "scene_arrays": "mmsdk.adapters.multimodal.scene",
    "SceneData": "mmsdk.adapters.multimodal.recipe_data",
    "SceneDataConfig": "mmsdk.adapters.multimodal.recipe_data",
    "build_scene_data": "mmsdk.adapters.multimodal.recipe_data",
    "check_scene_geometry": "mmsdk.adapters.multimodal.recipe_data",
    "Direction": "mmsdk.adapters.multimodal.evaluation",
    "DirectionError": "mmsdk.adapters.multimodal.evaluation",
    "cross_modal_errors": "mmsdk.adapters.multimodal.evaluation",
    "direction_name": "mmsdk.adapters.multimodal.evaluation",
    "mean_tokens": "mmsdk.adapters.multimodal.evaluation",
    "parse_direction": "mmsdk.adapters.multimodal.evaluation",
    "target_tokens": "mmsdk.adapters.multimodal.evaluation",
    "CARRIED": "mmsdk.adapters.multimodal.oracle",
    "carried_fields": "mmsdk.adapters.multimodal.oracle",
    "oracle_errors": "mmsdk.adapters.multimodal.oracle",
    "oracle_tokens": "mmsdk.adapters.multimodal.oracle",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
