"""VideoMAE tubes from raw frames: the video adapter, for any number of channels.

A (B, T, C, H, W) clip batch becomes tokens in four steps, all inside the model so that one ONNX graph runs from
raw frames:

    frames (B, T, C, H, W) in [0, 1] (uint8 is scaled by 1/255 once), NaN = no pixel
      → padded with NaN to whole tubes (time to a multiple of the tubelet, height and width of the patch)
      → (x − mean) / std per channel; missing pixels become 0 (the channel mean)
      → tubes (B, N, t·p·p·C), time-major (t, h, w), each flattened (t, p, p, C) as VideoMAE does
      → a linear tube embedding (B, N, D), equal to VideoMAE's Conv3d with stride = kernel

The size rule, the same in training, evaluation and the exported graph: frame counts the tubelet does not divide
and frame sizes the patch does not divide are padded at the end of time, the bottom and the right with missing
pixels. A tube with no real pixel is a padding token; missing pixels inside a real tube read as the channel mean
and are left out of the loss (`target_mask`). So a clip shorter than one tubelet is one padded tube deep, and clips
of different sizes can share a batch when the smaller ones are NaN-padded (`collate_clips` does that).

Positions are the tube's (time, height, width) grid index. `sincos` embeds them directly for any grid; `learned`
keeps a table over the grid of `num_frames` × `frame_size` and reads it by trilinear interpolation at other frame
counts and sizes (the grid is rescaled onto the table, as `F.interpolate(align_corners=False)` would), so a model
pretrained on 16 × 112 × 112 clips fine-tunes and exports at 8 × 96 × 128. Tokens carry `time_ids` (the tube's time
step), so the causal objective runs frame-causally and predicts each tube from the previous frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.config import Config, require
from mmsdk.contracts.adapter import (
    DEFAULT_MAX_ABS_INPUT,
    Adapter,
    ExportSpec,
    LossTerms,
    check_magnitude,
    reject_values,
)
from mmsdk.contracts.heads import HeadConfig, TokenPooledHead
from mmsdk.contracts.losses import masked_mse
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.positions import InterpolatedPositions, SinCosPositions
from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1]: VideoMAE's normalization and the default for 3 channels."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""
TUBE_EPS = 1e-6
"""Added to a tube's standard deviation when its targets are normalized (VideoMAE's norm_pix_loss)."""


@dataclass
class VideoMAEConfig(Config):
    """Channels, clip geometry, tubes, positions and targets of the video adapter."""

    channels: int = 3
    """Input channels C: 3 for RGB, 1 for grayscale or depth, any count for multispectral or RGB + depth + thermal."""
    num_frames: int = 16
    """Frames per clip the model is built for: the time extent of a learned position table, and the clip length
    recipes read. Other frame counts work (positions adapt)."""
    frame_size: int | tuple[int, int] = (224, 224)
    """(height, width) of the frames the model is built for (one number = square frames); other sizes work
    (positions adapt)."""
    tubelet: int = 2
    """Frames per tube (t)."""
    patch: int = 16
    """Pixels per tube side (p): tubes are t × p × p."""
    positions: Literal["sincos", "learned"] = "sincos"
    """sincos: fixed 3-D sin-cos of the (time, height, width) tube index, for any grid; learned: a table over the
    grid of `num_frames` × `frame_size`, read by trilinear interpolation on other grids (converted Hugging Face
    checkpoints hold their fixed table here)."""
    mean: tuple[float, ...] | None = None
    """Per-channel mean of the [0, 1] input; None = ImageNet's for 3 channels, 0.5 otherwise."""
    std: tuple[float, ...] | None = None
    """Per-channel standard deviation of the [0, 1] input; None = ImageNet's for 3 channels, 0.25 otherwise."""
    target_norm: Literal["tube", "none"] = "tube"
    """tube: targets are each tube's pixels normalized per channel (VideoMAE's norm_pix_loss); none: raw [0, 1]."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.channels >= 1, self, "channels", f"must be >= 1, got {self.channels}")
        size = (self.frame_size, self.frame_size) if isinstance(self.frame_size, int) else self.frame_size
        self.frame_size = tuple(int(s) for s in size)  # type: ignore[assignment]
        require(len(self.frame_size) == 2, self, "frame_size", f"must be (height, width), got {self.frame_size}")
        require(self.tubelet >= 1, self, "tubelet", f"must be >= 1, got {self.tubelet}")
        require(self.patch >= 1, self, "patch", f"must be >= 1, got {self.patch}")
        require(self.num_frames >= 1, self, "num_frames", f"must be >= 1, got {self.num_frames}")
        require(min(self.frame_size) >= 1, self, "frame_size", f"must be positive, got {self.frame_size}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(float(v) for v in value)
            setattr(self, name, value)
            require(
                len(value) == self.channels,
                self,
                name,
                f"has {len(value)} values but channels={self.channels} (one per channel)",
            )
        require(self.std is None or min(self.std) > 0, self, "std", f"must be > 0, got {self.std}")

    @property
    def channel_mean(self) -> tuple[float, ...]:
        """The per-channel mean actually used."""
        if self.mean is not None:
            return self.mean
        return IMAGENET_MEAN if self.channels == 3 else (0.5,) * self.channels

    @property
    def channel_std(self) -> tuple[float, ...]:
        """The per-channel standard deviation actually used."""
        if self.std is not None:
            return self.std
        return IMAGENET_STD if self.channels == 3 else (0.25,) * self.channels

    @property
    def tube_dim(self) -> int:
        """P = t·p·p·C: values per tube."""
        return self.tubelet * self.patch * self.patch * self.channels

    def grid_for(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') tubes of a clip, after padding to whole tubes."""
        t, p = self.tubelet, self.patch
        # ceil division written with non-negative operands: the ONNX exporter turns floor division of negative
        # symbolic sizes into truncating division
        return ((frames + t - 1) // t, (height + p - 1) // p, (width + p - 1) // p)

    @property
    def table_grid(self) -> tuple[int, int, int]:
        """The tube grid of `num_frames` × `frame_size` (the learned table's size)."""
        return self.grid_for(self.num_frames, *self.frame_size)


def check_frames(frames: object, config: VideoMAEConfig, max_abs: float = DEFAULT_MAX_ABS_INPUT) -> None:
    """Checks a (B, T, C, H, W) clip batch (eager mode only; values cannot be checked while tracing).

    Raises:
        ValueError: for a non-tensor, a wrong rank, layout or dtype, a channel count other than the model's, an
            empty batch or clip, Inf values, values beyond ±max_abs, or a clip without a single real pixel.
    """
    if not isinstance(frames, Tensor):
        raise ValueError(
            f"video: frames must be a torch.Tensor (B, T, C, H, W), got {type(frames).__name__}; convert arrays "
            "with mmsdk.adapters.video.to_clips"
        )
    shape = tuple(frames.shape)
    if frames.dim() != 5:
        hint = (
            " (one clip: add a batch dimension, or use to_clips for (T, H, W, C) arrays)" if frames.dim() == 4 else ""
        )
        raise ValueError(f"video: frames must be (B, T, C, H, W), got shape {shape}{hint}")
    if not (frames.is_floating_point() or frames.dtype == torch.uint8):
        raise ValueError(f"video: frames must be float in [0, 1] or uint8, got dtype {frames.dtype}")
    c = shape[2]
    if c != config.channels:
        hint = ""
        if c == 4 and config.channels == 3:
            hint = "; drop the alpha channel (frames[:, :, :3])"
        elif c == 1 and config.channels == 3:
            hint = "; repeat the gray channel (frames.expand(-1, -1, 3, -1, -1)) or use a 1-channel model"
        elif c == 3 and config.channels == 1:
            hint = "; convert to gray (read_video(..., channels=1)) or use a 3-channel model"
        elif shape[-1] == config.channels:
            hint = "; the last axis looks like channels: (T, H, W, C) arrays go through to_clips"
        raise ValueError(f"video: frames have {c} channels (shape {shape}) but the model takes {config.channels}{hint}")
    if min(shape) == 0:
        raise ValueError(f"video: empty clip batch (shape {shape}): no frames or no pixels")
    if frames.is_floating_point():
        advice = "NaN marks missing pixels, Inf is never valid"
        reject_values(frames, torch.isinf(frames), "video: frames with Inf value(s)", advice)
        check_magnitude(frames, "video: frames", max_abs)
        real = ~torch.isnan(frames).flatten(1).all(dim=1)  # (B,)
        if not bool(real.all()):
            rows = (~real).nonzero().flatten().tolist()
            raise ValueError(f"video: clip(s) {rows[:5]} have no real pixel (all NaN)")


def to_tubes(x: Tensor, tubelet: int, patch: int) -> Tensor:
    """(B, T, C, H, W) with T, H, W whole tubes → (B, N, t·p·p·C), time-major, each tube flattened (t, p, p, C)."""
    b, t, c, h, w = x.shape
    x = x.reshape(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)  # (B, T', H', W', t, p, p, C)
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch * c)


