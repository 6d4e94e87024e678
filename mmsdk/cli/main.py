"""The `mmsdk` command line: `pretrain`, `finetune`, `export`, `shard`, `push` and `demo`, driven by YAML recipes.

Every sub-command takes `--config recipe.yaml` (see `examples/recipes/`) and any field on the command line, e.g.
`mmsdk pretrain --config examples/recipes/timeseries/patchtst_pretrain.yaml --trainer.max_steps 50`.
Field docstrings of the config dataclasses are the `--help` text.

A mistake (a bad field, file, recipe or checkpoint) prints one line, `mmsdk: error: ...`, and exits with status 2;
`--verbose` (anywhere on the line) shows the traceback as well. Recipes and the command line configure values only:
a `class_path`/`init_args` entry, which would make the parser import a module, is refused before anything is parsed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal

from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.models.config import ModelConfig
from mmsdk.training.api import TrainerConfig
from mmsdk.training.optim import OptimConfig

logger = logging.getLogger("mmsdk")


def _rooted(trainer: TrainerConfig | None, output_dir: str) -> TrainerConfig:
    """The trainer config with its logs and checkpoints under the job's `output_dir` unless it names a root."""
    trainer = trainer or TrainerConfig()
    return trainer if trainer.default_root_dir is not None else trainer.replace(default_root_dir=output_dir)


def pretrain(
    model: ModelConfig,
    data: dict[str, Any],
    masking: MaskingConfig | None = None,
    optim: OptimConfig | None = None,
    trainer: TrainerConfig | None = None,
    output_dir: str = "runs/pretrain",
    resume: str | None = None,
    plot_every_n_steps: int | None = None,
) -> Path:
    """Masked (or causal) pretraining from a recipe; writes a pretrained model directory.

    Args:
        model: the model (modalities or adapter, encoder, objective).
        data: the data section, read by the data builder registered for the model's adapter (or named by its
            `builder` key); for time series: path, horizon, split, batch_size, ...
        masking: which tokens are hidden.
        optim: optimizer and learning-rate schedule.
        trainer: steps, precision, devices, strategy, logging.
        output_dir: the pretrained model is saved to `output_dir/model`.
        resume: a checkpoint to resume from exactly, or a run directory (e.g. the `output_dir` of the interrupted run:
            its newest good checkpoint is used, corrupt or truncated ones are skipped).
        plot_every_n_steps: plot masked-token reconstructions of one validation (or training) sample every n steps
            into `output_dir/plots` (None: no plots).
    """
    from mmsdk.contracts.data import build_data
    from mmsdk.hub import save_pretrained
    from mmsdk.training.api import pretrain as run
    from mmsdk.training.callbacks import ReconstructionPlotter

    splits = build_data(data, model, "pretrain")
    trainer = _rooted(trainer, output_dir)
    callbacks = []
    if plot_every_n_steps is not None:
        sample = (splits.val if splits.val is not None else splits.train)[0]
        sample = sample[0] if isinstance(sample, (tuple, list)) else sample
        one = {k: v.unsqueeze(0) for k, v in sample.items()} if isinstance(sample, dict) else sample.unsqueeze(0)
        callbacks.append(ReconstructionPlotter(one, Path(output_dir) / "plots", plot_every_n_steps))
    result = run(
        model,
        splits.train,
        splits.val,
        masking,
        optim,
        trainer,
        splits.batch_size,
        ckpt_path=resume,
        callbacks=callbacks,
    )
    target = Path(output_dir) / "model"
    if result.trainer.is_global_zero:  # one writer in a distributed run (the ranks hold the same weights)
        save_pretrained(result.model, target)
        logger.info("pretrained model saved to %s; metrics %s", target, result.metrics)
    return target


def finetune(
    model: ModelConfig,
    head: HeadConfig,
    data: dict[str, Any],
    pretrained: str | None = None,
    mode: Literal["full", "linear_probe"] = "full",
    optim: OptimConfig | None = None,
    trainer: TrainerConfig | None = None,
    output_dir: str = "runs/finetune",
    resume: str | None = None,
) -> Path:
    """Fine-tunes (or linear-probes) a task model, optionally from a pretrained directory, and tests it.

    Args:
        model: the model; must match the pretrained one.
        head: the task and its head.
        data: the adapter's data section.
        pretrained: a directory written by `mmsdk pretrain` (its `model/` folder), or by a linear probe with the
            same head, whose trained head is loaded too (LP-FT).
        mode: full fine-tuning or a linear probe (frozen backbone).
        optim: optimizer and schedule.
        trainer: steps, precision, devices, strategy, logging.
        output_dir: the task model is saved to `output_dir/model` and test metrics to `metrics.json`.
        resume: a checkpoint to resume from exactly, or a run directory (its newest good checkpoint).
    """
    from mmsdk.contracts.data import build_data
    from mmsdk.hub import save_pretrained
    from mmsdk.hub.integrity import atomic_write_text
    from mmsdk.training.api import finetune as run

    splits = build_data(data, model, "finetune")
    names = splits.info.get("class_names")
    if head.labels is None and names is not None and len(names) == head.num_outputs:
        head = head.replace(labels=tuple(names))  # saved with the model and exported into the ONNX metadata
    trainer = _rooted(trainer, output_dir)
    result = run(
        model,
        head,
        splits.train,
        splits.val,
        splits.test,
        pretrained=pretrained,
        mode=mode,
        optim=optim,
        trainer=trainer,
        batch_size=splits.batch_size,
        ckpt_path=resume,
    )
    target = Path(output_dir) / "model"
    if result.trainer.is_global_zero:  # one writer in a distributed run (the ranks hold the same weights)
        save_pretrained(result.model, target)
        atomic_write_text(Path(output_dir) / "metrics.json", json.dumps(result.metrics, indent=2, default=float))
        logger.info("task model saved to %s; metrics %s", target, result.metrics)
    return target


