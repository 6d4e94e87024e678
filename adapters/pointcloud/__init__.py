"""Point-cloud adapters (installed as `mmsdk.adapters.pointcloud`): Point-MAE on the shared core, no CUDA extensions."""