def fold_tubes(tubes: Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> Tensor:
    """The inverse of :func:`to_tubes`: (B, N, t·p·p·C) on a (T', H', W') grid → (B, T'·t, C, H'·p, W'·p)."""
    b = tubes.shape[0]
    nt, nh, nw = grid
    c = tubes.shape[-1] // (tubelet * patch * patch)
    x = tubes.reshape(b, nt, nh, nw, tubelet, patch, patch, c)
    x = x.permute(0, 1, 4, 7, 2, 5, 3, 6)  # (B, T', t, C, H', p, W', p)
    return x.reshape(b, nt * tubelet, c, nh * patch, nw * patch)


def tube_grid_positions(grid: tuple[Any, Any, Any], table: tuple[int, int, int] | None, device: torch.device) -> Tensor:
    """(N, 3) float (time, height, width) coordinates of a time-major tube grid: the integer index, or, with a
    `table` grid, the index rescaled onto the table (pixel centres aligned, edges clamped by the lookup)."""
    axes = []
    for axis, n in enumerate(grid):
        index = torch.arange(n, device=device, dtype=torch.float32)
        if table is not None:
            index = (index + 0.5) * table[axis] / n - 0.5
        axes.append(index)
    coords = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(coords, dim=-1).reshape(-1, 3)


def tube_statistics(values: Tensor, observed: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """Per-tube, per-channel mean and unbiased standard deviation over observed values.

    Args:
        values: (B, N, t·p·p·C) tube values, flattened (t, p, p, C).
        observed: (B, N, t·p·p·C) bool.

    Returns:
        mean and std, each (B, N, 1, C).
    """
    b, n, _ = values.shape
    v = values.reshape(b, n, -1, channels)  # (B, N, t·p·p, C)
    o = observed.reshape(b, n, -1, channels).to(values.dtype)
    count = o.sum(dim=2, keepdim=True)  # (B, N, 1, C)
    mean = (v * o).sum(dim=2, keepdim=True) / count.clamp_min(1.0)
    var = ((v - mean) ** 2 * o).sum(dim=2, keepdim=True) / (count - 1).clamp_min(1.0)
    return mean, var.sqrt()


class VideoHead(TokenPooledHead):
    """VideoMAE's fine-tuning head: mean over real tubes (or the class token) → LayerNorm → dropout → linear."""


class VideoMAEAdapter(Adapter):
    """VideoMAE / MAE-ST video tubes: frames (B, T, C, H, W) → tube tokens (B, N, D).

    Positions: (B, N, 3) (time, height, width) tube coordinates. Targets: (B, N, t·p·p·C) tube pixels, normalized
    per tube and channel by default. Context: the padded [0, 1] frames (B, T, C, H, W) with NaN for missing pixels,
    and each tube's per-channel mean and std (B, N, 1, C) to undo the target normalization.
    """

    name = "videomae"
    config_class = VideoMAEConfig
    tasks = ("classification", "multilabel", "regression")
    free_fields = ("target_norm",)
    nonfinite_policy = "nan_as_missing"
    config: VideoMAEConfig

    def __init__(self, config: VideoMAEConfig, dim: int) -> None:
        super().__init__(config, dim)
        self.embed = nn.Linear(config.tube_dim, dim)  # a Conv3d with stride = kernel, on flattened tubes
        c = config.channels
        self.register_buffer("mean", torch.tensor(config.channel_mean).view(1, 1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.channel_std).view(1, 1, c, 1, 1), persistent=False)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {
            "channels": 4,
            "num_frames": 4,
            "frame_size": [16, 24],
            "tubelet": 2,
            "patch": 8,
            "positions": "learned",
        }

    @property
    def target_dim(self) -> int:
        return self.config.tube_dim

    def frames(self, inputs: Tensor) -> Tensor:
        """Checked float frames in [0, 1] padded with NaN to whole tubes (B, T', C, H', W')."""
        cfg = self.config
        if not is_tracing():
            check_frames(inputs, cfg, self.max_abs_input)
        x = inputs.float() / 255.0 if inputs.dtype == torch.uint8 else inputs.float()
        t, h, w = x.shape[1], x.shape[3], x.shape[4]
        nt, nh, nw = cfg.grid_for(t, h, w)
        pad = (0, nw * cfg.patch - w, 0, nh * cfg.patch - h, 0, 0, 0, nt * cfg.tubelet - t)
        return F.pad(x, pad, value=float("nan"))  # (B, T', C, H', W')

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        cfg = self.config
        x = self.frames(inputs)  # (B, T, C, H, W) with NaN = missing
        b, t, c, h, w = x.shape
        grid = (t // cfg.tubelet, h // cfg.patch, w // cfg.patch)
        observed = ~torch.isnan(x)
        raw = torch.where(observed, x, torch.zeros_like(x))
        normalized = torch.where(observed, (x - self.mean) / self.std, torch.zeros_like(x))
        tubes = to_tubes(normalized, cfg.tubelet, cfg.patch)  # (B, N, P)
        raw_tubes = to_tubes(raw, cfg.tubelet, cfg.patch)
        seen = to_tubes(observed, cfg.tubelet, cfg.patch)  # (B, N, P) bool
        mean, std = tube_statistics(raw_tubes, seen, c)  # (B, N, 1, C)
        if cfg.target_norm == "tube":
            n = raw_tubes.shape[1]
            targets = ((raw_tubes.reshape(b, n, -1, c) - mean) / (std + TUBE_EPS)).reshape(b, n, -1)
            targets = torch.where(seen, targets, torch.zeros_like(targets))
        else:
            targets = raw_tubes
        padding: Tensor | None = seen.any(dim=-1)  # (B, N)
        target_mask: Tensor | None = seen
        if not is_tracing() and bool(seen.all()):
            padding, target_mask = None, None  # nothing missing: the fastest attention and loss paths
        table = cfg.table_grid if cfg.positions == "learned" else None
        positions = tube_grid_positions(grid, table, x.device)  # (N, 3)
        time_ids = torch.arange(positions.shape[0], device=x.device) // (grid[1] * grid[2])  # (N,) time step
        return TokenBatch(
            tokens=self.embed(tubes),  # (B, N, D)
            positions=positions.expand(b, -1, -1),
            padding_mask=padding,
            time_ids=time_ids.expand(b, -1),
            clip_time=((time_ids.float() + 0.5) / grid[0]).expand(b, -1),  # the tube's centre in the clip
            targets=targets,
            target_mask=target_mask,
            context={"frames": x, "tube_mean": mean, "tube_std": std},
        )

    def build_positions(self, dim: int) -> nn.Module | None:
        if self.config.positions == "sincos":
            return SinCosPositions(dim, ndim=3)
        return InterpolatedPositions(dim, self.config.table_grid)

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task not in self.tasks:
            raise ValueError(f"HeadConfig.task={head.task!r}: {self.name} supports {list(self.tasks)}")
        return VideoHead(head, dim)

    def next_token_loss(self, pred: Tensor, batch: TokenBatch) -> LossTerms:
        """MSE of the prediction at tube (t, h, w) against tube (t + 1, h, w): frame-causal next-tube prediction
        (tokens see every tube of their own and earlier time steps through `time_ids`).

        Raises:
            ValueError: for clips of a single tube in time (no next time step to predict).
        """
        if batch.targets is None or "frames" not in batch.context:
            raise ValueError("VideoMAEAdapter.next_token_loss needs a batch from VideoMAEAdapter.tokenize")
        _, t, _, h, w = batch.context["frames"].shape
        cfg = self.config
        if t // cfg.tubelet < 2:
            raise ValueError(
                f"video next-tube prediction needs at least 2 tubes in time, got clips of {t} frames with "
                f"tubelet={cfg.tubelet}"
            )
        s = (h // cfg.patch) * (w // cfg.patch)  # tubes per time step
        valid = torch.ones(pred.shape[0], pred.shape[1] - s, dtype=torch.bool, device=pred.device)
        if batch.padding_mask is not None:
            valid = batch.padding_mask[:, :-s] & batch.padding_mask[:, s:]
        value_mask = None if batch.target_mask is None else batch.target_mask[:, s:]
        return {"mse": masked_mse(pred[:, :-s], batch.targets[:, s:], valid, value_mask)}

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Predicted tubes (B, N, P) → frames (B, T, C, H, W) in [0, 1] units (the padded clip size), undoing the
        per-tube target normalization with each tube's statistics."""
        cfg = self.config
        x = batch.context["frames"]
        b, t, c, h, w = x.shape
        values = pred.float()
        if cfg.target_norm == "tube":
            n = values.shape[1]
            mean, std = batch.context["tube_mean"], batch.context["tube_std"]
            values = (values.reshape(b, n, -1, c) * (std + TUBE_EPS) + mean).reshape(b, n, -1)
        return fold_tubes(values, (t // cfg.tubelet, h // cfg.patch, w // cfg.patch), cfg.tubelet, cfg.patch)

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        """Frames of the first clip: the original, the masked input and the reconstruction (a PNG grid)."""
        from mmsdk.adapters.video.plots import plot_video_reconstruction

        if "frames" not in batch.context:
            return None
        p = self.target_dim
        if pred.shape[-1] < p:
            logger.warning("%s plot: predictions of width %d are not %d tube values", self.name, pred.shape[-1], p)
            return None
        cfg = self.config
        x = batch.context["frames"][:1]  # (1, T, C, H, W)
        _, t, _, h, w = x.shape
        grid = (t // cfg.tubelet, h // cfg.patch, w // cfg.patch)
        hidden = fold_tubes(target[:1, :, None].float().expand(-1, -1, p), grid, cfg.tubelet, cfg.patch)
        recon = self.decode(pred[:, :, :p].detach(), batch)[0]  # (T, C, H, W)
        return plot_video_reconstruction(
            x[0],
            hidden[0, :, 0] > 0.5,
            recon,
            path,
            title=f"{self.name} reconstruction: {int(target[0].sum())} of {target.shape[1]} tubes masked",
        )

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        cfg = self.config
        return example_clips(batch_size, cfg.num_frames, cfg.channels, cfg.frame_size, generator)

    def verification_inputs(self, generator: torch.Generator | None = None) -> list[Tensor]:
        """More frames at another size, a clip size the tubes do not divide, and a NaN-padded smaller clip."""
        cfg = self.config
        t, (h, w), c = cfg.num_frames, cfg.frame_size, cfg.channels
        other = example_clips(2, 2 * t, c, (h + cfg.patch, max(cfg.patch, w - cfg.patch)), generator)
        ragged = example_clips(3, t + 1, c, (h + cfg.patch // 2 + 1, w + 3), generator)
        padded = ragged.clone()
        padded[1, t - 1 :] = float("nan")
        padded[1, :, :, h // 2 :] = float("nan")
        return [other, ragged, padded]

    def export_spec(self) -> ExportSpec:
        cfg = self.config
        return ExportSpec(
            input_name="frames",
            dynamic_axes={0: "batch", 1: "frames", 3: "height", 4: "width"},
            output_names=("logits",),
            tolerance=1e-4,
            metadata={
                "input_layout": "(B, T, C, H, W) float32 in [0, 1]; NaN = missing pixel",
                "channels": str(cfg.channels),
                "num_frames": str(cfg.num_frames),
                "frame_size": f"{cfg.frame_size[0]}x{cfg.frame_size[1]}",
                "tube": f"{cfg.tubelet}x{cfg.patch}x{cfg.patch}",
                "mean": ",".join(f"{v:.6g}" for v in cfg.channel_mean),
                "std": ",".join(f"{v:.6g}" for v in cfg.channel_std),
            },
        )


def example_clips(
    batch_size: int, frames: int, channels: int, size: tuple[int, int], generator: torch.Generator | None
) -> Tensor:
    """Random test clips (B, T, C, H, W) in [0, 1]: a smooth moving pattern plus a little noise."""
    h, w = size
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1, 1)
    yy = torch.linspace(0, 1, h).view(1, 1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, 1, w)
    phase = torch.rand(batch_size, 1, channels, 1, 1, generator=generator) * 6.28  # (B, 1, C, 1, 1)
    speed = 0.2 + torch.rand(batch_size, 1, 1, 1, 1, generator=generator)
    wave = torch.sin(6 * xx + 4 * yy + speed * t + phase)  # (B, T, C, H, W)
    noise = 0.05 * torch.randn(batch_size, frames, channels, h, w, generator=generator)
    return (0.5 + 0.4 * wave + noise).clamp(0, 1)