def export(
    model_dir: str,
    output: str,
    embedding: bool = False,
    modalities: list[str] | None = None,
    target: str | None = None,
    verify: bool = True,
    precision: Literal["fp32", "fp16", "int8"] = "fp32",
    quantization: Literal["dynamic", "static"] | None = None,
    calibration_data: str | None = None,
    calibration_batches: int = 16,
    max_metric_change: float | None = None,
    optimize: Literal["none", "onnxscript", "onnxruntime"] = "none",
) -> Path:
    """Exports a saved model to ONNX (dynamic batch, metadata inside) and verifies it with onnxruntime.

    With `--precision fp16` or `int8` the float32 graph goes to `<output stem>.fp32.onnx` beside `output` (the
    reference, kept), the converted copy to `output`, and, with `--calibration_data`, a precision report comparing
    them on held-out data to `<output>.precision.json`.

    Args:
        model_dir: a directory written by `save_pretrained` (`mmsdk pretrain`/`finetune` write `.../model`), or a
            Hub repository id ("org/name").
        output: the .onnx file to write.
        embedding: export the pooled encoder embedding instead of the task head.
        modalities: the modalities the graph reads, one input each: the embedding of any subset of a multimodal
            model, or the sources of a cross-modal predictor; None = every modality (every other one with `target`).
        target: export a cross-modal predictor of this modality (a model pretrained with `objective: 4m`), which
            outputs it in raw units (frames, a series, a log-mel spectrogram).
        verify: compare onnxruntime with eager PyTorch over several batch sizes (fails loudly on mismatch).
        precision: fp32 (the exported graph as is), fp16 (float16 weights and compute, float32 inputs and outputs)
            or int8 (int8 weights of MatMul/Gemm).
        quantization: for int8: "static" (activation ranges calibrated on the train split of `calibration_data`)
            or "dynamic" (ranges computed at run time); None = dynamic, which measured faster than static on CPU
            for every family at the same accuracy (`benchmarks/results/export.md`).
        calibration_data: a recipe YAML whose `data:` section describes your dataset, built against the saved
            model's config: static int8 calibrates on its train split, the precision report uses its val (else
            test) split.
        calibration_batches: how many train batches (of the recipe's batch size) static int8 calibrates on.
        max_metric_change: fail (exit status 2) when the converted model's task metric is worse than the float32
            one by more than this: relative MSE increase (forecast, regression), accuracy points lost
            (classification) or max absolute output difference (other outputs); None = report only.
        optimize: a verified graph rewrite of the float32 graph: "onnxscript" (generic clean-up) or "onnxruntime"
            (attention and layer-norm fusions into ONNX Runtime's own ops; the file then needs ONNX Runtime).
    """
    from mmsdk.cli.precision import PrecisionPlan, convert, read_calibration_data
    from mmsdk.export.onnx import to_onnx
    from mmsdk.hub import from_pretrained
    from mmsdk.models.any_to_any import CrossModalPredictor
    from mmsdk.models.embedding_model import EmbeddingModel

    plan = PrecisionPlan.resolve(precision, quantization, calibration_data, calibration_batches, max_metric_change)
    model = from_pretrained(model_dir)
    config = model.config
    if target is not None:
        sources = modalities or [name for name in model.backbone.names if name != target]
        model = CrossModalPredictor(model, sources, target)
    elif embedding or not hasattr(model, "head_config"):
        model = EmbeddingModel(model.backbone, modalities)
    task = model.head_config.task if hasattr(model, "head_config") else None
    splits = read_calibration_data(plan, config, "finetune" if task is not None else "pretrain")
    destination = Path(output)
    reference = plan.reference_path(destination)
    result = to_onnx(model, reference, verify=verify, optimize=optimize)
    logger.info("%s", result.summary())
    if plan.precision != "fp32":
        convert(plan, reference, destination, splits, task)
    return destination


