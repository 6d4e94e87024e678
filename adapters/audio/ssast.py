"""SSAST: self-supervised audio spectrogram transformer (Gong et al., 2022) on the shared core.

Pretrained with the `bert` objective: hidden patches become a learned mask token inside the encoder, which sees the
whole clip. Two heads read each masked position: a discriminative one whose output must pick its own patch among
all masked patches of the clip (InfoNCE), and a generative one that regresses the patch (MSE). The loss is
`infonce + mse_weight · mse` (SSAST: weight 10), over masked real tokens only; both terms are logged.

Patch tokens are masked in clusters (`cluster` strategy, see `masking`) and frame tokens at random, as in SSAST.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.adapters.audio.spectrogram import SpectrogramAdapter, SpectrogramConfig
from mmsdk.config import require
from mmsdk.contracts.adapter import LossTerms
from mmsdk.contracts.losses import masked_mse
from mmsdk.contracts.tokens import TokenBatch


@dataclass
class SSASTConfig(SpectrogramConfig):
    """SSAST's tokens plus its joint discriminative/generative pretraining loss."""

    mse_weight: float = 10.0
    """Weight of the generative MSE term against InfoNCE (SSAST: 10); the logged `mse` term is weighted."""
    temperature: float = 1.0
    """InfoNCE temperature (SSAST uses plain dot products: 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.mse_weight >= 0, self, "mse_weight", f"must be >= 0, got {self.mse_weight}")
        require(self.temperature > 0, self, "temperature", f"must be > 0, got {self.temperature}")


class SSASTHeads(nn.Module):
    """SSAST's two prediction layers: features (B, N, D) → [discriminative (P), generative (P)] = (B, N, 2P)."""

    def __init__(self, dim: int, target_dim: int) -> None:
        super().__init__()
        self.discriminative = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, target_dim))
        self.generative = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, target_dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.discriminative(x), self.generative(x)], dim=-1)  # (B, N, 2P)


def info_nce(pred: Tensor, targets: Tensor, scored: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Each scored position must pick its own target among the clip's scored targets.

    Args:
        pred: (B, N, P) discriminative predictions.
        targets: (B, N, P) true patches.
        scored: (B, N) bool, the masked real tokens (queries and candidates).
        temperature: logits are dot products divided by it.

    Returns:
        The mean cross-entropy over scored positions and the share of positions that pick their own patch. All
        shapes are static (candidates outside `scored` get −inf), so the loss compiles with fullgraph.
    """
    logits = torch.einsum("bip,bjp->bij", pred, targets) / temperature  # (B, N, N)
    logits = logits.masked_fill(~scored[:, None, :], float("-inf"))
    n = logits.shape[-1]
    labels = torch.arange(n, device=pred.device).expand(pred.shape[0], n)  # (B, N) each position's own patch
    safe = torch.where(scored[..., None], logits, torch.zeros_like(logits))  # rows of unscored tokens: no −inf
    losses = F.cross_entropy(safe.reshape(-1, n), labels.reshape(-1), reduction="none").reshape(labels.shape)
    weight = scored.to(losses.dtype)
    count = weight.sum().clamp_min(1.0)
    correct = (safe.argmax(-1) == labels).to(losses.dtype) * weight
    return (losses * weight).sum() / count, correct.sum() / count


class SSASTAdapter(SpectrogramAdapter):
    """SSAST patch or frame tokens of raw waveforms (B, T) with the joint InfoNCE + MSE loss."""

    name = "ssast"
    config_class = SSASTConfig
    free_fields = (*SpectrogramAdapter.free_fields, "mse_weight", "temperature")
    config: SSASTConfig

    def build_pretrain_head(self, dim: int) -> nn.Module:
        return SSASTHeads(dim, self.target_dim)

    def reconstruction_loss(self, pred: Tensor, batch: TokenBatch, target: Tensor) -> LossTerms:
        if batch.targets is None:
            raise ValueError("SSASTAdapter.reconstruction_loss: the batch has no targets")
        if batch.padding_mask is not None:
            target = target & batch.padding_mask
        p = self.target_dim
        discriminative, generative = pred[..., :p], pred[..., p:]
        nce, _ = info_nce(discriminative, batch.targets, target, self.config.temperature)
        mse = masked_mse(generative, batch.targets, target, None)
        return {"infonce": nce, "mse": self.config.mse_weight * mse}

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> Tensor | LossTerms:
        """Causal pretraining scores the generative head (the default next-token MSE)."""
        return super().next_token_loss(pred[..., self.target_dim :], batch)

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        """The generative head's reconstruction (the second half of the predictions)."""
        p = self.target_dim
        return super().plot_reconstruction(batch, pred[..., p:] if pred.shape[-1] == 2 * p else pred, target, path)
