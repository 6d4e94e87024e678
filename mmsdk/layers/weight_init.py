"""The ViT/MAE weight initialization shared by every stack and head the core builds."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit norms (apply with `model.apply(init_weights)`)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and module.weight is not None:
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
