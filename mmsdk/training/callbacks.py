"""Lightning callbacks for pretraining: pictures of what the model reconstructs, as training goes."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from mmsdk.losses import denormalize_like
from mmsdk.masking import MaskingConfig, apply_strategy

logger = logging.getLogger(__name__)


class ReconstructionPlotter(Callback):
    """Every `every_n_steps` optimizer steps (and at the end), plots the model's predictions of masked tokens for
    one fixed input and one fixed mask, using the adapter's `plot_reconstruction`.

    Args:
        inputs: raw inputs of one or a few samples (the first sequence is drawn), e.g. `dataset[0][None]`.
        directory: where `reconstruction_step{N}.png` files go.
        every_n_steps: plotting interval.
        masking: how the fixed mask is drawn (default: the system's own masking config).
        seed: seed of the fixed mask.
    """

    def __init__(
        self,
        inputs: Tensor,
        directory: str | Path,
        every_n_steps: int = 500,
        masking: MaskingConfig | None = None,
        seed: int = 0,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"ReconstructionPlotter.every_n_steps must be >= 1, got {every_n_steps}")
        self.inputs, self.directory, self.every = inputs, Path(directory), every_n_steps
        self.masking, self.seed = masking, seed
        self.paths: list[Path] = []
        self._last_step = -1  # with gradient accumulation several batches end at the same optimizer step

    @torch.no_grad()
    def plot(self, pl_module: L.LightningModule, step: int) -> Path | None:
        """Draws one picture for the current weights; returns its path (None if the adapter draws nothing)."""
        model = pl_module.model
        if model.config.objective == "causal":
            return None
        was_training = model.training
        model.eval()
        try:
            batch = model.tokenize(self.inputs.to(pl_module.device))
            masking = self.masking or getattr(pl_module, "masking", None) or MaskingConfig()
            generator = torch.Generator().manual_seed(self.seed)
            mask = apply_strategy(
                masking,
                batch.batch_size,
                batch.num_tokens,
                torch.device("cpu"),
                generator,
                padding_mask=None if batch.padding_mask is None else batch.padding_mask.cpu(),
                group_ids=None if batch.variate_ids is None else batch.variate_ids.cpu(),
                time_ids=None if batch.time_ids is None else batch.time_ids.cpu(),
                sample_ids=None if batch.sample_ids is None else batch.sample_ids.cpu(),
            )
            mask = type(mask)(*(t.to(pl_module.device) for t in (mask.ids_keep, mask.ids_restore, mask.mask)))
            out = model(batch, mask)
            pred = out.pred
            if model.config.norm_targets and batch.targets is not None:  # trained on per-token normalized targets
                pred = denormalize_like(pred.float(), batch.targets.float())  # back to data units for the picture
            path = model.adapter.plot_reconstruction(
                batch, pred, out.hidden, self.directory / f"reconstruction_step{step:06d}.png"
            )
        finally:
            model.train(was_training)
        if path is not None:
            self.paths.append(path)
            logger.info("reconstruction plot: %s", path)
        return path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step > 0 and step % self.every == 0 and step != self._last_step:
            self._last_step = step
            self.plot(pl_module, step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.global_step != self._last_step:
            self.plot(pl_module, trainer.global_step)
