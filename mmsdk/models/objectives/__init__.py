"""Pretraining objectives, one per file, registered by name: mae, bert (masked tokens), causal and 4m (multimodal
budgets with a cross-attention decoder)."""

from mmsdk.models.objectives.base import DefaultHead, Objective, ObjectiveOutput, Prediction
from mmsdk.models.objectives.causal import CausalModel
from mmsdk.models.objectives.fourm import FourM, FourMConfig, QuantizerConfig
from mmsdk.models.objectives.mae import MaskedAutoencoder
from mmsdk.models.objectives.masked_token import MaskedTokenModel

__all__ = [
    "CausalModel",
    "DefaultHead",
    "FourM",
    "FourMConfig",
    "MaskedAutoencoder",
    "MaskedTokenModel",
    "Objective",
    "ObjectiveOutput",
    "Prediction",
    "QuantizerConfig",
]
