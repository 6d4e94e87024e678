"""The Python API: `pretrain(...)` and `finetune(...)` build the system, data and Trainer, and fit; no loop to write.

```python
result = mmsdk.pretrain(model_config, series_windows, trainer={"max_steps": 500})
mmsdk.save_pretrained(result.model, "pretrained/")
```
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from mmsdk.config import Config, require
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.models.config import ModelConfig
from mmsdk.training.checkpoints import GoodCheckpoint, SafeCheckpointIO, resolve_resume
from mmsdk.training.data import DataLike, DataModule
from mmsdk.training.guards import NonFiniteGuard
from mmsdk.training.optim import OptimConfig
from mmsdk.training.progress import StepProgressBar, quiet_lightning
from mmsdk.training.systems import FinetuneSystem, PretrainSystem

logger = logging.getLogger(__name__)

Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Stage = Literal["pretrain", "finetune"]
DEFAULT_ROOT_DIR = "runs"


@dataclass
class FSDPConfig(Config):
    """Settings of `strategy: fsdp` (Lightning's FSDPStrategy); the wrap unit is always the transformer block
    (`mmsdk.layers.block.Block`), so each block's parameters are gathered only while it runs."""

    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them (less memory, ~1/3 more
    compute)."""
    sharding: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD"
    """What is sharded: parameters, gradients and optimizer state (FULL_SHARD); gradients and optimizer state only
    (SHARD_GRAD_OP); nothing (NO_SHARD, DDP-like); FULL_SHARD within a machine and replicas across machines
    (HYBRID_SHARD)."""


@dataclass
class TrainerConfig(Config):
    """How to train: length, precision, devices, logging and checkpointing (a thin layer over Lightning)."""

    max_steps: int = -1
    """Optimizer steps to train for (-1: bounded by epochs)."""
    max_epochs: int | None = None
    """Epochs to train for (None: 10 when max_steps is -1, else unbounded; -1: unbounded)."""
    accumulate_grad_batches: int = 1
    """Micro-batches accumulated per optimizer step."""
    gradient_clip_val: float | None = 1.0
    """Clip the global gradient norm to this value (None or 0 disables clipping)."""
    precision: Precision = "auto"
    """auto (bf16-mixed on CUDA, 32-true otherwise), 32-true, bf16-mixed or 16-mixed."""
    accelerator: Accelerator = "auto"
    """Lightning accelerator: auto, cpu, gpu/cuda, mps."""
    devices: str | int | list[int] = "auto"
    """Number of devices (>= 1, or -1 for all), device indices ([0, 1] or "0,1"), or auto."""
    strategy: str = "auto"
    """Lightning strategy name (auto, ddp, fsdp, ...), passed through unchanged."""
    fsdp: FSDPConfig | None = None
    """Settings of `strategy: fsdp` (None: the defaults); refused with any other strategy."""
    num_nodes: int = 1
    """Machines in a multi-node run (each runs `devices` processes); launched by torchrun or SLURM, which set the
    ranks (see the README's "Training on several machines")."""
    default_root_dir: str | None = None
    """Where logs and checkpoints go (`logs/`, `checkpoints/`); None: the job's `output_dir` on the command line,
    `runs` in the Python API."""
    log_every_n_steps: int = 10
    """Logging interval in optimizer steps."""
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    """Metrics logger."""
    progress_bar: bool = True
    """Show a (rich) progress bar."""
    checkpoint_every_n_steps: int | None = None
    """Save a checkpoint (and `last.ckpt`) every n optimizer steps; None: one checkpoint at each epoch end."""
    keep_checkpoints: int = 2
    """How many of the newest periodic checkpoints to keep besides `last.ckpt` (an old one is deleted only after
    its successor is written and verified)."""
    keep_all_checkpoints: bool = False
    """Keep every periodic checkpoint (overrides `keep_checkpoints`)."""
    max_nonfinite_steps: int | None = 10
    """Optimizer steps with a NaN/Inf loss or gradient are skipped (and counted in `train/nonfinite_steps`); this
    many in a row stop training with an error naming the step, loss and learning rate. None: no guard."""
    select_best: str | None = None
    """Return the weights with the best value of this validation metric (e.g. val/mse) instead of the last ones:
    early-stopping-style model selection. Needs validation data."""
    select_mode: Literal["min", "max"] = "min"
    """Whether lower (min) or higher (max) values of `select_best` are better."""
    early_stopping_patience: int | None = None
    """Stop training after this many validation runs in a row without a strictly better `select_best` (PatchTST's
    early stopping). None: train to max_steps / max_epochs."""
    seed: int = 0
    """Seeds the global RNGs (model initialization, dropout), the data order and the masks."""
    deterministic: bool = False
    """Use deterministic algorithms only (slower; exact reruns on GPU)."""
    enable_model_summary: bool = False
    """Print Lightning's model summary at the start."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.max_steps == -1 or self.max_steps > 0, self, "max_steps", f"must be -1 or > 0, got {self.max_steps}"
        )
        require(
            self.max_epochs is None or self.max_epochs == -1 or self.max_epochs > 0,
            self,
            "max_epochs",
            f"must be None, -1 or > 0, got {self.max_epochs}",
        )
        require(
            self.accumulate_grad_batches >= 1,
            self,
            "accumulate_grad_batches",
            f"must be >= 1, got {self.accumulate_grad_batches}",
        )
        require(
            self.gradient_clip_val is None or self.gradient_clip_val >= 0,
            self,
            "gradient_clip_val",
            f"must be None or >= 0, got {self.gradient_clip_val}",
        )
        require(self.log_every_n_steps >= 1, self, "log_every_n_steps", f"must be >= 1, got {self.log_every_n_steps}")
        require(self.keep_checkpoints >= 1, self, "keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")
        require(
            self.max_nonfinite_steps is None or self.max_nonfinite_steps >= 1,
            self,
            "max_nonfinite_steps",
            f"must be None or >= 1, got {self.max_nonfinite_steps}",
        )
        patience = self.early_stopping_patience
        require(
            patience is None or (isinstance(patience, int) and patience >= 1),
            self,
            "early_stopping_patience",
            f"must be None or an int >= 1, got {patience!r}",
        )
        require(
            patience is None or self.select_best is not None,
            self,
            "early_stopping_patience",
            "needs select_best: the validation metric whose improvement it waits for",
        )
        self._check_devices()
        if isinstance(self.fsdp, dict):
            self.fsdp = FSDPConfig.from_dict(self.fsdp)
        require(
            self.fsdp is None or self.strategy == "fsdp",
            self,
            "fsdp",
            f"configures strategy fsdp, but strategy is {self.strategy!r}",
        )
        ok = isinstance(self.num_nodes, int) and not isinstance(self.num_nodes, bool) and self.num_nodes >= 1
        require(ok, self, "num_nodes", f"must be an int >= 1, got {self.num_nodes!r}")
        require(
            self.checkpoint_every_n_steps is None or self.checkpoint_every_n_steps >= 1,
            self,
            "checkpoint_every_n_steps",
            f"must be None or >= 1, got {self.checkpoint_every_n_steps}",
        )

    def _check_devices(self) -> None:
        devices = self.devices
        if isinstance(devices, list):
            valid = bool(devices) and all(d >= 0 for d in devices) and len(set(devices)) == len(devices)
            require(valid, self, "devices", f"a list must hold distinct device indices >= 0, got {devices}")
            return
        if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
            devices = int(devices)
        if isinstance(devices, int):
            require(devices >= 1 or devices == -1, self, "devices", f"must be >= 1, -1 (all) or auto, got {devices}")
            return
        ids = [part.strip() for part in devices.split(",") if part.strip()]
        valid = devices == "auto" or (ids and all(part.isdigit() for part in ids))
        require(bool(valid), self, "devices", f"must be a count, 'auto' or device indices like '0,1', got {devices!r}")

    @property
    def root_dir(self) -> str:
        """`default_root_dir`, or `runs` when unset."""
        return self.default_root_dir or DEFAULT_ROOT_DIR

    @property
    def resolved_max_epochs(self) -> int:
        """The epoch limit handed to Lightning."""
        if self.max_epochs is not None:
            return self.max_epochs
        return 10 if self.max_steps == -1 else -1

    def resolved_precision(self) -> str:
        """The concrete precision: "auto" becomes bf16-mixed (or 16-mixed) on CUDA and 32-true elsewhere."""
        if self.precision != "auto":
            return self.precision
        on_cuda = torch.cuda.is_available() and self.accelerator in ("auto", "gpu", "cuda")
        if not on_cuda:
            return "32-true"
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _logger(cfg: TrainerConfig) -> Any:
    if cfg.logger == "csv":
        return CSVLogger(cfg.root_dir, name="logs")
    if cfg.logger == "tensorboard":
        return TensorBoardLogger(cfg.root_dir, name="logs")
    return False


def _checkpointer(cfg: TrainerConfig, stage: Stage) -> GoodCheckpoint:
    """Periodic checkpoints in `<root>/checkpoints/<stage>`: the newest `keep_checkpoints` (by step) plus
    `last.ckpt`; a rerun in the same directory overwrites `last.ckpt` rather than adding `last-v1.ckpt`, and a
    fine-tuning run beside a pretraining one (same root) keeps its own."""
    return GoodCheckpoint(
        dirpath=str(Path(cfg.root_dir) / "checkpoints" / stage),
        filename="step={step}",
        auto_insert_metric_name=False,
        monitor="step",
        mode="max",
        every_n_train_steps=cfg.checkpoint_every_n_steps,
        save_last=True,
        save_top_k=-1 if cfg.keep_all_checkpoints else cfg.keep_checkpoints,
        enable_version_counter=False,
    )


class BestWeights(Callback):
    """Keeps an in-memory copy of the model weights at the best value of a validation metric."""

    def __init__(self, monitor: str, mode: Literal["min", "max"] = "min") -> None:
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ValueError(
                f"TrainerConfig.select_best={self.monitor!r} was not logged; logged: {sorted(trainer.callback_metrics)}"
            )
        value = float(value)
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.epoch = value, trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def restore(self, pl_module: L.LightningModule) -> None:
        """Loads the best weights back (no-op when validation never ran)."""
        if self.state is None:
            logger.warning("select_best=%s: no validation ran, keeping the last weights", self.monitor)
            return
        pl_module.load_state_dict(self.state)
        logger.info("restored the weights with the best %s = %.5f (epoch %s)", self.monitor, self.best, self.epoch)


def _restore_best(fit: L.Trainer, system: L.LightningModule) -> None:
    for callback in fit.callbacks:
        if isinstance(callback, BestWeights):
            callback.restore(system)


def _strategy(cfg: TrainerConfig) -> Any:
    """The Lightning strategy: the name as given, except fsdp, built with the transformer block as its wrap unit."""
    if cfg.strategy != "fsdp":
        return cfg.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    from mmsdk.layers.block import Block

    fsdp = cfg.fsdp or FSDPConfig()
    return FSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if fsdp.activation_checkpointing else None,
        sharding_strategy=fsdp.sharding,
        state_dict_type="full",
    )


def build_trainer(
    cfg: TrainerConfig | dict[str, Any] | None = None, callbacks: Sequence[Callback] = (), stage: Stage = "pretrain"
) -> L.Trainer:
    """A Lightning Trainer from a :class:`TrainerConfig` plus extra callbacks (checkpoints go to
    `<root>/checkpoints/<stage>`)."""
    cfg = TrainerConfig.from_dict(cfg)
    quiet_lightning()
    all_callbacks = list(callbacks)
    if cfg.select_best is not None:
        all_callbacks.append(BestWeights(cfg.select_best, cfg.select_mode))
    if cfg.early_stopping_patience is not None:
        stop = EarlyStopping(cfg.select_best, patience=cfg.early_stopping_patience, mode=cfg.select_mode)
        all_callbacks.append(stop)
    if not any(isinstance(c, ModelCheckpoint) for c in all_callbacks):
        all_callbacks.append(_checkpointer(cfg, stage))
    if cfg.max_nonfinite_steps is not None:
        all_callbacks.append(NonFiniteGuard(cfg.max_nonfinite_steps))
    if cfg.progress_bar:
        all_callbacks.append(StepProgressBar())
    if cfg.logger != "none":
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    clip = cfg.gradient_clip_val or None
    return L.Trainer(
        max_steps=cfg.max_steps,
        max_epochs=cfg.resolved_max_epochs,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=clip,
        precision=cfg.resolved_precision(),
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=_strategy(cfg),
        num_nodes=cfg.num_nodes,
        default_root_dir=cfg.root_dir,
        log_every_n_steps=cfg.log_every_n_steps,
        logger=_logger(cfg),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=cfg.enable_model_summary,
        deterministic=cfg.deterministic,
        callbacks=all_callbacks,
        plugins=[SafeCheckpointIO()],
    )


@dataclass
class TrainingResult:
    """What a training call returns.

    Attributes:
        model: the trained model (an nn.Module; save it with `mmsdk.save_pretrained`).
        system: the Lightning system that trained it.
        trainer: the Lightning Trainer (checkpoints, loggers).
        metrics: final `train/loss` and, when evaluated, `val/...` and `test/...` metrics as floats.
    """

    model: nn.Module
    system: L.LightningModule
    trainer: L.Trainer
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PretrainResult(TrainingResult):
    """The result of :func:`pretrain`; `model` is the pretraining model (backbone + decoder/head)."""


@dataclass
class FinetuneResult(TrainingResult):
    """The result of :func:`finetune`; `model` is the TaskModel. `load_report` says what a pretrained
    directory contributed (None without one)."""

    load_report: Any = None


def _datamodule(
    train_data: DataLike | L.LightningDataModule,
    val_data: DataLike | None,
    test_data: DataLike | None,
    batch_size: int,
    num_workers: int,
    seed: int,
) -> L.LightningDataModule:
    if isinstance(train_data, L.LightningDataModule):
        if val_data is not None or test_data is not None:
            raise ValueError("pass val/test data inside the LightningDataModule, not as separate arguments")
        return train_data
    return DataModule(train_data, val_data, test_data, batch_size=batch_size, num_workers=num_workers, seed=seed)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def _fit(
    system: L.LightningModule,
    data: L.LightningDataModule,
    cfg: TrainerConfig,
    callbacks: Sequence[Callback],
    ckpt_path: str | None,
    stage: Stage,
) -> tuple[L.Trainer, dict[str, float]]:
    """Trains `system`, restores the best weights when asked to, and returns the trainer and final metrics."""
    if ckpt_path is not None:
        ckpt_path = resolve_resume(ckpt_path, stage)
    fit = build_trainer(cfg, callbacks, stage)
    fit.fit(system, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    for callback in fit.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            logger.info(
                "early stopping after epoch %d: %s did not improve for %d validations",
                callback.stopped_epoch,
                callback.monitor,
                callback.patience,
            )
    _restore_best(fit, system)
    return fit, _scalars(fit.callback_metrics)


def pretrain(
    model: ModelConfig | dict[str, Any],
    train_data: DataLike | L.LightningDataModule,
    val_data: DataLike | None = None,
    masking: MaskingConfig | dict[str, Any] | None = None,
    optim: OptimConfig | dict[str, Any] | None = None,
    trainer: TrainerConfig | dict[str, Any] | None = None,
    batch_size: int = 32,
    ckpt_path: str | None = None,
    callbacks: Sequence[Callback] = (),
    num_workers: int = 0,
) -> PretrainResult:
    """Masked (MAE/BERT) or causal pretraining on unlabeled data.

    Args:
        model: the model config (dict or ModelConfig).
        train_data: a Dataset, Tensor/ndarray of inputs, `(inputs, targets)` (targets ignored), or a
            LightningDataModule (then `val_data` must be None).
        val_data: optional validation data (logs `val/loss` with fixed masks).
        masking: masking strategy and ratio.
        optim: optimizer and schedule.
        trainer: steps, precision, devices, logging, checkpoints, seed.
        batch_size: samples per batch (per device).
        ckpt_path: a checkpoint to resume from exactly, or a run directory (its newest good checkpoint).
        callbacks: extra Lightning callbacks.
        num_workers: data-loader worker processes.
    """
    cfg = TrainerConfig.from_dict(trainer)
    L.seed_everything(cfg.seed, verbose=False)
    data = _datamodule(train_data, val_data, None, batch_size, num_workers, cfg.seed)
    system = PretrainSystem(model, masking, optim, seed=cfg.seed)
    fit, metrics = _fit(system, data, cfg, callbacks, ckpt_path, "pretrain")
    logger.info("pretraining done after %d steps: %s", fit.global_step, metrics)
    return PretrainResult(system.model, system, fit, metrics)


def finetune(
    model: ModelConfig | dict[str, Any],
    head: HeadConfig | dict[str, Any],
    train_data: DataLike | L.LightningDataModule,
    val_data: DataLike | None = None,
    test_data: DataLike | None = None,
    pretrained: str | None = None,
    mode: Literal["full", "linear_probe"] = "full",
    optim: OptimConfig | dict[str, Any] | None = None,
    trainer: TrainerConfig | dict[str, Any] | None = None,
    batch_size: int = 32,
    ckpt_path: str | None = None,
    callbacks: Sequence[Callback] = (),
    num_workers: int = 0,
) -> FinetuneResult:
    """Fine-tunes (or linear-probes) a task model on `(inputs, targets)` data, then tests it if test data is given.

    Args:
        model: the model config; must match the pretrained one when `pretrained` is set.
        head: the task (forecast, classification, regression) and its head.
        train_data: `(inputs, targets)` as a tuple of arrays, a Dataset yielding pairs, or a LightningDataModule
            (then `val_data`/`test_data` must be None and its own test loader is used when it defines one).
        val_data: optional validation pairs (logs `val/mse`, `val/mae` or `val/acc`, `val/loss`).
        test_data: optional test pairs, evaluated after training with the final weights (the best ones with
            `TrainerConfig.select_best`).
        pretrained: a directory written by `save_pretrained` whose backbone weights initialize the model (and
            whose head does too when it is a task model with the same head config, e.g. a saved linear probe).
        mode: "full" or "linear_probe" (frozen backbone).
        optim: optimizer and schedule.
        trainer: steps, precision, devices, logging, checkpoints, seed.
        batch_size: samples per batch (per device).
        ckpt_path: a checkpoint to resume from exactly, or a run directory (its newest good checkpoint).
        callbacks: extra Lightning callbacks.
        num_workers: data-loader worker processes.
    """
    cfg = TrainerConfig.from_dict(trainer)
    L.seed_everything(cfg.seed, verbose=False)
    data = _datamodule(train_data, val_data, test_data, batch_size, num_workers, cfg.seed)
    system = FinetuneSystem(model, head, optim, pretrained=pretrained, mode=mode, seed=cfg.seed)
    fit, metrics = _fit(system, data, cfg, callbacks, ckpt_path, "finetune")
    has_test = test_data is not None or (
        not isinstance(data, DataModule) and type(data).test_dataloader is not L.LightningDataModule.test_dataloader
    )
    if has_test:
        for result in fit.test(system, datamodule=data, verbose=False):
            metrics.update(_scalars(result))
    logger.info("fine-tuning done after %d steps: %s", fit.global_step, metrics)
    return FinetuneResult(system.model, system, fit, metrics, load_report=system.load_report)
