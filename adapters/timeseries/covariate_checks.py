"""Checks and readers of covariate data for the recipe data builder: static categoricals per item, known values
that must be known, and the data's covariates against what the model was configured to take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mmsdk.adapters.timeseries.checks import shown
from mmsdk.adapters.timeseries.series_frame import TimeSeriesFrame


def read_static(
    table: pd.DataFrame, columns: list[str], item_column: str | None, source: str
) -> dict[str, dict[str, str]]:
    """Static categorical column → item id → its category (one item "0" without an item column).

    Raises:
        ValueError: for a missing column, a missing value, or a column that is not constant within an item.
    """
    out: dict[str, dict[str, str]] = {}
    for column in columns:
        if column not in table.columns:
            raise ValueError(
                f"{source}: data.static_categoricals: column {column!r} not found; the file has "
                f"{shown(list(table.columns))}"
            )
        values = table[column]
        if values.isna().any():
            raise ValueError(f"{source}: data.static_categoricals column {column!r} has missing values")
        items = table[item_column].astype(str) if item_column else pd.Series("0", index=table.index)
        per_item = values.astype(str).groupby(items).unique()
        mixed = [item for item, categories in per_item.items() if len(categories) > 1]
        if mixed:
            raise ValueError(
                f"{source}: data.static_categoricals column {column!r} is not constant within item {mixed[0]!r} "
                f"(values {shown(list(per_item[mixed[0]]))}): static covariates take one category per item"
            )
        out[column] = {str(item): str(categories[0]) for item, categories in per_item.items()}
    return out


def check_known_values(frame: TimeSeriesFrame, source: str) -> None:
    """Known covariates must be known wherever an item has data: a missing value is an error naming the column."""
    for j in frame.indices("known"):
        for k, length in enumerate(frame.lengths):
            missing = np.flatnonzero(~frame.observed[k, frame.values.shape[1] - int(length) :, j])
            if len(missing):
                raise ValueError(
                    f"{source}: known covariate {frame.variables[j]!r} of item {frame.item_ids[k]!r} is missing at "
                    f"data row {int(missing[0])} ({len(missing)} rows): known-future values must be known; fill "
                    "them, or list the column under data.past_covariates"
                )


def check_covariate_counts(frame: TimeSeriesFrame, adapter: str, adapter_config: Mapping[str, Any]) -> None:
    """The data's covariates must be what the model was configured to take (errors name both fields)."""
    counts = {"past_covariates": len(frame.past_covariates), "known_covariates": len(frame.known_covariates)}
    if not any(counts.values()) and not frame.static:
        return
    if "past_covariates" not in adapter_config:
        raise ValueError(
            f"the data has covariates {frame.past_covariates + frame.known_covariates}, but adapter {adapter!r} does "
            "not use covariates (PatchTST is channel-independent); use moirai or timerxl with past_covariates / "
            "known_covariates in model.adapter_config, or drop data.past_covariates / known_covariates / calendar"
        )
    for name, count in counts.items():
        configured = int(adapter_config.get(name, 0))
        if configured != count:
            names = frame.past_covariates if name == "past_covariates" else frame.known_covariates
            raise ValueError(
                f"the data has {count} {name.replace('_', ' ')} {names} but model.adapter_config.{name} is "
                f"{configured}; set it to {count}"
            )
    if frame.static and not adapter_config.get("static_categoricals"):
        raise ValueError(
            f"the data has static categoricals but model.adapter_config.static_categoricals is empty; set it to "
            f"{frame.static_vocabulary()}"
        )
