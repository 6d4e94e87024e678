"""Shared pytest setup: deterministic seeds, a fixed CPU thread count, and skipping GPU tests without CUDA.

The `slow` and `gpu` markers are registered in pyproject.toml; nothing is registered here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips every `gpu`-marked test when no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_torch() -> Iterator[None]:
    """Seeds torch's global generators before every test so random inputs are reproducible."""
    torch.manual_seed(0)
    yield
