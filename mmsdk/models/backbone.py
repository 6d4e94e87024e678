"""The backbone: each modality's adapter and absolute positions, a modality embedding, the shared encoder.

Raw inputs (one tensor for a one-modality model, a mapping modality → raw input otherwise) are tokenized by each
modality's adapter; the token batches are concatenated into one sequence (`TokenBatch.concat`, which adds
`modality_ids`); each modality's positions are embedded by its own position module; a learned modality embedding
marks the tokens when there is more than one modality; the encoder sees the whole sequence, and
:meth:`Backbone.split` hands each modality its slice of the features back for heads and losses. Nothing here knows
what a modality is.

State-dict keys under `backbone.` are what a pretrained checkpoint hands to a fine-tuning model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter, build_adapter
from mmsdk.contracts.registry import OBJECTIVES
from mmsdk.contracts.tokens import TokenBatch, gather_tokens
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.transformer import Transformer
from mmsdk.models.config import ModelConfig


def attention_mask(batch: TokenBatch, causal: bool = False) -> AttentionMask:
    """The attention mask a token batch implies: its padding, packed samples and (when causal) time ids."""
    padding = batch.padding_mask
    if padding is not None and not torch.compiler.is_compiling() and bool(padding.all()):
        padding = None  # nothing padded: keep the mask-free fused kernel
    return AttentionMask(
        causal=causal,
        padding_mask=padding,
        sample_ids=batch.sample_ids,
        time_ids=batch.time_ids if causal else None,
    )


class Backbone(nn.Module):
    """Adapters + absolute positions + encoder: raw inputs in, contextual features out.

    Attributes:
        adapters: modality name → adapter, in sequence order.
        positions: modality name → absolute position module (modalities without positions are absent).
        modality_embedding: (M, D) learned embeddings of the modalities; None for a one-modality model.
        encoder: the shared transformer.
        causal: whether the encoder runs causally (the objective's choice, kept by task models built from it).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.encoder.dim
        self.adapters = nn.ModuleDict(
            {name: build_adapter(m.adapter, m.adapter_config, dim) for name, m in config.modalities.items()}
        )
        self.positions = self.build_positions(dim)
        self.embed_dropout = nn.ModuleDict({n: nn.Dropout(a.embedding_dropout()) for n, a in self.adapters.items()})
        self.modality_embedding = None
        if len(self.adapters) > 1:
            if config.encoder.rope == "axial":
                raise ValueError(
                    "ModelConfig.encoder.rope='axial' needs one position layout; a model of several modalities "
                    "uses rope 'none' or '1d' (each modality embeds its own positions)"
                )
            self.modality_embedding = nn.Embedding(len(self.adapters), dim)
            nn.init.normal_(self.modality_embedding.weight, std=0.02)
        self.encoder = Transformer(config.encoder)
        self.causal = bool(OBJECTIVES.get(config.objective).causal)

    @property
    def names(self) -> list[str]:
        """Modality names in sequence order."""
        return list(self.adapters)

    @property
    def adapter(self) -> Adapter:
        """The adapter of a one-modality model.

        Raises:
            ValueError: for a model of several modalities (use `adapters[name]`).
        """
        if len(self.adapters) != 1:
            raise ValueError(f"this model has modalities {self.names}; use `.adapters[name]` to pick one")
        return next(iter(self.adapters.values()))  # type: ignore[return-value]

    def build_positions(self, dim: int) -> nn.ModuleDict:
        """Every modality's absolute position module at width `dim` (MAE decoders build a second set)."""
        built = {name: adapter.build_positions(dim) for name, adapter in self.adapters.items()}
        return nn.ModuleDict({name: module for name, module in built.items() if module is not None})

    def tokenize(self, inputs: Any) -> TokenBatch:
        """Validated tokens of raw inputs: one modality's input, or a mapping modality name → raw input.

        Raises:
            ValueError: for a mapping that misses a modality or names an unknown one.
        """
        if len(self.adapters) == 1 and not (isinstance(inputs, Mapping) and set(inputs) == set(self.adapters)):
            return self.adapter.tokenize(inputs).validate()
        if not isinstance(inputs, Mapping):
            raise ValueError(
                f"this model has modalities {self.names}; pass a mapping of modality name to raw input, got "
                f"{type(inputs).__name__}"
            )
        missing, unknown = sorted(set(self.adapters) - set(inputs)), sorted(set(inputs) - set(self.adapters))
        if missing or unknown:
            raise ValueError(f"inputs must name the modalities {self.names}; missing {missing}, unknown {unknown}")
        parts = {name: adapter.tokenize(inputs[name]).validate() for name, adapter in self.adapters.items()}
        return TokenBatch.concat(parts) if len(parts) > 1 else parts[self.names[0]]

    def parts(self, batch: TokenBatch) -> dict[str, TokenBatch]:
        """Modality name → that modality's token batch (the batch itself for a one-modality model)."""
        return dict(batch.parts) if batch.parts else {self.names[0]: batch}

    def slices(self, batch: TokenBatch) -> dict[str, slice]:
        """Modality name → where its tokens lie along N (the whole sequence for a one-modality model)."""
        return batch.slices() if batch.parts else {self.names[0]: slice(None)}

    def split(self, features: Tensor, batch: TokenBatch) -> dict[str, Tensor]:
        """Per-token features (B, N, ...) of a whole sequence → modality name → (B, N_m, ...)."""
        if not batch.parts:
            return {self.names[0]: features}
        return {name: features[:, where] for name, where in batch.slices().items()}

    def position_embedding(self, batch: TokenBatch, modules: nn.ModuleDict, dim: int) -> Tensor | None:
        """(B, N, dim) absolute position embeddings of every token, each modality by its own module in `modules`
        (zeros for a modality without positions); None when no modality has any."""
        parts = self.parts(batch)
        if not any(name in modules and part.positions is not None for name, part in parts.items()):
            return None
        pieces = []
        for name, part in parts.items():
            if name in modules and part.positions is not None:
                pieces.append(modules[name](part.positions))  # (B, N_m, dim)
            else:
                pieces.append(part.tokens.new_zeros(part.batch_size, part.num_tokens, dim))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def modality_offsets(self, batch: TokenBatch, embedding: nn.Embedding | None) -> Tensor | None:
        """(B, N, D) modality embeddings of every token, or None for a one-modality model."""
        if embedding is None or batch.modality_ids is None:
            return None
        return embedding(batch.modality_ids)

    def embed(self, batch: TokenBatch) -> Tensor:
        """Content embeddings plus absolute positions, each modality's embedding dropout, plus the modality
        embedding: (B, N, D)."""
        x = batch.tokens
        positions = self.position_embedding(batch, self.positions, x.shape[-1])
        if positions is not None:
            x = x + positions
        parts = self.parts(batch)
        if len(parts) == 1:
            x = self.embed_dropout[self.names[0]](x)
        else:
            slices = batch.slices()
            x = torch.cat([self.embed_dropout[name](x[:, slices[name]]) for name in parts], dim=1)
        modality = self.modality_offsets(batch, self.modality_embedding)
        return x if modality is None else x + modality

    def rope_coordinates(self, batch: TokenBatch, rope: str) -> Tensor | None:
        """Rotary coordinates of every token: "1d" uses time ids, else the first position axis, else the token's
        index in its modality; "axial" uses the positions. None when rope is "none" (or no coordinate exists)."""
        if rope == "none":
            return None
        pieces = []
        for part in self.parts(batch).values():
            if rope == "axial":
                pieces.append(part.positions)
            elif part.time_ids is not None:
                pieces.append(part.time_ids)
            elif part.positions is not None:
                pieces.append(part.positions[..., 0])
            else:
                index = torch.arange(part.num_tokens, device=part.tokens.device)
                pieces.append(index.expand(part.batch_size, -1))
        if any(p is None for p in pieces):
            return None
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def encode(self, x: Tensor, batch: TokenBatch, keep: Tensor | None = None, causal: bool | None = None) -> Tensor:
        """Runs the encoder over embedded tokens x (B, K, D) with the masks and ids of `batch`.

        Args:
            x: embedded tokens: all N of `batch`, or the K selected by `keep`.
            batch: the whole token batch (ids, padding, positions for rotary embeddings).
            keep: (B, K) long indices of the tokens x holds (MAE's visible tokens); None = all.
            causal: override the backbone's causal setting.
        """
        rope = self.rope_coordinates(batch, self.config.encoder.rope)
        if keep is not None:  # ids and rotary coordinates of the kept tokens: their original places
            batch = batch.select(keep)
            rope = None if rope is None else gather_tokens(rope, keep)
        causal = self.causal if causal is None else causal
        return self.encoder(x, attention_mask(batch, causal), positions=rope, variate_ids=batch.variate_ids)

    def forward(self, batch: TokenBatch, causal: bool | None = None) -> Tensor:
        """(B, N, D) features of every token of `batch`."""
        return self.encode(self.embed(batch), batch, causal=causal)
