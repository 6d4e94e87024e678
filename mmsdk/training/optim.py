"""AdamW with decoupled weight decay on matrices only, and its learning-rate schedule (`schedules`).

The schedule is a multiplier of the base learning rate evaluated per *optimizer* step (not per micro-batch), so
it is unaffected by gradient accumulation and resumes exactly from a checkpoint (the scheduler's step counter is
part of Lightning's checkpoint).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mmsdk.config import Config, require
from mmsdk.layers.positions import LearnedPositions
from mmsdk.training.schedules import epoch_decay, one_cycle, warmup_cosine

logger = logging.getLogger(__name__)

# Parameters of these modules are scales/shifts or lookup tables: decaying them towards 0 only hurts.
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.RMSNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.Embedding,
    LearnedPositions,
)
_NO_DECAY_NAMES = ("mask_token", "cls_token", "pos_embed")


@dataclass
class OptimConfig(Config):
    """AdamW and its learning-rate schedule (by default linear warmup, then cosine decay to `min_lr_ratio * lr`)."""

    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    weight_decay: float = 0.05
    """Decoupled weight decay on weight matrices (never on biases, norms, position tables or mask tokens)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's moment coefficients (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW's denominator epsilon."""
    warmup_steps: int = 0
    """Optimizer steps of linear warmup (use this or `warmup_ratio`)."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of the total optimizer steps (use this or `warmup_steps`)."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the cosine decay, as a fraction of `lr`."""
    schedule: Literal["cosine", "onecycle", "epoch_decay"] = "cosine"
    """cosine: warmup, then cosine decay. onecycle: torch's OneCycleLR, rising from lr / 25 over the warmup (its
    `pct_start` is `warmup_ratio`) and falling to lr / 250 000. epoch_decay: warmup, then the learning rate of
    (0-based) epoch e is lr · decay_gamma^max(0, e − decay_start_epoch) (PatchTST's ETTh1 schedule with 0.9, 3)."""
    decay_gamma: float = 0.9
    """epoch_decay: the factor applied once per epoch."""
    decay_start_epoch: int = 3
    """epoch_decay: the last epoch at the full learning rate."""
    layer_decay: float = 1.0
    """Layer-wise learning-rate decay (BEiT/MAE fine-tuning; VideoMAE uses 0.75): in an encoder of L blocks, block i
    (0-based) trains at lr · decay^(L − i), the embeddings and positions at lr · decay^(L + 1), the final norm and
    the heads at lr. 1.0 = one learning rate for everything."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.betas = tuple(self.betas)  # YAML/JSON give lists
        require(self.lr > 0, self, "lr", f"must be positive, got {self.lr}")
        require(self.weight_decay >= 0, self, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            self,
            "betas",
            f"must be two values in [0, 1), got {self.betas}",
        )
        require(self.eps > 0, self, "eps", f"must be positive, got {self.eps}")
        require(
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            self,
            "warmup_steps",
            f"must be an int >= 0, got {self.warmup_steps!r}",
        )
        require(0.0 <= self.warmup_ratio < 1.0, self, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        require(
            not (self.warmup_steps > 0 and self.warmup_ratio > 0),
            self,
            "warmup_ratio",
            f"set warmup_steps ({self.warmup_steps}) or warmup_ratio ({self.warmup_ratio}), not both",
        )
        require(0.0 <= self.min_lr_ratio <= 1.0, self, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        require(0.0 < self.layer_decay <= 1.0, self, "layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        schedules = ("cosine", "onecycle", "epoch_decay")
        require(self.schedule in schedules, self, "schedule", f"must be one of {schedules}, got {self.schedule!r}")
        require(0.0 < self.decay_gamma <= 1.0, self, "decay_gamma", f"must be in (0, 1], got {self.decay_gamma}")
        require(
            isinstance(self.decay_start_epoch, int) and self.decay_start_epoch >= 0,
            self,
            "decay_start_epoch",
            f"must be an int >= 0, got {self.decay_start_epoch!r}",
        )

    def warmup_for(self, total_steps: int) -> int:
        """Warmup length in optimizer steps for a run of `total_steps` steps."""
        if self.warmup_steps > 0:
            return self.warmup_steps
        return round(self.warmup_ratio * total_steps)


def _no_decay(module: nn.Module, name: str, parameter: nn.Parameter) -> bool:
    """True for parameters that should not be weight-decayed: biases, 1-D tensors, norms, tables, mask tokens."""
    return (
        parameter.ndim < 2 or name.endswith("bias") or name in _NO_DECAY_NAMES or isinstance(module, _NO_DECAY_MODULES)
    )


def _owned_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Parameter]]:
    """(qualified name, owning module, parameter) for every distinct parameter (shared ones once)."""
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            yield (f"{module_name}.{name}" if module_name else name), module, parameter


_BLOCK = re.compile(r"(?:^|\.)backbone\.encoder\.blocks\.(\d+)\.")


def layer_of(name: str, depth: int) -> int:
    """Depth of a parameter for layer-wise decay: 0 for the backbone's embeddings and positions, i + 1 for encoder
    block i, depth + 1 for everything above the blocks (the final norm, heads, decoders)."""
    if match := _BLOCK.search(name):
        return int(match.group(1)) + 1
    if (name.startswith("backbone.") or ".backbone." in name) and ".encoder.norm." not in name:
        return 0
    return depth + 1


def parameter_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0, lr: float = 1.0) -> list[dict]:
    """Splits the trainable parameters of `model` into AdamW groups: decayed or not, and, with `layer_decay` < 1,
    by depth with learning rate `lr · layer_decay^(depth + 1 − layer)` (see :func:`layer_of`).

    Frozen parameters (`requires_grad=False`, e.g. a linear probe's backbone) are left out entirely, so the
    optimizer never touches them (not even through weight decay).
    """
    owned = [(n, m, p) for n, m, p in _owned_parameters(model) if p.requires_grad]
    depth = 1 + max((int(m.group(1)) for n, _, _ in owned if (m := _BLOCK.search(n))), default=-1)
    groups: dict[tuple[bool, int], dict] = {}
    for name, module, parameter in owned:
        decayed = not _no_decay(module, name.rsplit(".", 1)[-1], parameter)
        layer = layer_of(name, depth) if layer_decay < 1.0 else depth + 1
        group = groups.setdefault((decayed, layer), {"params": [], "weight_decay": weight_decay if decayed else 0.0})
        if layer_decay < 1.0:
            group["lr"] = lr * layer_decay ** (depth + 1 - layer)
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[1], not k[0]))]


FUSED_DEVICES = ("cpu", "cuda")
"""Device types of torch's fused AdamW kernel. Without it, AdamW on CPU runs one small op per parameter and
moment: 9.3 ms per step for the multimodal demo's 109 parameter tensors against 1.4 ms fused (AMD EPYC, 2 threads)."""


def fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused AdamW can update `params`: floating-point tensors, all on one device type that the
    fused kernel supports."""
    kinds = {p.device.type for p in params}
    return len(kinds) == 1 and kinds <= set(FUSED_DEVICES) and all(p.is_floating_point() for p in params)


def build_optimizer(model: nn.Module, config: OptimConfig | dict | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `model`, with torch's fused kernel where :func:`fusable` allows it.

    Raises:
        ValueError: if the model has no trainable parameter.
    """
    config = OptimConfig.from_dict(config)
    groups = parameter_groups(model, config.weight_decay, config.layer_decay, config.lr)
    params = [p for group in groups for p in group["params"]]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimize")
    kwargs = {"fused": True} if fusable(params) else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: OptimConfig,
    total_steps: int | float,
    steps_per_epoch: int | float | None = None,
) -> LambdaLR:
    """A LambdaLR following `config.schedule` (see :mod:`mmsdk.training.schedules`); step it once per optimizer
    step.

    Raises:
        ValueError: for `onecycle` over an unbounded run, or `epoch_decay` without a finite `steps_per_epoch`.
    """
    if math.isfinite(total_steps):
        total_steps = int(total_steps)
        warmup = config.warmup_for(total_steps)
    else:
        if config.schedule == "onecycle":
            raise ValueError("OptimConfig.schedule='onecycle' needs a bounded run: set max_steps or max_epochs")
        if config.schedule == "cosine":
            logger.warning("the number of training steps is unbounded: the learning rate stays constant after warmup")
        warmup = config.warmup_steps
    if math.isfinite(total_steps) and warmup >= total_steps > 0:
        logger.warning("warmup (%d steps) covers the whole run (%d steps)", warmup, total_steps)
    schedule: Callable[[int], float]
    if config.schedule == "onecycle":
        schedule = functools.partial(one_cycle, total=max(1, total_steps), warmup=warmup)
    elif config.schedule == "epoch_decay":
        if steps_per_epoch is None or not math.isfinite(steps_per_epoch) or steps_per_epoch < 1:
            raise ValueError(
                f"OptimConfig.schedule='epoch_decay' needs the steps per epoch, got {steps_per_epoch} "
                "(a dataset with a length)"
            )
        schedule = functools.partial(
            epoch_decay,
            steps_per_epoch=int(steps_per_epoch),
            gamma=config.decay_gamma,
            start_epoch=config.decay_start_epoch,
            warmup=warmup,
        )
    else:
        schedule = functools.partial(warmup_cosine, total=total_steps, warmup=warmup, min_ratio=config.min_lr_ratio)
    return LambdaLR(optimizer, schedule)
