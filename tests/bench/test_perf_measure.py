"""The performance suite's measuring tools: alternation order, summaries, and peak memory of a side in its own
process (a spawned child must not report its parent's peak)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for `benchmarks.perf`

from benchmarks.perf.measure import alternate, count_flops, peak_rss, summary


def test_alternate_runs_the_sides_in_turn_and_swaps_who_goes_first() -> None:
    calls: list[tuple[str, int]] = []

    def side(name: str, seconds: float):
        def run(round_index: int) -> list[float]:
            calls.append((name, round_index))
            return [seconds]

        return run

    times = alternate({"a": side("a", 1.0), "b": side("b", 2.0)}, rounds=3)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_summary_takes_the_median_step() -> None:
    out = summary([0.1, 0.3, 0.2, 10.0, 0.2], samples_per_step=64, flops=10**9)
    assert out["ms_per_step"] == pytest.approx(200.0)
    assert out["samples_per_s"] == pytest.approx(320.0)
    assert out["flop_per_s"] == pytest.approx(5e9) and out["steps_timed"] == 5


def test_count_flops_counts_a_matmul_forward_and_backward() -> None:
    a, b = torch.randn(8, 16, requires_grad=True), torch.randn(16, 4)
    assert count_flops(lambda: (a @ b).sum().backward()) == 2 * (2 * 8 * 16 * 4)  # forward + grad of a


def _allocate(megabytes: int) -> None:
    block = torch.ones(megabytes * 2**18)  # float32: 4 bytes each
    assert float(block[-1]) == 1.0


@pytest.mark.slow
def test_peak_rss_is_the_childs_own_peak() -> None:
    parent_block = torch.ones(600 * 2**18)  # 600 MiB held here must not show in the children
    small, large = peak_rss(_allocate, (1,), 1), peak_rss(_allocate, (300,), 1)
    assert 250 * 2**20 < large - small < 400 * 2**20
    assert small < large and float(parent_block[0]) == 1.0
