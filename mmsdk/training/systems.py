"""Lightning systems: the loop, optimizers, logging and seeding around the models (models never compute losses).

- :class:`PretrainSystem`: pretraining with any registered objective; the objective draws the mask, predicts and
  returns named loss terms, which the system sums and logs (`train/loss`, `train/loss/<term>`).
- :class:`FinetuneSystem`: any registered task (forecast, classification, regression, multilabel, ...) with a
  :class:`~mmsdk.models.TaskModel`, optionally from a pretrained backbone and optionally as a linear probe; the
  task gives the loss and metrics.

Both save their hyperparameters as plain dicts (so `load_from_checkpoint` rebuilds them), use AdamW with a
per-step warmup/cosine schedule, and store the torch RNG states in checkpoints so that a resumed run continues
bit-for-bit (masks come from generators seeded by the step, dropout from the restored global RNG).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.hub.integrity import first_nonfinite, nonfinite_summary
from mmsdk.models.build import build_model, build_task_model
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives.base import Objective, ObjectiveOutput
from mmsdk.models.task_model import TaskModel
from mmsdk.training.checkpoints import load_checkpoint
from mmsdk.training.data import batch_device, batch_size_of, split_batch
from mmsdk.training.guards import TrainingDivergedError, divergence_message
from mmsdk.training.optim import OptimConfig, build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

_STAGE_CODES = {"train": 0, "val": 1, "test": 2}
_RNG_KEY = "mmsdk_rng_state"
Mode = Literal["full", "linear_probe"]


def mask_seed(seed: int, step: int, batch_idx: int, stage: str) -> int:
    """A 63-bit generator seed that is a pure function of (seed, step, batch index, stage)."""
    value = seed & 0xFFFFFFFF
    for part in (step, batch_idx, _STAGE_CODES[stage]):
        value = (value * 1_000_003 + part) % (2**63 - 1)
    return value


class _System(L.LightningModule):
    """Shared parts: optimizer + schedule, and RNG state in checkpoints."""

    def __init__(self, optim: OptimConfig | dict[str, Any] | None, seed: int) -> None:
        super().__init__()
        self.optim_config = OptimConfig.from_dict(optim)
        self.seed = seed
        self._rng_to_restore: dict[str, Any] | None = None
        self.last_loss: Tensor | None = None  # read by the non-finite guard before each optimizer step

    def _train_step(self, step: Callable[[], Tensor]) -> Tensor:
        """Runs one training step and keeps its loss; a step that fails because the weights themselves stopped
        being finite (e.g. a learning rate that overflowed them) is reported as divergence, not as bad data."""
        try:
            loss = step()
        except ValueError as error:
            state = self.state_dict()
            bad = first_nonfinite(state)
            if bad is None:
                raise
            what = f"the weights are not finite ({nonfinite_summary(bad, state[bad])})"
            raise TrainingDivergedError(divergence_message(self.trainer, what, None)) from error
        self.last_loss = loss.detach()
        return loss

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str, map_location: Any = "cpu", strict: bool = True, **overrides: Any
    ) -> _System:
        """Rebuilds the system from a training checkpoint, safely (`weights_only` loading with checksum and
        finiteness checks; see :mod:`mmsdk.training.checkpoints`). A fine-tuning system does not reload its
        `pretrained` directory: the checkpoint's weights replace it.

        Args:
            checkpoint_path: a `.ckpt` written by an mmsdk Trainer.
            map_location: where tensors are loaded (cpu by default).
            strict: require the checkpoint's keys to match the system's exactly.
            **overrides: hyperparameters to replace (e.g. `optim`).
        """
        checkpoint = load_checkpoint(checkpoint_path, map_location=map_location)
        hparams = {**checkpoint.get("hyper_parameters", {}), **overrides}
        if "pretrained" in hparams:
            hparams["pretrained"] = None
        system = cls(**hparams)
        system.load_state_dict(checkpoint["state_dict"], strict=strict)
        return system

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self, self.optim_config)
        total = self.trainer.estimated_stepping_batches  # also counts the training batches of an epoch
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches) and self.optim_config.schedule == "epoch_decay":
            self.trainer.fit_loop.setup_data()  # a run bounded by max_steps has not counted its batches yet
            batches = self.trainer.num_training_batches  # still inf for an iterable dataset
        per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches) if math.isfinite(batches) else None
        scheduler = build_scheduler(optimizer, self.optim_config, total, steps_per_epoch=per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[_RNG_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # applied in on_train_start: restoring happens before data loaders, sanity checks etc. are set up
        self._rng_to_restore = checkpoint.get(_RNG_KEY)

    def on_train_start(self) -> None:
        state, self._rng_to_restore = self._rng_to_restore, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        cuda_states = state.get("cuda")
        if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        logger.debug("restored the RNG state of the checkpoint")


class PretrainSystem(_System):
    """Pretraining with the model config's objective.

    Args:
        model: the model config (modalities, encoder, objective, decoder, norm_targets).
        masking: which tokens are hidden (ignored by objectives without a mask, e.g. causal).
        optim: optimizer and schedule.
        seed: seeds the masks: the mask of a batch is a function of (seed, global step, batch index, stage),
            never of the global RNG; validation masks do not depend on the step, so val/loss is comparable
            across the run.
    """

    def __init__(
        self,
        model: ModelConfig | dict[str, Any],
        masking: MaskingConfig | dict[str, Any] | None = None,
        optim: OptimConfig | dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(optim, seed)
        self.model_config = ModelConfig.from_dict(model)
        self.masking = MaskingConfig.from_dict(masking)
        self.save_hyperparameters(
            {
                "model": self.model_config.to_dict(),
                "masking": self.masking.to_dict(),
                "optim": self.optim_config.to_dict(),
                "seed": seed,
            }
        )
        self.model: Objective = build_model(self.model_config)

    def _generator(self, device: torch.device, batch_idx: int, stage: str) -> torch.Generator:
        step = self.global_step if stage == "train" else 0
        return torch.Generator(device=device).manual_seed(mask_seed(self.seed, step, batch_idx, stage))

    def compute_step(self, inputs: Any, generator: torch.Generator | None = None) -> ObjectiveOutput:
        """One objective step on a batch of raw inputs (a Tensor, a mapping of modalities, or what the adapter
        tokenizes, e.g. packed series): named loss terms and what they were computed from."""
        return self.model.step(inputs, self.masking, generator)

    def compute_loss(self, inputs: Any, generator: torch.Generator | None = None) -> Tensor:
        """The scalar loss of :meth:`compute_step`."""
        return self.compute_step(inputs, generator).loss

    def _shared_step(self, batch: Any, batch_idx: int, stage: str) -> Tensor:
        inputs, _ = split_batch(batch)
        out = self.compute_step(inputs, self._generator(batch_device(inputs), batch_idx, stage))
        loss = out.loss
        on_step = stage == "train"
        kwargs = {"on_step": on_step, "on_epoch": not on_step, "batch_size": batch_size_of(inputs)}
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=not on_step, **kwargs)
        for term, value in out.terms.items():
            self.log(f"{stage}/loss/{term}", value, sync_dist=not on_step, **kwargs)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._train_step(lambda: self._shared_step(batch, batch_idx, "train"))

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "test")


class FinetuneSystem(_System):
    """Fine-tuning (or linear probing) of a task model.

    The task (`HeadConfig.task`, a registered :class:`~mmsdk.contracts.tasks.Task`) gives the loss and the
    metrics: per-batch ones logged at validation and test (`val/mse`, `val/acc`, ...), and epoch-level ones such
    as multilabel mean average precision (`val/map`).

    Args:
        model: the model config; must match the pretrained one.
        head: the task and its head.
        optim: optimizer and schedule.
        pretrained: a directory written by :func:`mmsdk.hub.save_pretrained`; its backbone weights are loaded
            (decoder and pretraining head dropped, task head left at its initialization). A saved task model
            with the same head config also gives its head: fine-tuning a saved linear probe is LP-FT.
        mode: "full" trains everything; "linear_probe" freezes the backbone and trains the head only.
        seed: kept with the hyperparameters (the Trainer config seeds the global RNG).
    """

    def __init__(
        self,
        model: ModelConfig | dict[str, Any],
        head: HeadConfig | dict[str, Any],
        optim: OptimConfig | dict[str, Any] | None = None,
        pretrained: str | None = None,
        mode: Mode = "full",
        seed: int = 0,
    ) -> None:
        super().__init__(optim, seed)
        if mode not in ("full", "linear_probe"):
            raise ValueError(f"FinetuneSystem.mode={mode!r} is not one of 'full', 'linear_probe'")
        self.model_config = ModelConfig.from_dict(model)
        self.head_config = HeadConfig.from_dict(head)
        self.mode = mode
        self.save_hyperparameters(
            {
                "model": self.model_config.to_dict(),
                "head": self.head_config.to_dict(),
                "optim": self.optim_config.to_dict(),
                "pretrained": None if pretrained is None else str(pretrained),
                "mode": mode,
                "seed": seed,
            }
        )
        self.model: TaskModel = build_task_model(self.model_config, self.head_config)
        self.task = self.model.task
        self.epoch_metrics = nn.ModuleDict(
            {stage: nn.ModuleDict(self.task.epoch_metrics()) for stage in ("val", "test")}
        )
        self.load_report = None
        if pretrained is not None:
            from mmsdk.hub import load_backbone

            self.load_report = load_backbone(self.model, pretrained)
        if mode == "linear_probe":
            self.model.freeze_backbone()

    def train(self, mode: bool = True) -> FinetuneSystem:
        """Switches train/eval mode; a linear probe keeps its frozen backbone in eval mode all the time, so
        dropout, drop-path and BatchNorm running statistics behave as in the pretrained feature extractor."""
        super().train(mode)
        if self.mode == "linear_probe":
            self.model.backbone.eval()
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning keeps the module's own modes (it does not call `train()` when fitting starts)
        if self.mode == "linear_probe":
            self.model.backbone.eval()

    def forward(self, inputs: Any) -> Tensor:
        """Task outputs of raw inputs."""
        return self.model(inputs)

    def _predict(self, inputs: Any, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(outputs, targets in the head's space) for a batch; same computation as `TaskModel.forward`."""
        model = self.model
        tokens = model.backbone.tokenize(inputs)
        outputs = model.predict(tokens, inputs)
        part = model.backbone.parts(tokens)[model.modality]
        return outputs, model.head_adapter.task_target(self.head_config, targets, part)

    def _targets(self, batch: Any) -> tuple[Any, Tensor]:
        inputs, targets = split_batch(batch)
        if targets is None:
            raise ValueError(
                "FinetuneSystem needs (inputs, targets) batches; the data yielded inputs only "
                f"(task={self.head_config.task!r})"
            )
        return inputs, targets

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        inputs, targets = self._targets(batch)
        outputs, targets = self._predict(inputs, targets)
        loss, metrics = self.task.evaluate(outputs, targets)
        train = stage == "train"
        kwargs = {"on_step": train, "on_epoch": not train, "batch_size": batch_size_of(inputs), "sync_dist": not train}
        self.log(f"{stage}/loss", loss, prog_bar=True, **kwargs)
        if train:
            return loss
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == self.task.monitor[0], **kwargs)
        epoch_metrics = self.epoch_metrics[stage]  # (val and test) metrics that need the whole epoch, e.g. mAP
        if len(epoch_metrics):
            preds, labels = self.task.metric_inputs(outputs.detach(), targets)
            for name, metric in epoch_metrics.items():
                metric.update(preds, labels)
                self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._train_step(lambda: self._shared_step(batch, "train"))

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")
