"""Token budgets per modality (4M): which tokens of a multimodal sequence are inputs and which are targets.

For each sample, the input budget of K_in tokens is shared among its modalities by a draw from a symmetric
Dirichlet(α) over the modalities that sample has; the target budget of K_t tokens is shared by a second, independent
draw over the tokens that are not inputs. Inputs and targets are disjoint, and every row has K_in input slots and
K_t target slots, so shapes stay static.

A share becomes a whole number of tokens by the largest-remainder rule (the quotas sum to the budget), and each
modality's quota of tokens is drawn at random among its available ones. A modality with fewer available tokens than
its quota does not hand the rest to the others: those slots stay empty, marked invalid (`keep_valid`,
`target_valid` False), which encoders treat as padding and losses skip. So "one modality in" really gives the
encoder one modality, the setting of predicting one modality from another. A row with fewer available tokens than
both budgets together first splits them between inputs and targets in the budgets' proportion.

α controls how many modalities a sample mixes: α = 1 is uniform over the simplex, α → ∞ gives every modality the same
share, and α = 0 is the extreme of one modality per sample (all of the budget goes to one of the sample's
modalities, drawn uniformly).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mmsdk.contracts.masking import Mask

_UNAVAILABLE = float("inf")
logger = logging.getLogger(__name__)


@dataclass
class BudgetMask(Mask):
    """A :class:`Mask` with a fixed number of inputs and of targets per row, and the slots that hold real tokens.

    Attributes (besides the Mask's):
        keep_valid: (B, K_in) bool, True where `ids_keep` holds a real input (False: a slot left over when the row
            has fewer available tokens than the budget; the token there is hidden and must be ignored).
        target_ids: (B, K_t) long, the target tokens (in draw order).
        target_valid: (B, K_t) bool, True where `target_ids` holds a real target.
    """

    keep_valid: Tensor | None = None
    target_ids: Tensor | None = None
    target_valid: Tensor | None = None

    @property
    def num_targets(self) -> int:
        """K_t: target slots per row."""
        assert self.target_ids is not None
        return self.target_ids.shape[1]

    def input_map(self) -> Tensor:
        """(B, N) bool, True at the real inputs."""
        return ~self.hidden

    def to(self, device: torch.device | str) -> BudgetMask:
        """The mask on another device."""
        assert self.keep_valid is not None and self.target_ids is not None and self.target_valid is not None
        return BudgetMask(
            *(t.to(device) for t in (self.ids_keep, self.ids_restore, self.hidden, self.target)),
            keep_valid=self.keep_valid.to(device),
            target_ids=self.target_ids.to(device),
            target_valid=self.target_valid.to(device),
        )


def dirichlet_shares(
    available: Tensor, alpha: float | Sequence[float], generator: torch.Generator | None = None
) -> Tensor:
    """Per-row shares of a budget among modalities: (B, M) weights summing to 1 over each row's available ones.

    Args:
        available: (B, M) bool, True for the modalities a row can draw from (rows with none get all zeros).
        alpha: the symmetric Dirichlet concentration; 0 = one available modality per row, uniformly. Several values
            are a mixture: each row draws its concentration uniformly from them (4M's mixtures of Dirichlets).
        generator: seeds the draw (the Gamma variates come from a NumPy generator seeded by it).
    """
    b, m = available.shape
    alphas = [float(alpha)] if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=available.device).item())
    rng = np.random.default_rng(seed)
    row_alpha = np.asarray(alphas)[rng.integers(0, len(alphas), size=b)]  # (B,)
    gamma = rng.gamma(np.maximum(row_alpha, 1e-3)[:, None], size=(b, m))  # (B, M)
    one_hot = np.zeros((b, m))
    noise = np.where(available.cpu().numpy(), rng.random((b, m)), -1.0)
    one_hot[np.arange(b), noise.argmax(axis=1)] = 1.0  # alpha 0: one available modality, uniformly
    weights = np.where(row_alpha[:, None] == 0, one_hot, np.maximum(gamma, 1e-12))
    weights = torch.as_tensor(weights, dtype=torch.float32, device=available.device) * available
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)


def restore_order(ids_keep: Tensor, num_tokens: int) -> Tensor:
    """(B, N) `ids_restore` of a mask whose inputs are `ids_keep` (B, K), in that order, followed by every other
    token in sequence order."""
    picked = torch.zeros(ids_keep.shape[0], num_tokens, device=ids_keep.device).scatter(1, ids_keep, -1.0)
    return torch.argsort(torch.argsort(picked, dim=1, stable=True), dim=1)


def quotas(shares: Tensor, count: int) -> Tensor:
    """(B, M) whole token counts summing to `count` per row (with a positive share), in proportion to `shares`:
    the floor of each share · count, plus one for the largest remainders (Hamilton's method)."""
    exact = shares * count
    base = exact.floor()
    left = (count - base.sum(dim=1, keepdim=True)).round()  # (B, 1) tokens still to give
    order = torch.argsort(torch.argsort(-(exact - base) + (shares == 0).float() * 2.0, dim=1), dim=1)
    return (base + (order < left).float()).long()


def apportion(
    available: Tensor,
    slices: Mapping[str, slice],
    shares: Tensor,
    count: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Picks up to `count` tokens per row: `quotas(shares, count)[:, m]` random available tokens of modality m.

    Args:
        available: (B, N) bool tokens that may be picked.
        slices: where each modality lies along N, in the order of the columns of `shares`.
        shares: (B, M) per-row shares (0 = pick none of that modality).
        count: K, tokens per row.
        generator: seeds the random order inside each modality.

    Returns:
        ids (B, K) long, the picked tokens, and valid (B, K) bool, False for the slots left over when a modality has
        fewer available tokens than its quota (its share is not handed to the others).
    """
    b, n = available.shape
    quota = quotas(shares, count)  # (B, M)
    noise = torch.rand(b, n, generator=generator, device=available.device)
    keys = torch.full((b, n), _UNAVAILABLE, device=available.device)
    for index, where in enumerate(slices.values()):
        local = noise[:, where] + (~available[:, where]).float() * 2.0  # unavailable tokens rank last
        rank = torch.argsort(torch.argsort(local, dim=1), dim=1)  # (B, N_m) place in a random order
        ok = available[:, where] & (rank < quota[:, index : index + 1])
        keys[:, where] = torch.where(
            ok, rank.float() + noise[:, where] * 1e-3, torch.full_like(noise[:, where], _UNAVAILABLE)
        )
    ids = torch.argsort(keys, dim=1, stable=True)[:, :count]  # (B, K) every picked token, then left-over slots
    valid = torch.isfinite(torch.gather(keys, 1, ids))
    return ids, valid


def draw_budget_mask(
    available: Tensor,
    slices: Mapping[str, slice],
    input_tokens: int,
    target_tokens: int,
    input_alpha: float | Sequence[float] = 1.0,
    target_alpha: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
) -> BudgetMask:
    """Disjoint input and target tokens per row, shared among modalities by Dirichlet draws (see the module doc).

    Args:
        available: (B, N) bool, True for the real tokens of the modalities a sample has (padding and absent
            modalities False).
        slices: modality name → where its tokens lie along N (in sequence order).
        input_tokens: K_in inputs per row (>= 1).
        target_tokens: K_t targets per row (>= 1).
        input_alpha: Dirichlet concentration of the input shares (0 = one modality), or several to mix per row.
        target_alpha: Dirichlet concentration of the target shares (0 = one modality), or several to mix.
        generator: seeds every draw, so a mask is a pure function of the generator's seed.

    Raises:
        ValueError: for budgets below 1, or a sequence of fewer than 2 tokens. Budgets larger than the sequence
            (K_in + K_t > N, e.g. a short clip) shrink to N tokens in their proportion.
    """
    b, n = available.shape
    if input_tokens < 1 or target_tokens < 1:
        raise ValueError(f"token budgets must be >= 1, got input_tokens={input_tokens}, target_tokens={target_tokens}")
    if n < 2:
        raise ValueError(f"a sequence of {n} token cannot hold an input and a target")
    if input_tokens + target_tokens > n:  # budgets are upper bounds: a shorter sequence splits in their proportion
        scaled = min(n - 1, max(1, n * input_tokens // (input_tokens + target_tokens)))
        logger.debug("budgets %d + %d exceed %d tokens: using %d + %d", input_tokens, target_tokens, n, scaled,
                     n - scaled)  # fmt: skip
        input_tokens, target_tokens = scaled, n - scaled

    def per_modality(tokens: Tensor) -> Tensor:  # (B, M): does the row have any such token in modality m?
        return torch.stack([tokens[:, where].any(dim=1) for where in slices.values()], dim=1)

    shares = dirichlet_shares(per_modality(available), input_alpha, generator)
    ids_keep, keep_valid = apportion(available, slices, shares, input_tokens, generator)
    # a row with fewer tokens than both budgets splits what it has in the budgets' proportion, so it keeps targets
    count = available.sum(dim=1, keepdim=True)  # (B, 1)
    limit = torch.where(
        count < input_tokens + target_tokens, (count * input_tokens) // (input_tokens + target_tokens), count
    ).clamp_min(1)
    keep_valid = keep_valid & (torch.arange(input_tokens, device=available.device) < limit)  # lowest keys first
    ids_keep, order = torch.sort(ids_keep, dim=1)  # inputs in sequence order
    keep_valid = torch.gather(keep_valid, 1, order)
    is_input = torch.zeros(b, n, dtype=torch.bool, device=available.device)
    is_input.scatter_(1, ids_keep, keep_valid)
    remaining = available & ~is_input
    shares = dirichlet_shares(per_modality(remaining), target_alpha, generator)
    target_ids, target_valid = apportion(remaining, slices, shares, target_tokens, generator)
    target = torch.zeros(b, n, dtype=torch.bool, device=available.device)
    target.scatter_(1, target_ids, target_valid)
    ids_restore = restore_order(ids_keep, n)
    return BudgetMask(
        ids_keep=ids_keep,
        ids_restore=ids_restore,
        hidden=~is_input,
        target=target,
        keep_valid=keep_valid,
        target_ids=target_ids,
        target_valid=target_valid,
    )
