"""AudioMAE: masked autoencoding of spectrogram patches (Huang et al., 2022) on the shared core.

Pretrained with the `mae` objective: the encoder sees only the visible patches (AudioMAE masks 80 % at random), a
light decoder fills mask tokens in, and the loss is the MSE on the masked patches against per-patch normalized
targets (`model.norm_targets: true`). Positions are fixed 2-D sin-cos by default, as AudioMAE's.

The paper's local (windowed, shifted) decoder attention is not offered: the core's MAE decoder attends over the
whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mmsdk.adapters.audio.spectrogram import SpectrogramAdapter, SpectrogramConfig


@dataclass
class AudioMAEConfig(SpectrogramConfig):
    """AudioMAE's tokens: 16×16 patches without overlap and fixed sin-cos positions by default."""

    positions: Literal["learned", "sincos"] = "sincos"
    """sincos: fixed 2-D sin-cos of the (frequency, time) position (AudioMAE), for any clip length; learned: a
    table over the patch grid."""


class AudioMAEAdapter(SpectrogramAdapter):
    """AudioMAE patch tokens of raw waveforms (B, T); reconstruction MSE on masked real patches."""

    name = "audiomae"
    config_class = AudioMAEConfig
    config: AudioMAEConfig
