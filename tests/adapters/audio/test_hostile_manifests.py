"""Audio manifests that are not UTF-8 text, or not CSV at all, give ValueErrors naming the file, never its lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsdk.adapters.audio.datasets import AudioManifest

SECRET = "hunter2-do-not-print"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("latin.csv", f"path,label\nclip.wav,caf\xe9-{SECRET}\n".encode("latin-1"), r"latin\.csv is not UTF-8 text"),
        ("blob.csv", f"path,label\n\x00\x01{SECRET}\x00\n".encode(), r"blob\.csv is not a readable CSV manifest"),
    ],
)
def test_unreadable_manifests_are_named(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        AudioManifest(path, 16000, 1000)
    assert SECRET not in str(info.value)


def test_a_text_file_given_as_manifest_shows_short_column_names(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text(f"root:x:0:0:root:/root:/bin/bash:{'x' * 60}\ndaemon:x:1:1:{SECRET}:/usr/sbin\n")
    with pytest.raises(
        ValueError, match=r"passwd has no column 'path'; its columns are \['root:x:0:0:.*\.\.\.'\]"
    ) as info:
        AudioManifest(path, 16000, 1000)
    assert SECRET not in str(info.value) and "x" * 60 not in str(info.value)
