"""Export of mmsdk models to ONNX, and a torch-free runtime for the exported files.

- :func:`to_onnx` (torch): traces a model with the dynamo exporter, stores its config in the file's metadata and
  checks ONNX Runtime against eager PyTorch for several batch sizes.
- :class:`OnnxModel` (numpy + onnxruntime only): loads an exported file, validates inputs and benchmarks it.
- :func:`quantize`, :func:`to_fp16`, :func:`precision_report` (onnx + onnxruntime only): int8 and float16 copies of an
  exported file and what the conversion cost in size, latency and accuracy.
- :func:`calibration_batches`, :func:`heldout_arrays` (torch): calibration batches and held-out arrays for those,
  drawn from mmsdk datasets with the training loaders' collate function.

Every name is imported lazily, on first attribute access, so `import mmsdk.export` and
`import mmsdk.export.runtime` never pull in torch.
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "to_onnx": "mmsdk.export.onnx",
    "verify_onnx": "mmsdk.export.onnx",
    "ExportResult": "mmsdk.export.onnx",
    "ExportVerificationError": "mmsdk.export.onnx",
    "OnnxModel": "mmsdk.export.runtime",
    "quantize": "mmsdk.export.quantization",
    "to_fp16": "mmsdk.export.quantization",
    "precision_report": "mmsdk.export.precision",
    "PrecisionReport": "mmsdk.export.precision",
    "PrecisionLossError": "mmsdk.export.precision",
    "calibration_batches": "mmsdk.export.calibration",
    "heldout_arrays": "mmsdk.export.calibration",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
