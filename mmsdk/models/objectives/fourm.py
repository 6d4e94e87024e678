"""4M-style multimodal masked modeling: per-sample token budgets, an encoder over the inputs, a cross-attention
decoder that queries the targets, each modality scored by its own adapter (or by cross-entropy on FSQ token ids).

One training step, for a sequence of N tokens from M modalities:

    available (B, N)  = real tokens of the modalities each sample has
    mask              = draw_budget_mask(available, K_in inputs, K_t targets, Dirichlet(α) shares per modality)
    h      (B, K_in, D)  = encoder(embedded inputs)                       inputs only, padding for empty slots
    q      (B, K_t, Dd)  = query + decoder position + modality (+ variate) embedding of each target token
    d      (B, K_t, Dd)  = decoder(q, self-attention within a modality, cross-attention to h)
    preds  (B, N_m, P_m) = each modality's head on its targets (zeros elsewhere)
    loss               = Σ_m w_m · loss_m / Σ_m w_m, loss_m by the modality's adapter, or cross-entropy of ids

Any-to-any prediction (:meth:`FourM.predict`) uses the same forward with a fixed mask: every token of the given
modalities is an input and every token of the requested ones a target, so one pass predicts all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.config import Config, require
from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.budgets import BudgetMask, draw_budget_mask, restore_order
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import register_objective
from mmsdk.contracts.tokens import PRESENT_KEY, TokenBatch, gather_tokens
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.fsq import PatchTokenizer
from mmsdk.layers.transformer import Transformer
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.layers.weight_init import init_weights
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import DefaultHead, Objective, Prediction


@dataclass
class QuantizerConfig(Config):
    """A modality's discrete targets: an FSQ tokenizer of its target tokens, trained beside the model."""

    levels: tuple[int, ...] = (8, 5, 5, 5)
    """FSQ levels per code dimension; the vocabulary has prod(levels) ids (1000 by default)."""
    hidden: int = 128
    """Width of the tokenizer's encoder and decoder MLPs."""
    depth: int = 2
    """Linear layers of each MLP."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.levels) >= 1 and all(v >= 2 for v in self.levels), self, "levels", f"got {self.levels}")
        require(self.hidden >= 1, self, "hidden", f"must be >= 1, got {self.hidden}")
        require(self.depth >= 1, self, "depth", f"must be >= 1, got {self.depth}")


@dataclass
class FourMConfig(Config):
    """Options of the 4m objective (`ModelConfig.objective_config`)."""

    input_tokens: int = 64
    """K_in: input tokens per sample, shared among its modalities."""
    target_tokens: int = 64
    """K_t: target tokens per sample, disjoint from the inputs."""
    input_alpha: float | list[float] = 1.0
    """Symmetric Dirichlet concentration of the input shares: 1 = uniform over the simplex, large = equal shares,
    0 = every input from one modality ("one modality in, everything else out"); a list mixes them, each sample drawing
    its concentration from the list (e.g. [0, 1]: half the samples one modality in, half mixed)."""
    target_alpha: float | list[float] = 1.0
    """Dirichlet concentration of the target shares (0 = every target from one modality), or a list to mix."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """modality → weight of its loss in the average (modalities not named weigh 1)."""
    quantize: dict[str, QuantizerConfig] = field(default_factory=dict)
    """modality → FSQ tokenizer: its targets become token ids scored by cross-entropy; other modalities keep their
    adapter's continuous loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.input_tokens >= 1, self, "input_tokens", f"must be >= 1, got {self.input_tokens}")
        require(self.target_tokens >= 1, self, "target_tokens", f"must be >= 1, got {self.target_tokens}")
        for name in ("input_alpha", "target_alpha"):
            value = getattr(self, name)
            values = [value] if isinstance(value, (int, float)) else list(value)
            require(
                bool(values) and all(isinstance(v, (int, float)) and v >= 0 for v in values),
                self,
                name,
                f"must be a concentration >= 0 or a non-empty list of them, got {value!r}",
            )
            setattr(self, name, float(values[0]) if isinstance(value, (int, float)) else [float(v) for v in values])
        for name, weight in self.loss_weights.items():
            require(weight >= 0, self, "loss_weights", f"weights must be >= 0, got {name}: {weight}")
        self.quantize = {name: QuantizerConfig.from_dict(q) for name, q in self.quantize.items()}


