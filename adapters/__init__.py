"""Per-modality adapters (installed as `mmsdk.adapters`). Each sub-package registers its adapters on import."""
