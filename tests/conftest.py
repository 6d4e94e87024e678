"""Shared pytest setup: deterministic seeds, a fixed CPU thread count, and skipping GPU tests without CUDA.

With pytest-xdist (`-n 2`, the README's test command) every worker runs torch on one thread, so two workers share
two cores without oversubscription; a plain `pytest` run uses two threads.

The `slow` and `gpu` markers are registered in pyproject.toml; nothing is registered here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


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


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Runs a test with torch on two threads, as the recorded outputs it compares bit for bit were computed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
