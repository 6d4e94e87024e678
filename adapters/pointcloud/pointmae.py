"""Point-MAE adapter: point clouds as FPS + kNN groups embedded by a mini-PointNet, Chamfer reconstruction.

A raw cloud (B, N, C) (xyz first, optional extra channels) becomes S tokens: farthest point sampling picks S
group centers, each center's k nearest points form a group re-centred on it, and Point-MAE's mini-PointNet
(shared MLP → max-pool → concat global feature → shared MLP → max-pool) embeds each group to (D,). The centers are
the tokens' continuous positions (an MLP position embedding, Point-MAE's `pos_embed`); the re-centred group xyz
are the reconstruction targets, compared with predictions by the Chamfer distance on hidden groups only.

Everything (FPS, kNN, grouping) is pure torch, so exported ONNX graphs run from raw points. The recipe `data:`
builder (`recipe_data`, registered for "pointmae") serves the bundled shapes or a folder of your files, the
`point_block` mask strategy (`masking`) hides spatially contiguous groups, and `plot_reconstruction` draws 3-D
pictures of masked-group reconstructions (see `plots`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.adapters.pointcloud import ops
from mmsdk.config import Config, require
from mmsdk.contracts.adapter import (
    DEFAULT_MAX_ABS_INPUT,
    Adapter,
    ExportSpec,
    LossTerms,
    check_magnitude,
    reject_values,
)
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.layers.pooling import Pooling, pool_tokens
from mmsdk.layers.positions import ContinuousPositions
from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)


@dataclass
class PointMAEConfig(Config):
    """Point-MAE tokenization of a (B, N, C) point cloud."""

    num_points: int = 1024
    """Points per cloud N."""
    num_groups: int = 64
    """Groups (tokens) S picked by farthest point sampling."""
    group_size: int = 32
    """Points per group k (nearest neighbours of each center, the center included)."""
    in_channels: int = 3
    """Channels C per point: xyz first, then extra channels (colour, normal) that are embedded but not
    reconstructed."""
    embed_hidden: int = 128
    """Width of the first shared MLP's hidden layer of the mini-PointNet (Point-MAE: 128)."""
    embed_local: int = 256
    """Per-point feature width of the first shared MLP; the second MLP sees 2x this (local + global)."""
    embed_global: int = 512
    """Hidden width of the second shared MLP (Point-MAE: 512)."""
    loss: Literal["chamfer_l2", "chamfer_l1"] = "chamfer_l2"
    """Reconstruction loss: squared-distance Chamfer (Point-MAE's pretraining loss) or Euclidean Chamfer L1."""
    cls_head: Literal["mlp", "linear"] = "mlp"
    """Classification head: Point-MAE's `cls_head_finetune` MLP (2 hidden layers) or a single linear layer."""
    cls_hidden: int = 256
    """Hidden width of the MLP classification head."""
    cls_norm: Literal["batch", "layer"] = "batch"
    """Normalization in the MLP head: BatchNorm as Point-MAE (needs training batches > 1) or LayerNorm."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_points >= 1, self, "num_points", f"must be >= 1, got {self.num_points}")
        require(
            1 <= self.num_groups <= self.num_points,
            self,
            "num_groups",
            f"must be in [1, num_points={self.num_points}], got {self.num_groups}",
        )
        require(
            1 <= self.group_size <= self.num_points,
            self,
            "group_size",
            f"must be in [1, num_points={self.num_points}], got {self.group_size}",
        )
        require(self.in_channels >= 3, self, "in_channels", f"must be >= 3 (xyz first), got {self.in_channels}")
        for name in ("embed_hidden", "embed_local", "embed_global", "cls_hidden"):
            value = getattr(self, name)
            require(value >= 1, self, name, f"must be >= 1, got {value}")


class MiniPointNet(nn.Module):
    """Point-MAE's group `Encoder`: (B, S, k, C) re-centred groups → (B, S, D) group embeddings."""

    def __init__(self, config: PointMAEConfig, dim: int) -> None:
        super().__init__()
        c, local = config.in_channels, config.embed_local
        self.first_conv = nn.Sequential(
            nn.Conv1d(c, config.embed_hidden, 1),
            nn.BatchNorm1d(config.embed_hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(config.embed_hidden, local, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2 * local, config.embed_global, 1),
            nn.BatchNorm1d(config.embed_global),
            nn.ReLU(inplace=True),
            nn.Conv1d(config.embed_global, dim, 1),
        )

    def forward(self, groups: Tensor) -> Tensor:
        b, s, k, c = groups.shape
        x = groups.reshape(b * s, k, c).transpose(1, 2)  # (B·S, C, k)
        feature = self.first_conv(x)  # (B·S, L, k)
        pooled = feature.amax(dim=2, keepdim=True)  # (B·S, L, 1)
        feature = torch.cat([pooled.expand_as(feature), feature], dim=1)  # (B·S, 2L, k)
        feature = self.second_conv(feature).amax(dim=2)  # (B·S, D)
        return feature.reshape(b, s, -1)  # (B, S, D)


def check_points(points: object, num_points: int, in_channels: int, max_abs: float = DEFAULT_MAX_ABS_INPUT) -> None:
    """Raises ValueError unless `points` is a finite float (B, num_points, in_channels) tensor with no |value| above
    `max_abs` (larger coordinates overflow the float32 squared distances of sampling and grouping)."""
    if not isinstance(points, Tensor):
        raise ValueError(f"Point-MAE: points must be a torch.Tensor, got {type(points).__name__}")
    shape = tuple(points.shape)
    if not points.is_floating_point():
        raise ValueError(f"Point-MAE: points must be floating point, got dtype {points.dtype}")
    if points.dim() == 2:
        raise ValueError(
            f"Point-MAE: points must be a batch (B, N, C), got a single 2-D cloud of shape {shape}; "
            "add a batch dimension with .unsqueeze(0)"
        )
    if points.dim() != 3:
        raise ValueError(f"Point-MAE: points must be (B, N, C), got rank {points.dim()} shape {shape}")
    if shape[2] != in_channels:
        raise ValueError(f"Point-MAE: points have {shape[2]} channels (shape {shape}); in_channels={in_channels}")
    if shape[1] != num_points:
        raise ValueError(
            f"Point-MAE: points have N={shape[1]} points per cloud (shape {shape}), but num_points={num_points}; "
            "resample clouds to num_points (e.g. data.subsample) or change the config"
        )
    if shape[0] == 0:
        raise ValueError(f"Point-MAE: empty batch (shape {shape})")
    advice = "point clouds have no missing values: drop or repair those points before tokenizing"
    reject_values(points, ~torch.isfinite(points), "Point-MAE: points with NaN or Inf value(s)", advice)
    check_magnitude(points, "Point-MAE: points", max_abs)


class PointMAEAdapter(Adapter):
    """Point-MAE group tokens for point clouds (B, N, C).

    Tokens: (B, S, D) mini-PointNet embeddings of S FPS/kNN groups. Positions: (B, S, 3) group centers.
    Targets: (B, S, k·3) re-centred group xyz, flattened point-major.
    """

    name = "pointmae"
    config_class = PointMAEConfig
    tasks = ("classification", "multilabel")
    free_fields = ("num_points", "loss", "cls_head", "cls_hidden", "cls_norm")
    config: PointMAEConfig

    def __init__(self, config: PointMAEConfig, dim: int) -> None:
        super().__init__(config, dim)
        self.embed = MiniPointNet(config, dim)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {
            "num_points": 64,
            "num_groups": 8,
            "group_size": 8,
            "embed_hidden": 16,
            "embed_local": 16,
            "embed_global": 32,
            "cls_hidden": 16,
        }

    @property
    def target_dim(self) -> int:
        return self.config.group_size * 3

    def group(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C) points → re-centred groups (B, S, k, C) and centers (B, S, 3) (no input checks)."""
        cfg = self.config
        centers_idx = ops.farthest_point_sample(points, cfg.num_groups, start="first")  # (B, S)
        return ops.group_points(points, centers_idx, cfg.group_size)

    def tokenize(self, inputs: Tensor) -> TokenBatch:
        if not is_tracing():
            check_points(inputs, self.config.num_points, self.config.in_channels, self.max_abs_input)
        inputs = inputs.to(self.embed.first_conv[0].weight.dtype)  # float16/64 clouds in a float32 model
        neighborhoods, centers = self.group(inputs)  # (B, S, k, C), (B, S, 3)
        return TokenBatch(
            tokens=self.embed(neighborhoods),  # (B, S, D)
            positions=centers,
            targets=neighborhoods[..., :3].flatten(2),  # (B, S, k·3)
            context={"points": inputs[..., :3]},  # (B, N, 3) the input cloud, for reconstruction plots
        )

    def build_positions(self, dim: int) -> nn.Module | None:
        return ContinuousPositions(dim, ndim=3)

    def reconstruction_loss(self, pred: Tensor, batch: TokenBatch, target: Tensor) -> LossTerms:
        """Chamfer distance between predicted and target groups (k, 3), averaged over the target groups only.

        Every group's distance is computed and the target ones are averaged, so shapes never depend on the mask
        (no boolean indexing: the loss compiles with `torch.compile(fullgraph=True)`). No target: a zero loss that
        still backpropagates.
        """
        if batch.targets is None:
            raise ValueError("PointMAEAdapter.reconstruction_loss: the batch has no targets")
        if batch.padding_mask is not None:
            target = target & batch.padding_mask
        b, s = target.shape
        k = self.config.group_size
        norm: Literal["l2", "l1"] = "l2" if self.config.loss == "chamfer_l2" else "l1"
        per_group = ops.chamfer_distance(
            pred.reshape(b * s, k, 3), batch.targets.reshape(b * s, k, 3), norm=norm, reduction="none"
        )  # (B·S,)
        weight = target.reshape(-1).to(per_group.dtype)
        return {"chamfer": (per_group * weight).sum() / weight.sum().clamp_min(1.0)}

    def decode(self, pred: Tensor, batch: TokenBatch) -> Tensor:
        """Predicted re-centred groups (B, S, k·3) → absolute points (B, S·k, 3) around the groups' true centers."""
        b, s = pred.shape[:2]
        groups = pred.float().reshape(b, s, self.config.group_size, 3)
        return (groups + batch.positions[:, :, None, :3].float()).reshape(b, -1, 3)

    def plot_reconstruction(self, batch: TokenBatch, pred: Tensor, target: Tensor, path: Path) -> Path | None:
        """3-D scatter of the first cloud: input, visible groups, visible + predicted hidden groups (a PNG).

        Predicted groups are drawn at their true centers, as Point-MAE's visualisation does. Returns None when the
        batch has no targets or the predictions are not (B, S, k·3) point offsets.
        """
        from mmsdk.adapters.pointcloud.plots import plot_point_reconstruction

        if batch.targets is None or batch.positions is None:
            return None
        s, k = batch.num_tokens, self.config.group_size
        if pred.shape[-1] != k * 3:
            logger.warning("Point-MAE plot: predictions of width %d are not k·3 = %d offsets", pred.shape[-1], k * 3)
            return None
        centers = batch.positions[0]  # (S, 3)
        groups = batch.targets[0].reshape(s, k, 3)  # (S, k, 3) re-centred
        points = batch.context.get("points")
        cloud = points[0] if points is not None else (groups + centers[:, None]).reshape(-1, 3)  # (N, 3)
        return plot_point_reconstruction(
            cloud,
            centers,
            groups,
            pred[0].reshape(s, k, 3),
            target[0],
            path,
            title=f"Point-MAE reconstruction: {int(target[0].sum())} of {s} groups masked",
        )

    def build_head(self, head: HeadConfig, dim: int) -> nn.Module:
        if head.task not in self.tasks:
            raise ValueError(f"HeadConfig.task={head.task!r}: Point-MAE supports {list(self.tasks)}")
        return PointMAEClassifier(self.config, head, dim)  # class or label logits (B, num_outputs)

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        cfg = self.config
        xyz = torch.randn(batch_size, cfg.num_points, 3, generator=generator)
        xyz = xyz / xyz.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # on the unit sphere
        if cfg.in_channels == 3:
            return xyz
        extra = torch.rand(batch_size, cfg.num_points, cfg.in_channels - 3, generator=generator)
        return torch.cat([xyz, extra], dim=-1)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(input_name="points", output_names=("logits",), tolerance=1e-4)


class BatchNorm1dAnyBatch(nn.BatchNorm1d):
    """BatchNorm1d over (B, C) features that normalizes a one-sample training batch with its running statistics.

    Batch statistics of a single sample do not exist and `nn.BatchNorm1d` raises on them, so a trailing batch of one
    cloud (a loader without drop_last over M = 1 mod batch_size clouds) would stop training. Such a batch is
    normalized as in eval mode and leaves the running statistics unchanged; every other batch is plain BatchNorm.
    """

    _warned = False

    def forward(self, input: Tensor) -> Tensor:
        if self.training and input.dim() == 2 and input.shape[0] == 1:
            if not self._warned:
                self._warned = True
                logger.warning("Point-MAE head: a training batch of 1 cloud is normalized with running statistics")
            return F.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(input)  # (B, C)


class PointMAEClassifier(nn.Module):
    """Point-MAE's `cls_head_finetune` on pooled token features: pool (mean_max by default) → MLP → logits.

    Point-MAE concatenates its class token with the max-pooled tokens; the default pooling here concatenates the mean
    and the max of the group tokens (width 2D), and `pooling: first` reads the model's class token
    (`ModelConfig.class_tokens`).
    """

    def __init__(self, config: PointMAEConfig, head: HeadConfig, dim: int) -> None:
        super().__init__()
        self.pooling: Pooling = head.pooling or "mean_max"
        width = {"mean_max": 2 * dim, "flatten": dim * config.num_groups}.get(self.pooling, dim)
        if config.cls_head == "linear":
            self.mlp: nn.Module = nn.Sequential(nn.Dropout(head.dropout), nn.Linear(width, head.num_outputs))
            return
        hidden = config.cls_hidden

        def norm() -> nn.Module:
            return BatchNorm1dAnyBatch(hidden) if config.cls_norm == "batch" else nn.LayerNorm(hidden)

        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            norm(),
            nn.ReLU(inplace=True),
            nn.Dropout(head.dropout),
            nn.Linear(hidden, hidden),
            norm(),
            nn.ReLU(inplace=True),
            nn.Dropout(head.dropout),
            nn.Linear(hidden, head.num_outputs),
        )

    def forward(self, hidden: Tensor, batch: TokenBatch) -> Tensor:
        return self.mlp(pool_tokens(hidden, self.pooling, batch.padding_mask, batch.class_features))  # (B, classes)