@register_objective
class FourM(Objective):
    """The 4m objective (see the module doc). `ModelConfig.decoder` is the cross-attention decoder."""

    name = "4m"
    default_term = "reconstruction"
    config_class = FourMConfig

    @classmethod
    def default_decoder(cls, encoder: TransformerConfig) -> TransformerConfig:
        """2 cross-attention blocks at half the encoder width (rounded to a multiple of the heads)."""
        dim = max(encoder.heads, (encoder.dim // 2) // encoder.heads * encoder.heads)
        return TransformerConfig(dim=dim, depth=2, heads=encoder.heads, norm=encoder.norm, cross_attention=True)

    @classmethod
    def check_config(cls, options: Config, model: ModelConfig) -> None:
        assert isinstance(options, FourMConfig)
        for key in ("loss_weights", "quantize"):
            unknown = sorted(set(getattr(options, key)) - set(model.modalities))
            require(
                not unknown, "FourMConfig", key, f"unknown modalities {unknown}; the model has {model.modality_names}"
            )
        if model.decoder is not None:
            require(
                model.decoder.cross_attention,
                model,
                "decoder",
                "the 4m decoder attends to the encoder output: set decoder.cross_attention: true",
            )

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.options = FourMConfig.from_dict(config.objective_config)
        dec = config.decoder
        assert dec is not None  # filled in by ModelConfig
        m = len(self.backbone.adapters)
        self.decoder_embed = nn.Linear(config.encoder.dim, dec.dim)
        self.query_token = nn.Parameter(torch.zeros(dec.dim))
        self.decoder_positions = self.backbone.build_positions(dec.dim)
        self.decoder_modality_embedding = nn.Embedding(m, dec.dim) if m > 1 else None
        self.decoder_variate_embedding = self.backbone.build_variate_embedding(dec.dim)
        self.decoder = Transformer(dec)
        self.tokenizers = nn.ModuleDict(
            {
                name: PatchTokenizer(self.backbone.adapters[name].target_dim, q.levels, q.hidden, q.depth)
                for name, q in self.options.quantize.items()
            }
        )
        heads = self.build_heads(dec.dim, initialize=False)
        for name, tokenizer in self.tokenizers.items():
            heads[name] = DefaultHead(dec.dim, tokenizer.codebook_size)
        self.heads = heads
        self.decoder_embed.apply(init_weights)
        self.initialize_heads(self.heads)
        nn.init.normal_(self.query_token, std=0.02)
        if self.decoder_modality_embedding is not None:
            nn.init.normal_(self.decoder_modality_embedding.weight, std=0.02)

    # ------------------------------------------------------------------ tokens and masks

    def draw_mask(self, batch: TokenBatch, masking: MaskingConfig, generator: torch.Generator | None) -> BudgetMask:
        """Budgets per sample from Dirichlet draws over its modalities (`masking` is not used: the budgets are the
        objective's options)."""
        o = self.options
        available = self.available(batch)
        return draw_budget_mask(
            available, self.backbone.slices(batch), o.input_tokens, o.target_tokens, o.input_alpha,
            o.target_alpha, generator,
        )  # fmt: skip

    @staticmethod
    def available(batch: TokenBatch) -> Tensor:
        """(B, N) bool: the real tokens (padding and absent modalities are False)."""
        if batch.padding_mask is None:
            return torch.ones(batch.batch_size, batch.num_tokens, dtype=torch.bool, device=batch.tokens.device)
        return batch.padding_mask

    def cross_modal_mask(self, batch: TokenBatch, sources: Sequence[str], targets: Sequence[str]) -> BudgetMask:
        """The fixed mask of any-to-any prediction: every real token of `sources` is an input, every token of
        `targets` a target (static index lists, so the graph exports)."""
        slices = self.backbone.slices(batch)
        real = self.available(batch)
        b, n = real.shape
        device = batch.tokens.device

        def index(names: Sequence[str]) -> Tensor:
            ids = [torch.arange(n, device=device)[slices[name]] for name in names]
            return torch.cat(ids).unsqueeze(0).expand(b, -1)  # (B, K)

        ids_keep, target_ids = index(sources), index(targets)
        keep_valid = torch.gather(real, 1, ids_keep)
        target_valid = torch.ones_like(target_ids, dtype=torch.bool)  # a query needs no data
        hidden = torch.ones(b, n, dtype=torch.bool, device=device).scatter(1, ids_keep, ~keep_valid)
        target = torch.zeros(b, n, dtype=torch.bool, device=device).scatter(1, target_ids, target_valid)
        ids_restore = restore_order(ids_keep, n)
        return BudgetMask(ids_keep, ids_restore, hidden, target, keep_valid, target_ids, target_valid)

    @staticmethod
    def mask_from_maps(inputs: Tensor, targets: Tensor) -> BudgetMask:
        """A mask from boolean maps (B, N) of inputs and of targets (disjoint), for rows of different counts: as many
        slots as the fullest row, the rest marked invalid. Reads the counts, so it runs eagerly (not in an export)."""
        if bool((inputs & targets).any()):
            raise ValueError("a token cannot be both an input and a target")
        k_in, k_t = max(int(inputs.sum(1).max()), 1), max(int(targets.sum(1).max()), 1)
        ids_keep = torch.argsort((~inputs).to(torch.int8), dim=1, stable=True)[:, :k_in]  # inputs first, in order
        target_ids = torch.argsort((~targets).to(torch.int8), dim=1, stable=True)[:, :k_t]
        ids_restore = restore_order(ids_keep, inputs.shape[1])
        return BudgetMask(
            ids_keep, ids_restore, ~inputs, targets, torch.gather(inputs, 1, ids_keep), target_ids,
            torch.gather(targets, 1, target_ids),
        )  # fmt: skip

    # ------------------------------------------------------------------ forward

    def queries(self, batch: TokenBatch) -> Tensor:
        """(B, N, Dd) decoder queries of every token: a learned query plus its decoder position, modality, variate
        and shared-time embeddings (no content: the decoder learns what the inputs say about it)."""
        b, n = batch.batch_size, batch.num_tokens
        q = self.query_token.to(batch.tokens.dtype).expand(b, n, -1)
        for offset in (
            self.backbone.position_embedding(batch, self.decoder_positions, q.shape[-1]),
            self.backbone.modality_offsets(batch, self.decoder_modality_embedding),
            self.backbone.variate_offsets(batch, self.decoder_variate_embedding),
            self.backbone.time_embedding(batch, q.shape[-1]),
        ):
            if offset is not None:
                q = q + offset
        return q

    @staticmethod
    def as_budget_mask(mask: Mask) -> BudgetMask:
        """Any mask as a budget mask: its `ids_keep` are the inputs and its hidden tokens the target slots (valid
        where `mask.target` says so), e.g. a caller's `Mask.from_hidden` (static shapes, so it compiles)."""
        if isinstance(mask, BudgetMask):
            return mask
        target_ids = torch.argsort(mask.ids_restore, dim=1)[:, mask.num_keep :]  # (B, N - K) the hidden tokens
        return BudgetMask(
            mask.ids_keep, mask.ids_restore, mask.hidden, mask.target, torch.ones_like(mask.ids_keep, dtype=torch.bool),
            target_ids, torch.gather(mask.target, 1, target_ids),
        )  # fmt: skip

    def forward(self, batch: TokenBatch, mask: Mask | None) -> Prediction:
        if mask is None:
            raise ValueError("the 4m objective needs a mask (its draw_mask, cross_modal_mask or a caller's Mask)")
        mask = self.as_budget_mask(mask)
        assert mask.target_ids is not None and mask.target_valid is not None and mask.keep_valid is not None
        x = self.backbone.embed(batch)  # (B, N, D) content + positions + modality/variate
        inputs = batch.replace(padding_mask=mask.input_map())  # empty input slots are padding
        h = self.backbone.encode(gather_tokens(x, mask.ids_keep), inputs, keep=mask.ids_keep)  # (B, K_in, D)
        memory = self.decoder_embed(h)  # (B, K_in, Dd)
        q = gather_tokens(self.queries(batch), mask.target_ids)  # (B, K_t, Dd)
        modality = None if batch.modality_ids is None else gather_tokens(batch.modality_ids, mask.target_ids)
        within = AttentionMask(padding_mask=mask.target_valid, sample_ids=modality)  # self-attention per modality
        rope = self.backbone.rope_coordinates(batch, self.decoder.config.rope)
        rope = None if rope is None else gather_tokens(rope, mask.target_ids)
        d = self.decoder(q, within, positions=rope, memory=memory, memory_padding=mask.keep_valid)  # (B, K_t, Dd)
        d = d * mask.target_valid.unsqueeze(-1).to(d.dtype)  # empty slots predict nothing
        full = d.new_zeros(batch.batch_size, batch.num_tokens, d.shape[-1])
        full = full.scatter(1, mask.target_ids.unsqueeze(-1).expand(-1, -1, d.shape[-1]), d)  # (B, N, Dd)
        return self.apply_heads(self.heads, full, batch)

    # ------------------------------------------------------------------ losses

    def modality_loss(
        self, adapter: Adapter, pred: Tensor, part: TokenBatch, target: Tensor | None
    ) -> Tensor | Mapping[str, Tensor]:
        assert target is not None
        return adapter.reconstruction_loss(pred, part, target)

    def modality_terms(self, name: str, pred: Tensor, part: TokenBatch, target: Tensor | None) -> dict[str, Tensor]:
        """The adapter's loss on the modality's targets, or for a quantized modality the cross-entropy of its token
        ids plus the tokenizer's own reconstruction term (`<modality>/tokenizer`, which trains only the tokenizer)."""
        assert target is not None
        if name in self.tokenizers:
            return self.discrete_loss(name, pred, part, target)
        return super().modality_terms(name, pred, part, target)

    def discrete_loss(self, name: str, logits: Tensor, part: TokenBatch, target: Tensor) -> dict[str, Tensor]:
        """Cross-entropy of the predicted ids (B, N_m, V) against the tokenizer's ids of the targets."""
        if part.targets is None:
            raise ValueError(f"modality {name!r}: its adapter's tokens carry no targets to quantize")
        tokenizer = self.tokenizers[name]
        values = torch.nan_to_num(part.targets.float()).detach()  # (B, N_m, P)
        real = self.available(part)
        with torch.no_grad():
            ids = tokenizer.encode(values)  # (B, N_m)
        target = target & real
        ce = F.cross_entropy(logits[target], ids[target]) if bool(target.any()) else logits.sum() * 0.0
        return {"cross_entropy": ce, "tokenizer": tokenizer.loss(values, real)}

    @torch.no_grad()
    def tokenizer_data(self, name: str, batches: Iterable[Any], max_tokens: int = 200_000) -> Tensor:
        """(K, P) target tokens of modality `name` from batches of raw inputs (mappings, or (inputs, targets)
        pairs): the real tokens, for :meth:`PatchTokenizer.fit`."""
        rows, count = [], 0
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            part = self.backbone.parts(self.backbone.tokenize({name: inputs[name]}))[name]
            if part.targets is None:
                raise ValueError(f"modality {name!r}: its adapter's tokens carry no targets to quantize")
            rows.append(torch.nan_to_num(part.targets.float())[self.available(part)])
            count += len(rows[-1])
            if count >= max_tokens:
                break
        if not rows:
            raise ValueError("tokenizer_data: no batches")
        return torch.cat(rows)[:max_tokens]

    def fit_tokenizer(self, name: str, batches: Iterable[Any], steps: int = 500, **fit: Any) -> list[float]:
        """Pre-fits the FSQ tokenizer of a quantized modality on its target tokens (a 4M-style separate tokenizer
        stage, so the ids the model learns to predict are stable from the first step); returns the loss per step.
        Without it the tokenizer trains beside the model through its `<modality>/tokenizer` term.

        Raises:
            ValueError: for a modality without a quantizer.
        """
        if name not in self.tokenizers:
            raise ValueError(f"modality {name!r} has no quantizer; quantized: {sorted(self.tokenizers)}")
        tokenizer = self.tokenizers[name]
        losses = tokenizer.fit(self.tokenizer_data(name, batches).to(self.query_token.device), steps=steps, **fit)
        tokenizer.train(self.training)
        return losses

    def term_weights(self, terms: Mapping[str, Tensor]) -> dict[str, float]:
        """The weighted average over modalities: a term of modality m weighs w_m / Σ w (tokenizer terms weigh 1:
        they train only the tokenizers)."""
        names = self.backbone.names
        if len(names) == 1:
            return {}
        weights = {name: float(self.options.loss_weights.get(name, 1.0)) for name in names}
        total = sum(weights.values()) or 1.0
        out = {}
        for term in terms:
            modality, _, rest = term.partition("/")
            if rest != "tokenizer":
                out[term] = weights[modality] / total
        return out

    # ------------------------------------------------------------------ any-to-any

    def values(self, name: str, pred: Tensor) -> Tensor:
        """A modality's predictions as target values (B, N_m, P): decoded token ids for a quantized modality.

        Raises:
            ValueError: when the adapter's pretraining head predicts something other than target values.
        """
        if name in self.tokenizers:
            return self.tokenizers[name].decode(pred.argmax(dim=-1))
        adapter = self.backbone.adapters[name]
        if pred.shape[-1] != adapter.target_dim:
            raise ValueError(
                f"modality {name!r}: adapter {adapter.name!r} predicts {pred.shape[-1]} values per token, not its "
                f"{adapter.target_dim} target values; it cannot be decoded to data"
            )
        return pred

    def cross_modal_batch(
        self,
        inputs: Mapping[str, Any],
        targets: Sequence[str],
        shapes: Mapping[str, Sequence[int]] | None = None,
        known: Mapping[str, Tensor] | None = None,
    ) -> tuple[TokenBatch, BudgetMask]:
        """The token batch and mask that predict `targets` from the modalities in `inputs` (`shapes` and `known`:
        see :meth:`predict`).

        Raises:
            ValueError: for no or unknown targets, a target among the inputs without a `known` map, inputs naming no
                modality, or a `known` map of another shape than its modality's tokens.
        """
        names = self.backbone.names
        targets, known = list(targets), dict(known or {})
        unknown = sorted(set(targets) - set(names))
        if not targets or unknown:
            raise ValueError(f"name the modalities to predict from {names}; got {targets}")
        if sorted(set(known) - set(targets)):
            raise ValueError(f"`known` maps must belong to targets {targets}; got {sorted(known)}")
        both = sorted(set(targets) & set(inputs) - {PRESENT_KEY} - set(known))
        if both:
            raise ValueError(
                f"modalities {both} are both inputs and targets; drop them from the inputs (or give `known` maps "
                "of their tokens that are inputs)"
            )
        sources = [name for name in names if name in inputs and name not in targets]
        if not sources and not known:
            raise ValueError(f"inputs name no modality to predict from; give at least one of {names}")
        missing = sorted(set(known) - set(inputs))
        if missing:
            raise ValueError(f"modalities {missing} have `known` tokens but no input values")
        completed = self.backbone.complete(inputs, shapes)
        present = dict(completed.get(PRESENT_KEY) or {})
        for name in targets:  # a target is queried, not read: its stand-in tokens are real queries
            present.pop(name, None)
        completed[PRESENT_KEY] = present
        batch = self.backbone.tokenize(completed)
        if not known:
            return batch, self.cross_modal_mask(batch, sources, targets)
        real, slices = self.available(batch), self.backbone.slices(batch)
        is_input = torch.zeros_like(real)
        is_target = torch.zeros_like(real)
        for name in sources:
            is_input[:, slices[name]] = real[:, slices[name]]
        for name in targets:
            where = slices[name]
            given = known.get(name)
            if given is None:
                given = torch.zeros_like(real[:, where])
            elif given.shape != real[:, where].shape or given.dtype != torch.bool:
                raise ValueError(
                    f"known[{name!r}] must be a {tuple(real[:, where].shape)} bool map of its tokens, got "
                    f"{tuple(given.shape)} {given.dtype}"
                )
            is_input[:, where] = given.to(real.device) & real[:, where]
            is_target[:, where] = ~given.to(real.device)
        return batch, self.mask_from_maps(is_input, is_target)

    @torch.no_grad()
    def predict(
        self,
        inputs: Mapping[str, Any],
        targets: Sequence[str],
        decode: bool = True,
        shapes: Mapping[str, Sequence[int]] | None = None,
        known: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Predicts the modalities `targets` from the ones in `inputs`, in one pass.

        Args:
            inputs: modality name → raw input (B, ...) for the modalities given (optionally a `"present"` entry).
            targets: the modalities to predict (not among the inputs).
            decode: return raw data through each adapter's inverse (a series in data units, frames, a log-mel
                spectrogram); False returns target values per token (B, N_m, P_m).
            shapes: target modality → the shape of one raw sample to predict (e.g. `(16000,)` for a second of
                audio); default its adapter's `input_shape()` (the configured clip length, frames and size).
            known: target modality → (B, N_m) bool map of its tokens that are given (their values come from
                `inputs[modality]`): only the others are predicted, e.g. completing a partly observed modality
                from itself and the other modalities, or masked generation step by step.

        Returns:
            modality name → prediction (a target's `known` tokens keep their given values).
        """
        batch, mask = self.cross_modal_batch(inputs, targets, shapes, known)
        prediction = self(batch, mask)
        parts = self.backbone.parts(batch)
        out = {}
        for name in targets:
            values = self.values(name, prediction.preds[name].float())
            if name in (known or {}) and parts[name].targets is not None:  # given tokens keep their own values
                given = known[name].to(values.device).unsqueeze(-1)  # type: ignore[index]
                values = torch.where(given, torch.nan_to_num(parts[name].targets.float()), values)
            if decode:
                decoded = self.backbone.adapters[name].decode(values, parts[name])
                if decoded is None:
                    raise ValueError(f"modality {name!r}: its adapter has no inverse; use decode=False")
                values = decoded
            out[name] = values
        return out

    @torch.no_grad()
    def embed_modalities(self, inputs: Mapping[str, Any]) -> Tensor:
        """(B, D) embedding of any subset of modalities: the encoder's mean feature over the real tokens of the
        modalities given (the others are absent), e.g. for retrieval across modalities."""
        batch = self.backbone.tokenize(inputs)
        hidden = self.backbone(batch)  # (B, N, D)
        weight = self.available(batch).unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)
