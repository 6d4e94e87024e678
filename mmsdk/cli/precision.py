"""The precision options of `mmsdk export`: an fp16 or int8 copy of the exported file, calibrated on and compared
against the user's own data.

`mmsdk export --precision int8 --calibration_data recipe.yaml` exports the float32 graph to `<output stem>.fp32.onnx`
next to `--output` (kept: it is the reference of the report), converts it into `--output`, and writes the precision
report to `<output>.precision.json`. The recipe's `data:` section is built (with the data builder of the saved
model's adapter, or the one its `builder` key names) against the saved model's config: `--quantization static`
calibrates on the train split; the report compares both files on the val split (else test, else train). With
`--max_metric_change`, a larger change of the task metric fails the command (both files and the report stay, for
inspection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

logger = logging.getLogger("mmsdk")

Precision = Literal["fp32", "fp16", "int8"]
Quantization = Literal["dynamic", "static"]
HELDOUT_ITEMS = 64
"""Held-out items the precision report compares the models on."""
_TARGET_TASKS = ("forecast", "regression", "classification")  # tasks whose targets the report can score


@dataclass(frozen=True)
class PrecisionPlan:
    """What `mmsdk export` converts the float32 file into.

    Attributes:
        precision: fp32 (no conversion), fp16 or int8.
        quantization: for int8: "static" or "dynamic" (None otherwise).
        calibration_data: the recipe whose `data:` section holds the calibration and held-out data.
        calibration_batches: calibration batches for static int8.
        max_metric_change: the bound on the report's metric change (None: report only).
    """

    precision: Precision = "fp32"
    quantization: Quantization | None = None
    calibration_data: str | None = None
    calibration_batches: int = 16
    max_metric_change: float | None = None

    @classmethod
    def resolve(
        cls,
        precision: str,
        quantization: str | None,
        calibration_data: str | None,
        calibration_batches: int,
        max_metric_change: float | None,
    ) -> PrecisionPlan:
        """Checks the options together; int8 quantizes "dynamic" unless told "static" (on CPU, dynamic int8 measured
        faster than static QDQ for every family in `benchmarks/results/export.md`, at the same accuracy).

        Raises:
            ValueError: for an unknown precision or quantization, static quantization without calibration data,
                options that do not apply to the precision, `calibration_batches` < 1, a negative
                `max_metric_change`, or one without calibration data (nothing to measure the change on).
        """
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
        if quantization not in (None, "dynamic", "static"):
            raise ValueError(f"quantization must be dynamic or static, got {quantization!r}")
        if quantization is not None and precision != "int8":
            raise ValueError(f"--quantization applies to --precision int8 only, not {precision}")
        if precision == "fp32" and (calibration_data is not None or max_metric_change is not None):
            raise ValueError("--calibration_data and --max_metric_change apply to --precision fp16 or int8 only")
        if calibration_batches < 1:
            raise ValueError(f"calibration_batches must be >= 1, got {calibration_batches}")
        if max_metric_change is not None and not max_metric_change >= 0:
            raise ValueError(f"max_metric_change must be >= 0, got {max_metric_change}")
        if max_metric_change is not None and calibration_data is None:
            raise ValueError("--max_metric_change needs --calibration_data: the held-out data to measure the change on")
        if quantization == "static" and calibration_data is None:
            raise ValueError(
                "static quantization needs calibration data: pass --calibration_data, a recipe whose `data:` section "
                "describes your dataset; or use --quantization dynamic"
            )
        if precision == "int8" and quantization is None:
            quantization = "dynamic"
        return cls(precision, quantization, calibration_data, calibration_batches, max_metric_change)  # type: ignore[arg-type]

    def reference_path(self, output: Path) -> Path:
        """Where the float32 file goes: `output` itself for fp32, else `<output stem>.fp32<suffix>` beside it."""
        return output if self.precision == "fp32" else output.with_name(f"{output.stem}.fp32{output.suffix or '.onnx'}")


def read_calibration_data(plan: PrecisionPlan, model_config: Any, stage: str) -> Any:
    """The datasets of the calibration recipe's `data:` section (a `DataSplits`), or None without a recipe.

    Raises:
        FileNotFoundError: for a missing recipe.
        ValueError: for a recipe that is not YAML or has no `data:` mapping, or data the builder refuses.
    """
    if plan.calibration_data is None:
        return None
    from mmsdk.contracts.data import build_data

    path = Path(plan.calibration_data)
    if not path.is_file():
        raise FileNotFoundError(f"calibration_data: no recipe at {path}")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"calibration_data: {path} cannot be read as YAML: {type(error).__name__}") from error
    data = recipe.get("data") if isinstance(recipe, dict) else None
    if not isinstance(data, dict):
        raise ValueError(f"calibration_data: {path} has no `data:` section describing the dataset")
    return build_data(data, model_config, stage)  # type: ignore[arg-type]


def convert(plan: PrecisionPlan, reference: Path, output: Path, splits: Any, task: str | None) -> Any:
    """Converts the float32 `reference` into `output` and, with data, writes the precision report beside it.

    Args:
        plan: the resolved options.
        reference: the exported float32 file.
        output: the converted file.
        splits: the calibration recipe's `DataSplits` (None: no static calibration, no report).
        task: the exported head's task (None for embeddings and cross-modal predictors): the report scores the
            targets of forecast, regression and classification heads, else the output difference.

    Returns:
        The :class:`~mmsdk.export.quantization.PrecisionReport`, or None without data.

    Raises:
        ValueError: from the conversion (e.g. static int8 without calibration data).
        PrecisionLossError: when the metric changed by more than `plan.max_metric_change`.
    """
    from mmsdk.export.calibration import calibration_batches
    from mmsdk.export.quantization import precision_report, quantize, to_fp16
    from mmsdk.export.runtime import OnnxModel

    names = OnnxModel(reference).input_names
    if plan.precision == "fp16":
        to_fp16(reference, output)
    else:
        batches = None
        if plan.quantization == "static" and splits is not None:
            batches = calibration_batches(splits.train, plan.calibration_batches, splits.batch_size, input_names=names)
        quantize(
            reference, output, plan.quantization or "dynamic", batches, calibration_batches=plan.calibration_batches
        )
    if splits is None:
        output.with_name(output.name + ".precision.json").unlink(missing_ok=True)  # a report of an earlier file
        logger.info("wrote %s (%s); no precision report: pass --calibration_data for one", output, _label(plan))
        return None
    inputs, targets = _heldout(splits, names)
    targets = _scorable(reference, inputs, targets, task)
    report = precision_report(reference, output, inputs, targets, max_metric_change=plan.max_metric_change)
    logger.info("wrote %s (%s) from %s; precision report %s", output, _label(plan), reference, report.json_path)
    return report


def _label(plan: PrecisionPlan) -> str:
    return plan.precision if plan.precision != "int8" else f"int8-{plan.quantization}"


def _heldout(splits: Any, names: list[str]) -> tuple[Any, np.ndarray | None]:
    from mmsdk.export.calibration import heldout_arrays

    for split in ("val", "test"):
        dataset = getattr(splits, split)
        if dataset is not None and len(dataset) > 0:
            logger.debug("precision report on the %s split", split)
            return heldout_arrays(dataset, HELDOUT_ITEMS, input_names=names)
    logger.warning("calibration_data has no val or test split: the precision report compares on training data")
    return heldout_arrays(splits.train, HELDOUT_ITEMS, input_names=names)


def _scorable(reference: Path, inputs: Any, targets: np.ndarray | None, task: str | None) -> np.ndarray | None:
    """`targets` when the report can score the model's output against them, else None (output difference only)."""
    if targets is None or task not in _TARGET_TASKS:
        return None
    from mmsdk.export.runtime import OnnxModel

    model = OnnxModel(reference)
    first = {name: value[:1] for name, value in inputs.items()}
    output = model.run(first)[model.output_names[0]]
    if task == "classification":
        usable = targets.ndim == 1 and targets.dtype.kind in "iu"
    else:
        usable = targets.shape[1:] == output.shape[1:]
    if not usable:
        logger.info(
            "the data's targets %s do not fit the %s output %s: reporting the output difference",
            targets.shape,
            task,
            output.shape[1:],
        )
        return None
    return targets
