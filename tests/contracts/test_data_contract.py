"""The recipe data contract's shared stratified split."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsdk.contracts.data import per_class_split, read_manifest


def test_per_class_split_takes_the_asked_share_of_every_class_reproducibly() -> None:
    labels = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    first, rest = per_class_split(labels, seed=0, take=lambda n: n // 2)
    assert sorted(first + rest) == list(range(12))
    assert [sum(labels[i] == c for i in first) for c in "abc"] == [3, 2, 1]
    assert per_class_split(labels, seed=0, take=lambda n: n // 2) == (first, rest)
    assert per_class_split(labels, seed=0, take=lambda n: n // 2, stream=1) != (first, rest)  # another draw


def test_read_manifest_strips_names_and_cells_and_fills_missing_ones(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("\ufeffpath , label,voice\n a.wav ,dog , en\nb.wav,cat\n", encoding="utf-8")
    columns, rows = read_manifest(manifest, "MyManifest")
    assert columns == ["path", "label", "voice"]
    assert rows == [{"path": "a.wav", "label": "dog", "voice": "en"}, {"path": "b.wav", "label": "cat", "voice": ""}]
    with pytest.raises(FileNotFoundError, match=r"MyManifest: manifest not found: .*nope\.csv"):
        read_manifest(tmp_path / "nope.csv", "MyManifest")
