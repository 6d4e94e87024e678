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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter, build_adapter
from mmsdk.contracts.registry import OBJECTIVES
from mmsdk.contracts.tokens import PRESENT_KEY, TokenBatch, gather_tokens
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.dropout import Dropout
from mmsdk.layers.positions import sincos_1d
from mmsdk.layers.tracing import is_tracing
from mmsdk.layers.transformer import Transformer
from mmsdk.models.config import ModelConfig

TIME_SCALE = 100.0
"""`clip_time` (a fraction of the span) is embedded at this scale, so that sin-cos periods resolve 1 % of a clip."""


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
        self.embed_dropout = nn.ModuleDict({n: Dropout(a.embedding_dropout()) for n, a in self.adapters.items()})
        self.modality_embedding = None
        if len(self.adapters) > 1:
            if config.encoder.rope == "axial":
                raise ValueError(
                    "ModelConfig.encoder.rope='axial' needs one position layout; a model of several modalities "
                    "uses rope 'none' or '1d' (each modality embeds its own positions)"
                )
            self.modality_embedding = nn.Embedding(len(self.adapters), dim)
            nn.init.normal_(self.modality_embedding.weight, std=0.02)
        self.variate_embedding = self.build_variate_embedding(dim)
        self.blank_shapes = {}  # modality → shape of one raw sample, for stand-ins of absent modalities
        if len(self.adapters) > 1:
            self.blank_shapes = {n: a.input_shape() for n, a in self.adapters.items()}
        self.encoder = Transformer(config.encoder)
        self.causal = bool(OBJECTIVES.get(config.objective).causal)
        self.cls_token = None  # (1, P, D) learned class tokens, prepended to every sequence the encoder sees
        if config.class_tokens > 0:
            self.cls_token = nn.Parameter(torch.zeros(1, config.class_tokens, dim))
            nn.init.normal_(self.cls_token, std=0.02)

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

    def build_variate_embedding(self, dim: int) -> nn.Embedding | None:
        """(M · max_variates, dim) learned embeddings of (modality, variate) pairs; None when `max_variates` is 0."""
        if self.config.max_variates == 0:
            return None
        embedding = nn.Embedding(len(self.adapters) * self.config.max_variates, dim)
        nn.init.normal_(embedding.weight, std=0.02)
        return embedding

    def variate_offsets(self, batch: TokenBatch, embedding: nn.Embedding | None) -> Tensor | None:
        """(B, N, dim) embeddings of each token's variate inside its modality; None without a table.

        Raises:
            ValueError: for a variate id of `max_variates` or more.
        """
        if embedding is None:
            return None
        pieces = []
        for index, part in enumerate(self.parts(batch).values()):
            ids = part.variate_ids
            if ids is None:
                ids = torch.zeros(part.batch_size, part.num_tokens, dtype=torch.long, device=part.tokens.device)
            elif not is_tracing() and int(ids.max()) >= self.config.max_variates:
                raise ValueError(
                    f"a token has variate id {int(ids.max())}; ModelConfig.max_variates={self.config.max_variates} "
                    "must be larger than every variate id"
                )
            pieces.append(ids + index * self.config.max_variates)
        return embedding(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1))

    def tokenize(self, inputs: Any) -> TokenBatch:
        """Validated tokens of raw inputs: one modality's input, or a mapping modality name → raw input.

        A mapping may carry a `"present"` entry (modality → (B,) bool) for samples that lack some modalities: their
        tokens become padding, which no encoder attends to and no loss scores. A modality the mapping leaves out is
        absent from every sample (:meth:`complete`).

        Raises:
            ValueError: for a mapping that names an unknown modality or none, a malformed `"present"` entry, or a
                sample with no modality present.
        """
        named = isinstance(inputs, Mapping) and bool(set(inputs) & {PRESENT_KEY, *self.adapters})
        if len(self.adapters) == 1 and not named:
            return self.adapter.tokenize(inputs).validate()
        if not isinstance(inputs, Mapping):
            raise ValueError(
                f"this model has modalities {self.names}; pass a mapping of modality name to raw input, got "
                f"{type(inputs).__name__}"
            )
        if not is_tracing():
            sizes = {name: int(x.shape[0]) for name, x in inputs.items() if isinstance(x, Tensor) and x.dim() > 0}
            if len(set(sizes.values())) > 1:
                raise ValueError(f"every modality of a batch must hold the same samples; batch sizes {sizes}")
        inputs = self.complete(inputs)
        parts = {name: adapter.tokenize(inputs[name]).validate() for name, adapter in self.adapters.items()}
        present = self.presence(inputs, next(iter(parts.values())).batch_size)
        parts = {name: part.with_presence(present[name]) if name in present else part for name, part in parts.items()}
        return TokenBatch.concat(parts) if len(parts) > 1 else parts[self.names[0]]

    def complete(self, inputs: Mapping[str, Any], shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
        """The inputs mapping with every modality: a modality it does not name is absent from every sample (zeros of
        one sample's shape stand in for it, marked absent in `"present"`).

        Args:
            inputs: modality name → raw input (B, ...), optionally with a `"present"` entry.
            shapes: modality name → the shape of one stand-in sample; default the adapter's `input_shape()`.

        Raises:
            ValueError: for unknown modality names, or a mapping that names no modality.
        """
        given = [name for name in inputs if name != PRESENT_KEY]
        unknown = sorted(set(given) - set(self.adapters))
        if unknown:
            raise ValueError(f"inputs name unknown modalities {unknown}; this model has {self.names}")
        if not given:
            raise ValueError(f"inputs name no modality; give at least one of {self.names}")
        missing = [name for name in self.names if name not in inputs]
        if not missing:
            return dict(inputs)
        first = inputs[given[0]]
        size = first.shape[0] if isinstance(first, Tensor) else len(first)  # symbolic while exporting
        device = first.device if isinstance(first, Tensor) else None
        completed = dict(inputs)
        present = dict(inputs.get(PRESENT_KEY) or {})
        for name in missing:
            shape = tuple((shapes or {}).get(name, self.blank_shapes[name]))
            completed[name] = torch.zeros(size, *shape, device=device)
            present[name] = torch.zeros(size, dtype=torch.bool, device=device)
        completed[PRESENT_KEY] = present
        return completed

    def presence(self, inputs: Mapping[str, Any], batch_size: int) -> dict[str, Tensor]:
        """The `"present"` entry of an inputs mapping, checked: modality → (B,) bool (empty when absent).

        Raises:
            ValueError: for unknown modality names, tensors that are not (B,) bool, or a sample with no modality.
        """
        present = inputs.get(PRESENT_KEY)
        if present is None:
            return {}
        if not isinstance(present, Mapping):
            raise ValueError(f"inputs[{PRESENT_KEY!r}] must map modality names to (B,) bool tensors")
        unknown = sorted(set(present) - set(self.adapters))
        if unknown:
            raise ValueError(f"inputs[{PRESENT_KEY!r}] names unknown modalities {unknown}; this model has {self.names}")
        out = {}
        for name, value in present.items():
            value = torch.as_tensor(value)
            if value.shape != (batch_size,) or value.dtype != torch.bool:
                raise ValueError(
                    f"inputs[{PRESENT_KEY!r}][{name!r}] must be a ({batch_size},) bool tensor, got "
                    f"{tuple(value.shape)} {value.dtype}"
                )
            out[name] = value
        if len(out) == len(self.adapters) and not is_tracing():
            none = ~torch.stack(list(out.values())).any(dim=0)  # (B,)
            if bool(none.any()):
                rows = none.nonzero().flatten().tolist()
                raise ValueError(f"inputs[{PRESENT_KEY!r}]: sample(s) {rows} have no modality present")
        return out

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

    def time_embedding(self, batch: TokenBatch, dim: int) -> Tensor | None:
        """(B, N, dim) sin-cos embedding of every token's `clip_time` (zeros for tokens without one) when the model
        has `shared_time`; else None."""
        if not self.config.shared_time or batch.clip_time is None:
            return None
        time = batch.clip_time
        known = ~torch.isnan(time)
        table = sincos_1d(torch.where(known, time, torch.zeros_like(time)) * TIME_SCALE, dim)  # (B, N, dim)
        return table * known.unsqueeze(-1).to(table.dtype)

    def modality_offsets(self, batch: TokenBatch, embedding: nn.Embedding | None) -> Tensor | None:
        """(B, N, D) modality embeddings of every token, or None for a one-modality model."""
        if embedding is None or batch.modality_ids is None:
            return None
        return embedding(batch.modality_ids)

    def embed(self, batch: TokenBatch) -> Tensor:
        """Content embeddings plus absolute positions, each modality's embedding dropout, plus the modality and
        variate embeddings: (B, N, D)."""
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
        if modality is not None:
            x = x + modality
        variate = self.variate_offsets(batch, self.variate_embedding)
        if variate is not None:
            x = x + variate
        time = self.time_embedding(batch, x.shape[-1])
        return x if time is None else x + time

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
        """Runs the encoder over embedded tokens x (B, K, D) with the masks and ids of `batch`; returns the features
        of those tokens (B, K, D) (the class tokens' features, if any, are dropped: see :meth:`encode_all`).

        Args:
            x: embedded tokens: all N of `batch`, or the K selected by `keep`.
            batch: the whole token batch (ids, padding, positions for rotary embeddings).
            keep: (B, K) long indices of the tokens x holds (MAE's visible tokens); None = all.
            causal: override the backbone's causal setting.
        """
        return self.encode_all(x, batch, keep, causal)[1]

    def encode_all(
        self, x: Tensor, batch: TokenBatch, keep: Tensor | None = None, causal: bool | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """As :meth:`encode`, returning (class-token features (B, P, D) or None without class tokens, token features
        (B, K, D)).

        The model's class tokens (`ModelConfig.class_tokens`) are prepended to the sequence: they attend to every
        real token and every token attends to them; they have no position (rotary coordinate 0, no rotation) and
        belong to no variate (id -1, so a same-variate bias treats them as another variate).
        """
        rope = self.rope_coordinates(batch, self.config.encoder.rope)
        if keep is not None:  # ids and rotary coordinates of the kept tokens: their original places
            batch = batch.select(keep)
            rope = None if rope is None else gather_tokens(rope, keep)
        causal = self.causal if causal is None else causal
        mask, variate_ids = attention_mask(batch, causal), batch.variate_ids
        if self.cls_token is None:
            return None, self.encoder(x, mask, positions=rope, variate_ids=variate_ids)
        count = self.cls_token.shape[1]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)  # (B, P + K, D)
        mask, rope, variate_ids = with_class_tokens(count, mask, rope, variate_ids)
        out = self.encoder(x, mask, positions=rope, variate_ids=variate_ids)  # (B, P + K, D)
        return out[:, :count], out[:, count:]

    def forward(self, batch: TokenBatch, causal: bool | None = None) -> Tensor:
        """(B, N, D) features of every token of `batch`."""
        return self.encode(self.embed(batch), batch, causal=causal)


def with_class_tokens(
    count: int, mask: AttentionMask, rope: Tensor | None, variate_ids: Tensor | None
) -> tuple[AttentionMask, Tensor | None, Tensor | None]:
    """The attention mask, rotary coordinates and variate ids of a sequence with `count` class tokens prepended.

    Raises:
        ValueError: for packed sequences (`sample_ids`) or a causal mask, which a class token cannot join.
    """
    if mask.sample_ids is not None or mask.causal:
        raise ValueError(
            "ModelConfig.class_tokens: class tokens need one bidirectional sequence per sample; this batch is "
            f"{'packed (sample_ids)' if mask.sample_ids is not None else 'causal'}"
        )
    if mask.padding_mask is not None:
        real = torch.ones_like(mask.padding_mask[:, :1]).expand(-1, count)  # (B, P)
        mask = AttentionMask(padding_mask=torch.cat([real, mask.padding_mask], dim=1))
    if rope is not None:
        rope = torch.cat([torch.zeros_like(rope[:, :1]).expand(-1, count, *rope.shape[2:]), rope], dim=1)
    if variate_ids is not None:
        variate_ids = torch.cat([torch.full_like(variate_ids[:, :1], -1).expand(-1, count), variate_ids], dim=1)
    return mask, rope, variate_ids
