"""Audio adapters (installed as `mmsdk.adapters.audio`): SSAST and AudioMAE spectrogram pretraining on the shared
core, with an exportable Kaldi-compatible filterbank front end so one ONNX graph runs from raw waveform.

torchaudio is imported only for resampling files and soundfile only when files are read, so the front end and the
adapters need neither.

Names are imported on first use (this package's modules import only what they need).
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