def shard(
    model: ModelConfig,
    data: dict[str, Any],
    output: str,
    stage: Literal["pretrain", "finetune"] | None = None,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    head: HeadConfig | None = None,
    masking: MaskingConfig | None = None,
    optim: OptimConfig | None = None,
    trainer: TrainerConfig | None = None,
    output_dir: str | None = None,
    pretrained: str | None = None,
    mode: Literal["full", "linear_probe"] = "full",
    resume: str | None = None,
    plot_every_n_steps: int | None = None,
) -> Path:
    """Writes a recipe's datasets to shards that `mmsdk pretrain`/`finetune --data.shards DIR` stream.

    Takes the training recipe itself: its model and data sections say what to write; its other sections (head,
    masking, optim, trainer, output_dir, ...) are read and not used, except that a recipe with a `head` writes
    fine-tuning items (inputs, targets).

    Args:
        model: the model the data is built for (its adapters are recorded and checked when reading).
        data: the data section, as `pretrain`/`finetune` read it.
        output: the shard directory to write (new, empty, or with `--overwrite` earlier shards).
        stage: "pretrain" (inputs) or "finetune" (inputs and targets); None: finetune when the recipe has a head.
        chunk_bytes: the size of one chunk file.
        overwrite: replace the shards already in `output`.
        head: a fine-tuning recipe's head (not used, but it makes the default stage finetune).
        masking: not used (the recipe's own section).
        optim: not used.
        trainer: not used.
        output_dir: not used (the training job's directory; the shards go to `output`).
        pretrained: not used.
        mode: not used.
        resume: not used.
        plot_every_n_steps: not used.
    """
    from mmsdk.contracts.data import build_data
    from mmsdk.contracts.shards import write_shards

    stage = stage or ("finetune" if head is not None else "pretrain")
    splits = build_data({k: v for k, v in data.items() if k != "shards"}, model, stage)
    return write_shards(splits, output, model, stage, data, chunk_bytes=chunk_bytes, overwrite=overwrite)


def push(
    model_dir: str,
    repo_id: str,
    revision: str | None = None,
    data: str | None = None,
    private: bool | None = None,
) -> str:
    """Uploads a saved model to a Hugging Face Hub repository with a generated model card; prints the commit.

    Args:
        model_dir: a directory written by `save_pretrained` (`mmsdk pretrain`/`finetune` write `.../model`); the
            `metrics.json` that `mmsdk finetune` writes beside it goes into the card and the repository.
        repo_id: the repository, "org/name" (created if it does not exist).
        revision: the branch to commit to (created if new); None: main.
        data: a description of the training data, for the model card.
        private: the visibility of a repository this creates (None: the Hub's default).
    """
    from mmsdk.hub import from_pretrained, push_to_hub

    model = from_pretrained(model_dir)
    beside = Path(model_dir).parent / "metrics.json"
    metrics = json.loads(beside.read_text()) if beside.is_file() else None
    commit = push_to_hub(model, repo_id, revision=revision, metrics=metrics, data=data, private=private)
    logger.info("pushed %s to %s, commit %s (from_pretrained(..., revision=%r) pins it)", model_dir, repo_id, commit,
                commit)  # fmt: skip
    return commit


def demo(
    modality: str = "timeseries",
    output_dir: str | None = None,
    pretrain_steps: int | None = None,
    finetune_steps: int | None = None,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Pretrain → fine-tune → evaluate vs baselines → export ONNX → run it with onnxruntime → plots, on bundled data.

    Args:
        modality: which demo: timeseries (PatchTST forecasting on ETTh1), pointcloud (Point-MAE shape
            classification), audio (SSAST sound-event classification from raw waveforms) or video (VideoMAE on
            moving shapes with RGB + depth frames) or multimodal (one 4m model over a bouncing ball's video, sound and
            sensor series, predicting each from the others); see
            `mmsdk.demos.DEMOS.names()`.
        output_dir: where plots, models and summary.json go (default `outputs/demo_<modality>`).
        pretrain_steps: masked-pretraining steps (default: the demo's own).
        finetune_steps: fine-tuning steps (default: the demo's own).
        progress_bar: show progress bars.
    """
    from mmsdk.demos import run_demo

    overrides: dict[str, Any] = {"progress_bar": progress_bar, "output_dir": output_dir or f"outputs/demo_{modality}"}
    if pretrain_steps is not None:
        overrides["pretrain_steps"] = pretrain_steps
    if finetune_steps is not None:
        overrides["finetune_steps"] = finetune_steps
    return run_demo(modality, **overrides)


def main(args: list[str] | None = None) -> None:
    """Entry point of the `mmsdk` console script."""
    from mmsdk.cli.errors import run_guarded

    raw = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in raw
    raw = [arg for arg in raw if arg != "--verbose"]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxruntime.transformers.float16").setLevel(logging.WARNING)  # logs whole graph nodes
    run_guarded(lambda: _dispatch(raw), raw, verbose)


def _dispatch(args: list[str]) -> None:
    from jsonargparse import auto_cli, set_parsing_settings

    from mmsdk.cli.overrides import merge_nested_overrides

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    commands = {"pretrain": pretrain, "finetune": finetune, "export": export, "shard": shard, "push": push}
    commands["demo"] = demo
    auto_cli(
        commands,
        args=merge_nested_overrides(args, commands),
        as_positional=False,
        fail_untyped=True,
        exit_on_error=False,
    )


if __name__ == "__main__":
    main()
