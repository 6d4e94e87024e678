"""BERT-style masked-token modeling (PatchTST, SSAST, Moirai): hidden tokens become a mask embedding inside the
encoder, which sees the whole sequence."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import register_objective
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import Objective, Prediction


@register_objective
class MaskedTokenModel(Objective):
    """Hidden tokens (`mask.hidden`) are replaced by a mask embedding (plus their position) inside the encoder.

    A modality's mask embedding is its adapter's :meth:`~mmsdk.contracts.adapter.Adapter.mask_embedding` when it
    defines one, else a learned token in `mask_tokens[modality]`.
    """

    name = "bert"
    default_term = "reconstruction"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        dim = config.encoder.dim
        learned = [name for name, a in self.backbone.adapters.items() if a.mask_embedding() is None]
        self.mask_tokens = nn.ParameterDict({name: nn.Parameter(torch.zeros(dim)) for name in learned})
        for token in self.mask_tokens.values():
            nn.init.normal_(token, std=0.02)
        self.heads = self.build_heads(dim)

    def fill(self, batch: TokenBatch) -> Tensor:
        """The embedding placed at hidden tokens: (D,) for one modality, (N, D) for several."""
        pieces = []
        for name, part in self.backbone.parts(batch).items():
            token = (
                self.mask_tokens[name] if name in self.mask_tokens else self.backbone.adapters[name].mask_embedding()
            )
            assert token is not None  # the adapter defined one when the model was built
            pieces.append(token if not batch.parts else token.expand(part.num_tokens, -1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def forward(self, batch: TokenBatch, mask: Mask | None) -> Prediction:
        if mask is None:
            raise ValueError("the bert objective needs a mask (which tokens become mask tokens)")
        fill = self.fill(batch).to(batch.tokens.dtype)  # (D,) or (N, D)
        tokens = torch.where(mask.hidden.unsqueeze(-1), fill, batch.tokens)  # (B, N, D)
        h = self.backbone(batch.replace(tokens=tokens))  # (B, N, D)
        return self.apply_heads(self.heads, h, batch)

    def modality_loss(
        self, adapter: Adapter, pred: Tensor, part: TokenBatch, target: Tensor | None
    ) -> Tensor | Mapping[str, Tensor]:
        assert target is not None
        return adapter.reconstruction_loss(pred, part, target)
