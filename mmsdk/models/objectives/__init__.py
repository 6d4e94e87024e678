"""Pretraining objectives, one per file, registered by name: mae, bert (masked tokens) and causal."""

from mmsdk.models.objectives.base import Objective, ObjectiveOutput, Prediction, build_pretrain_head
from mmsdk.models.objectives.causal import CausalModel
from mmsdk.models.objectives.mae import MaskedAutoencoder
from mmsdk.models.objectives.masked_token import MaskedTokenModel

__all__ = [
    "CausalModel",
    "MaskedAutoencoder",
    "MaskedTokenModel",
    "Objective",
    "ObjectiveOutput",
    "Prediction",
    "build_pretrain_head",
]
