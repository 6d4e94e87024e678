"""Group-disjoint splits: no speaker, voice or recording session in two of train, validation and test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_split(
    groups: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Splits items into (train, val, test) index lists such that no group (speaker, voice, recording session) is in
    two splits.

    Groups are visited in a seeded random order and each goes whole to the split whose item count it brings closest
    to its target (`fraction * len(groups)`), so the splits match the fractions by item count up to about one
    group's size. Every split with a positive fraction then gets at least one group (an empty one takes the smallest
    group of the split most above its target); a zero fraction gives an empty split.

    Args:
        groups: the group of each item, e.g. `manifest.column("speaker")`.
        fractions: shares of items for train, val and test; non-negative, summing to 1.
        seed: fixes the assignment.

    Returns:
        Sorted item indices of train, val and test.

    Raises:
        ValueError: bad fractions, no items, or fewer groups than splits with a positive fraction.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"group_split: fractions must be 3 non-negative shares summing to 1, got {fractions}")
    if not groups:
        raise ValueError("group_split: no items")
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    names = list(members)  # first-appearance order: deterministic for a seed
    active = [s for s in range(3) if fractions[s] > 0]
    if len(names) < len(active):
        raise ValueError(f"group_split: {len(names)} groups cannot fill {len(active)} non-empty splits {fractions}")
    targets = [f * len(groups) for f in fractions]
    counts = [0, 0, 0]
    chosen: list[list[int]] = [[], [], []]  # group positions per split, in visit order
    sizes = [len(members[name]) for name in names]
    for group in np.random.default_rng(seed).permutation(len(names)).tolist():
        # the split whose distance to its target shrinks most; ties go to the split furthest below target
        deficits = [(s, targets[s] - counts[s]) for s in active]
        split = -max((abs(d) - abs(d - sizes[group]), d, -s) for s, d in deficits)[2]
        chosen[split].append(group)
        counts[split] += sizes[group]
    for split in active:  # an empty split takes the smallest group of the split most above its target
        if not chosen[split]:
            donor = max((d for d in active if len(chosen[d]) > 1), key=lambda d: (counts[d] - targets[d], -d))
            group = min(chosen[donor], key=lambda g: sizes[g])
            chosen[donor].remove(group)
            chosen[split].append(group)
            counts[donor], counts[split] = counts[donor] - sizes[group], sizes[group]
    splits = [sorted(i for group in chosen[s] for i in members[names[group]]) for s in range(3)]
    return splits[0], splits[1], splits[2]
