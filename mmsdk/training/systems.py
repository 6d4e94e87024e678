"""Lightning systems: masking policy, losses, metrics and optimizers around the models (which never compute losses).

- :class:`PretrainSystem`: masked (MAE/BERT) or causal pretraining of a :func:`~mmsdk.models.build_model` model.
- :class:`FinetuneSystem`: forecasting, classification or regression with a :class:`~mmsdk.models.TaskModel`,
  optionally starting from a pretrained backbone and optionally as a linear probe.

Both save their hyperparameters as plain dicts (so `load_from_checkpoint` rebuilds them), use AdamW with a
per-step warmup/cosine schedule, and store the torch RNG states in checkpoints so that a resumed run continues
bit-for-bit (masks come from generators seeded by the step, dropout from the restored global RNG).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from mmsdk.backbone import ModelConfig
from mmsdk.heads import HeadConfig
from mmsdk.losses import normalize_targets
from mmsdk.masking import MaskingConfig, apply_strategy
from mmsdk.models import TaskModel, build_model, build_task_model
from mmsdk.objectives import PretrainModel
from mmsdk.training.data import batch_size_of, split_batch
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

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self, self.optim_config)
        total = self.trainer.estimated_stepping_batches
        scheduler = build_scheduler(optimizer, self.optim_config, total)
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
    """Masked (MAE/BERT) or causal pretraining.

    Args:
        model: the model config (adapter, encoder, objective, decoder, norm_targets).
        masking: which tokens are hidden (ignored by the causal objective).
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
        self.model: PretrainModel = build_model(self.model_config)

    def _generator(self, device: torch.device, batch_idx: int, stage: str) -> torch.Generator:
        step = self.global_step if stage == "train" else 0
        return torch.Generator(device=device).manual_seed(mask_seed(self.seed, step, batch_idx, stage))

    def compute_loss(self, inputs: Any, generator: torch.Generator | None = None) -> Tensor:
        """Masks a batch of raw inputs (a Tensor, or what the adapter tokenizes, e.g. packed series), predicts the
        hidden targets and returns the scalar loss."""
        model, config = self.model, self.model_config
        tokens = model.tokenize(inputs)
        if config.norm_targets and tokens.targets is not None:
            tokens = tokens.replace(targets=normalize_targets(tokens.targets))
        b, n = tokens.batch_size, tokens.num_tokens
        mask = None
        if config.objective != "causal":
            mask = apply_strategy(
                self.masking,
                b,
                n,
                tokens.tokens.device,
                generator,
                padding_mask=tokens.padding_mask,
                group_ids=tokens.variate_ids,
                time_ids=tokens.time_ids,
                sample_ids=tokens.sample_ids,
            )
        out = model(tokens, mask)
        pred = out.pred.float()  # (B, N, P)
        if config.objective == "causal":
            return model.adapter.next_token_loss(pred, tokens)
        return model.adapter.reconstruction_loss(pred, tokens, out.hidden)

    def _shared_step(self, batch: Any, batch_idx: int, stage: str) -> Tensor:
        inputs, _ = split_batch(batch)
        loss = self.compute_loss(inputs, self._generator(inputs.device, batch_idx, stage))
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=True,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=batch_size_of(inputs),
            sync_dist=not on_step,
        )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "test")


class FinetuneSystem(_System):
    """Fine-tuning (or linear probing) of a task model.

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

    def forward(self, inputs: Tensor) -> Tensor:
        """Task outputs of raw inputs."""
        return self.model(inputs)

    def _predict(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(outputs, targets in the head's space) for a batch; same computation as `TaskModel.forward`."""
        model = self.model
        tokens = model.backbone.tokenize(inputs)
        outputs = model.predict(tokens)
        return outputs, model.adapter.task_target(self.head_config, targets, tokens)

    def _targets(self, batch: Any) -> tuple[Tensor, Tensor]:
        inputs, targets = split_batch(batch)
        if targets is None:
            raise ValueError(
                "FinetuneSystem needs (inputs, targets) batches; the data yielded inputs only "
                f"(task={self.head_config.task!r})"
            )
        return inputs, targets

    def _regression_errors(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(MSE, MAE) over finite targets only; NaN targets (missing values) are ignored."""
        outputs = outputs.float()
        if targets.dim() == 1 and outputs.shape == (len(targets), 1):
            targets = targets.unsqueeze(-1)  # (B,) regression targets for a single-output head
        if targets.shape != outputs.shape:
            raise ValueError(
                f"{self.head_config.task} targets have shape {tuple(targets.shape)} but the head predicts "
                f"{tuple(outputs.shape)}; check HeadConfig.num_outputs and the dataset's targets"
            )
        finite = torch.isfinite(targets)
        count = finite.sum().clamp_min(1)
        diff = torch.where(finite, outputs - torch.nan_to_num(targets.to(outputs.dtype)), torch.zeros_like(outputs))
        return (diff**2).sum() / count, diff.abs().sum() / count

    def _classification(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(cross-entropy, accuracy) for integer class ids (B,)."""
        if targets.is_floating_point() or targets.is_complex():
            raise ValueError(f"classification targets must be integer class ids, got dtype {targets.dtype}")
        targets = targets.reshape(-1).long()
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(f"got {targets.shape[0]} class targets for a batch of {logits.shape[0]} inputs")
        classes = logits.shape[-1]
        if targets.numel() and (targets.min() < 0 or targets.max() >= classes):
            raise ValueError(f"class ids must be in [0, {classes}), got values in [{targets.min()}, {targets.max()}]")
        logits = logits.float()
        return F.cross_entropy(logits, targets), (logits.argmax(-1) == targets).float().mean()

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        inputs, targets = self._targets(batch)
        outputs, targets = self._predict(inputs, targets)
        if self.head_config.task == "classification":
            loss, accuracy = self._classification(outputs, targets)
            metrics = {"loss": loss, "acc": accuracy}
        else:
            loss, mae = self._regression_errors(outputs, targets)
            metrics = {"loss": loss, "mse": loss, "mae": mae}
        train = stage == "train"
        if train:
            metrics = {"loss": loss}
        for name, value in metrics.items():
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name in ("loss", "acc"),
                on_step=train,
                on_epoch=not train,
                batch_size=inputs.shape[0],
                sync_dist=not train,
            )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")
