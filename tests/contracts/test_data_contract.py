"""The recipe data contract's shared stratified split."""

from __future__ import annotations

from mmsdk.contracts.data import per_class_split


def test_per_class_split_takes_the_asked_share_of_every_class_reproducibly() -> None:
    labels = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    first, rest = per_class_split(labels, seed=0, take=lambda n: n // 2)
    assert sorted(first + rest) == list(range(12))
    assert [sum(labels[i] == c for i in first) for c in "abc"] == [3, 2, 1]
    assert per_class_split(labels, seed=0, take=lambda n: n // 2) == (first, rest)
    assert per_class_split(labels, seed=0, take=lambda n: n // 2, stream=1) != (first, rest)  # another draw
