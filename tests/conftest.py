"""Shared pytest setup: deterministic seeds, a fixed CPU thread count, a fresh compile cache, and skipping GPU tests
without CUDA.

With pytest-xdist (`-n 2`, the README's test command) every worker runs torch on one thread, so two workers share
two cores without oversubscription; a plain `pytest` run uses two threads.

The `slow` and `gpu` markers are registered in pyproject.toml; nothing is registered here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import torch

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# torch.compile's on-disk caches start empty in every test process (removed at exit): with kernels that an earlier
# session on the same machine cached, a compiled FlexAttention test aborts the interpreter inside a loaded kernel
# (torch 2.11, CPU), and an empty cache is what CI starts from anyway.
_COMPILE_CACHE = tempfile.mkdtemp(prefix="mmsdk-tests-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _COMPILE_CACHE
atexit.register(shutil.rmtree, _COMPILE_CACHE, ignore_errors=True)


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
