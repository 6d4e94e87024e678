"""Lightning callbacks for pretraining: pictures of what the model reconstructs, as training goes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from mmsdk.contracts.losses import denormalize_like
from mmsdk.contracts.mask_strategies import MaskingConfig

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
    def plot(self, pl_module: L.LightningModule, step: int) -> list[Path]:
        """Draws the current weights' reconstructions, one picture per modality whose adapter draws one (for
        several modalities the files are `reconstruction_<modality>_step{N}.png`); returns the paths."""
        model = pl_module.model
        if not model.uses_mask:
            return []
        was_training = model.training
        model.eval()
        try:
            batch = model.tokenize(self._on(self.inputs, pl_module.device))
            masking = self.masking or getattr(pl_module, "masking", None) or MaskingConfig()
            generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            mask = model.draw_mask(batch, masking, generator)
            preds = model(batch, mask).preds
            parts, slices = model.backbone.parts(batch), model.backbone.slices(batch)
            paths = []
            for name, part in parts.items():
                pred = preds[name]
                if model.config.norm_targets and part.targets is not None:  # trained on per-token normalized targets
                    pred = denormalize_like(pred.float(), part.targets.float())  # back to data units
                stem = "reconstruction" if len(parts) == 1 else f"reconstruction_{name}"
                target = mask.part(slices[name])
                path = model.backbone.adapters[name].plot_reconstruction(
                    part, pred, target, self.directory / f"{stem}_step{step:06d}.png"
                )
                if path is not None:
                    paths.append(path)
                    logger.info("reconstruction plot: %s", path)
        finally:
            model.train(was_training)
        self.paths.extend(paths)
        return paths

    @staticmethod
    def _on(inputs: object, device: torch.device) -> object:
        """Raw inputs (a tensor or a mapping of modality tensors) on `device`."""
        if isinstance(inputs, Mapping):
            return {name: value.to(device) for name, value in inputs.items()}
        return inputs.to(device)  # type: ignore[attr-defined]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step > 0 and step % self.every == 0 and step != self._last_step:
            self._last_step = step
            self.plot(pl_module, step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.global_step != self._last_step:
            self.plot(pl_module, trainer.global_step)
