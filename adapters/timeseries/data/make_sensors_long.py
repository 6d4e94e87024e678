"""Writes `sensors_long.csv`: a small synthetic long-format time-series file (no third-party data).

Columns `item_id,timestamp,value`: three hourly sensors ("east", "north", "south") of different lengths and start
times, with daily and weekly cycles, a slow trend and noise; about 2 % of the values are empty cells and "south"
lacks a 6-hour block of rows (a gap that `fill_gaps` turns into NaN rows). Deterministic: the noise comes from an
integer linear congruential generator, so every platform writes the same file.

    python adapters/timeseries/data/make_sensors_long.py [output.csv]
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta
from pathlib import Path

# item → (first timestamp, rows, base level, daily amplitude, weekly amplitude, trend per row)
ITEMS = {
    "north": ("2024-01-01 00:00", 1100, 50.0, 12.0, 4.0, 0.004),
    "south": ("2024-01-03 00:00", 1000, 35.0, 8.0, 6.0, -0.002),
    "east": ("2024-01-06 00:00", 900, 20.0, 5.0, 2.0, 0.001),
}
GAP = ("south", 400, 6)  # item, first missing row, rows missing


class _Lcg:
    """Portable pseudo-random numbers in [0, 1) (the C standard's example generator)."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def __call__(self) -> float:
        self.state = (1103515245 * self.state + 12345) % 2**31
        return self.state / 2**31


def rows() -> list[str]:
    """The CSV lines (header first)."""
    random = _Lcg(2024)
    lines = ["item_id,timestamp,value"]
    for item, (start, count, base, daily, weekly, trend) in ITEMS.items():
        first = datetime.strptime(start, "%Y-%m-%d %H:%M")
        for t in range(count):
            noise = sum(random() for _ in range(4)) - 2.0  # roughly normal, std ~0.58
            missing = random() < 0.02
            if item == GAP[0] and GAP[1] <= t < GAP[1] + GAP[2]:
                continue
            stamp = (first + timedelta(hours=t)).strftime("%Y-%m-%d %H:%M")
            value = (
                base
                + daily * math.sin(2 * math.pi * (t % 24) / 24)
                + weekly * math.sin(2 * math.pi * (t % 168) / 168)
                + trend * t
                + noise
            )
            lines.append(f"{item},{stamp}," + ("" if missing else f"{value:.2f}"))
    return lines


def main(path: Path) -> None:
    """Writes the file."""
    path.write_text("\n".join(rows()) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sensors_long.csv"))
