"""Audio adapters (installed as `mmsdk.adapters.audio`): SSAST and AudioMAE spectrogram pretraining on the shared
core, with an exportable Kaldi-compatible filterbank front end so one ONNX graph runs from raw waveform.

torchaudio is imported only for resampling files and soundfile only when files are read, so the front end and the
adapters need neither.

Names are imported on first use (this package's modules import only what they need).
"""

from __future__ import annotations

from mmsdk.lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "AUDIOSET_MEAN": "mmsdk.adapters.audio.spectrogram",
    "AUDIOSET_STD": "mmsdk.adapters.audio.spectrogram",
    "AUDIO_EXTENSIONS": "mmsdk.adapters.audio.io",
    "AudioDataConfig": "mmsdk.adapters.audio.recipe_data",
    "AudioFileError": "mmsdk.adapters.audio.io",
    "AudioFiles": "mmsdk.adapters.audio.datasets",
    "AudioFolder": "mmsdk.adapters.audio.datasets",
    "AudioInfo": "mmsdk.adapters.audio.io",
    "AudioMAEAdapter": "mmsdk.adapters.audio.audiomae",
    "AudioMAEConfig": "mmsdk.adapters.audio.audiomae",
    "AudioManifest": "mmsdk.adapters.audio.datasets",
    "ClipHead": "mmsdk.adapters.audio.spectrogram",
    "Fbank": "mmsdk.adapters.audio.frontend",
    "FbankConfig": "mmsdk.adapters.audio.frontend",
    "Mixup": "mmsdk.adapters.audio.mixup",
    "SSASTAdapter": "mmsdk.adapters.audio.ssast",
    "SSASTConfig": "mmsdk.adapters.audio.ssast",
    "SpectrogramAdapter": "mmsdk.adapters.audio.spectrogram",
    "SpectrogramConfig": "mmsdk.adapters.audio.spectrogram",
    "WaveAugment": "mmsdk.adapters.audio.augment",
    "build_audio_data": "mmsdk.adapters.audio.recipe_data",
    "change_speed": "mmsdk.adapters.audio.augment",
    "cluster_strategy": "mmsdk.adapters.audio.masking",
    "fbank_statistics": "mmsdk.adapters.audio.stats",
    "fit_length": "mmsdk.adapters.audio.io",
    "fold_patches": "mmsdk.adapters.audio.spectrogram",
    "group_split": "mmsdk.adapters.audio.splits",
    "info_nce": "mmsdk.adapters.audio.ssast",
    "load_audio": "mmsdk.adapters.audio.io",
    "mel_filterbank": "mmsdk.adapters.audio.frontend",
    "plot_spectrogram_reconstruction": "mmsdk.adapters.audio.plots",
    "spec_augment": "mmsdk.adapters.audio.spectrogram",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
