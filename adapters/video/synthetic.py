"""Synthetic labelled videos, generated on the fly (nothing to download): a moving shape whose class is its shape
AND its motion, e.g. "square/right" or "disc/rotate".

Every clip shows one shape (a square, a disc or a triangle of random colour and size, radius 0.12–0.2 of the
shorter frame side) over a plain or smoothly graded background. Translating shapes ("right", "left", "up", "down")
cross 0.3–0.6 of the frame over the clip without turning and stay inside it; "rotate" spins in place by 1–2 turns
(random direction); "still" neither moves nor turns. One half of each shape (along its own axis) is a lighter or
darker shade, so a spinning disc visibly turns and a square's quarter turns are not symmetric.

Channels are rendered from the same scene and stacked in the order of `MovingShapesConfig.channels`:
"rgb" (3), "gray" (1, the luminance of the rgb image), "depth" (1, 0 = near and 1 = far: a tilted background
plane around 0.8, the shape nearer, 0.25–0.5 with a slight tilt along its axis) and "thermal" (1: the shape warm,
a per-clip temperature of 0.6–0.85 with a gradient across it, the background cool, about 0.1–0.25). Every channel gets
Gaussian pixel noise of std `noise` and is clamped to [0, 1].

Item `i` is fully determined by (seed, i): its random draws come from a `torch.Generator` seeded from both, so a
dataset needs no storage and any item renders the same in any worker. Labels cycle through the classes
(`label = i % num_classes`), so every class has `num_samples // num_classes` or one more items.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsdk.config import Config, require

__all__ = [
    "CHANNELS",
    "MOTIONS",
    "SHAPES",
    "MovingShapes",
    "MovingShapesConfig",
    "moving_shapes_arrays",
    "render_clip",
]

logger = logging.getLogger(__name__)

SHAPES = ("square", "disc", "triangle")
"""The shapes that can be drawn."""
MOTIONS = ("right", "left", "up", "down", "rotate", "still")
"""The motions: translations (in image directions: "up" = towards the top row), a spin in place, none."""
CHANNELS = {"rgb": 3, "gray": 1, "depth": 1, "thermal": 1}
"""Channel kinds and the number of channels each adds."""

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights
_TRANSLATIONS = {"right": (0, 1.0), "left": (0, -1.0), "down": (1, 1.0), "up": (1, -1.0)}  # motion -> (axis, sign)
_NUM_DRAWS = 24  # uniforms drawn per clip (fixed slots, so changing one parameter never shifts the others)


def _check_names(owner: object, field: str, names: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    require(len(names) > 0, owner, field, f"needs at least one of {list(allowed)}")
    unknown = [n for n in names if n not in allowed]
    require(not unknown, owner, field, f"unknown {unknown}; choose from {list(allowed)}")
    require(len(set(names)) == len(names), owner, field, f"has duplicates: {list(names)}")


@dataclass
class MovingShapesConfig(Config):
    """The synthetic moving-shapes set (`MovingShapes`)."""

    num_samples: int = 512
    """Clips in the set (labels cycle through the classes)."""
    num_frames: int = 16
    """Frames T per clip."""
    size: int | tuple[int, int] = 64
    """Frame size: an int for square frames, or (height, width)."""
    shapes: tuple[str, ...] = SHAPES
    """Shapes drawn, of "square", "disc", "triangle"."""
    motions: tuple[str, ...] = ("right", "left", "rotate")
    """Motions, of "right", "left", "up", "down", "rotate", "still"; classes = shapes × motions."""
    channels: tuple[str, ...] = ("rgb",)
    """Channel kinds stacked in this order, of "rgb" (3 channels), "gray", "depth", "thermal" (1 each)."""
    noise: float = 0.03
    """Standard deviation of the Gaussian pixel noise (values in [0, 1])."""
    seed: int = 0
    """Seed of the set: item i is a function of (seed, i)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shapes, self.motions, self.channels = tuple(self.shapes), tuple(self.motions), tuple(self.channels)
        if isinstance(self.size, str):  # a command-line override
            self.size = int(self.size) if self.size.strip().isdigit() else self.size
        if isinstance(self.size, (list, tuple)):
            self.size = tuple(self.size)  # type: ignore[assignment]
        require(self.num_samples >= 1, self, "num_samples", f"must be >= 1, got {self.num_samples}")
        require(self.num_frames >= 1, self, "num_frames", f"must be >= 1, got {self.num_frames}")
        sizes = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        valid = len(sizes) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in sizes)
        require(valid, self, "size", f"must be an int >= 8 or (height, width) of ints >= 8, got {self.size!r}")
        _check_names(self, "shapes", self.shapes, SHAPES)
        _check_names(self, "motions", self.motions, MOTIONS)
        _check_names(self, "channels", self.channels, tuple(CHANNELS))
        require(self.noise >= 0, self, "noise", f"must be >= 0, got {self.noise}")
        require(self.seed >= 0, self, "seed", f"must be >= 0, got {self.seed}")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return self.size if isinstance(self.size, tuple) else (self.size, self.size)  # type: ignore[return-value]

    @property
    def num_channels(self) -> int:
        """C: the channel count of the clips (rgb counts 3)."""
        return sum(CHANNELS[c] for c in self.channels)

    @property
    def class_names(self) -> list[str]:
        """ "shape/motion" per label id; id = shape_index * len(motions) + motion_index."""
        return [f"{s}/{m}" for s in self.shapes for m in self.motions]


def _item_generator(seed: int, index: int) -> torch.Generator:
    """A torch.Generator seeded from (seed, index) (numpy's SeedSequence mixes the two)."""
    state = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state)


def _path(config: MovingShapesConfig, motion: str, radius: float, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centre x, centre y and angle per frame, each (T,), in units of the shorter frame side."""
    height, width = config.frame_size
    extent = (width / min(height, width), height / min(height, width))  # (x, y) extent of the frame
    steps = config.num_frames
    progress = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)  # (T,) 0 → 1 over the clip
    centre = [radius + float(u[2 + axis]) * max(extent[axis] - 2 * radius, 0.0) for axis in (0, 1)]
    coords = [torch.full((steps,), c) for c in centre]
    theta0 = 2 * math.pi * float(u[4])
    angle = torch.full((steps,), theta0)
    if motion in _TRANSLATIONS:
        axis, sign = _TRANSLATIONS[motion]
        distance = (0.3 + 0.3 * float(u[5])) * extent[axis]
        room = max(extent[axis] - 2 * radius - distance, 0.0)
        first = radius + float(u[2 + axis]) * room  # the path [first, first + distance] stays in the frame
        offsets = distance * (progress if sign > 0 else 1 - progress)
        coords[axis] = first + offsets
    elif motion == "rotate":
        turns = (1.0 + float(u[6])) * (1.0 if float(u[7]) < 0.5 else -1.0)
        angle = theta0 + turns * 2 * math.pi * torch.arange(steps, dtype=torch.float32) / steps
    return coords[0], coords[1], angle


def _signed_distance(shape: str, lx: Tensor, ly: Tensor, radius: float) -> Tensor:
    """Approximate signed distance to the shape's outline in its own (local) coordinates (< 0 inside)."""
    if shape == "disc":
        return torch.sqrt(lx * lx + ly * ly) - radius
    if shape == "square":
        return torch.maximum(lx.abs(), ly.abs()) - 0.85 * radius
    # equilateral triangle of circumradius 1.15 r, apex towards local -y: three half-planes
    normals = [math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)]
    edges = [lx * math.cos(a) + ly * math.sin(a) for a in normals]
    return torch.maximum(torch.maximum(edges[0], edges[1]), edges[2]) - 0.575 * radius


def _ramp(xs: Tensor, ys: Tensor, angle: float) -> Tensor:
    """A linear ramp (H, W) along direction `angle`, centred on the frame, in frame units (about [-0.7, 0.7])."""
    x = xs - xs.mean()
    y = ys - ys.mean()
    return math.cos(angle) * x[None, :] + math.sin(angle) * y[:, None]


class _Scene(NamedTuple):
    """What the channels of one clip are rendered from."""

    u: Tensor  # (_NUM_DRAWS,) the clip's uniform draws
    xs: Tensor  # (W,) pixel centres in frame units
    ys: Tensor  # (H,)
    lx: Tensor  # (T, H, W) pixel positions in the shape's own coordinates
    ly: Tensor  # (T, H, W)
    radius: float
    inside: Tensor  # (T, H, W) shape coverage in [0, 1]
    marked: Tensor  # (T, H, W) coverage of the marked half in [0, 1]


def render_clip(config: MovingShapesConfig, index: int) -> tuple[Tensor, int]:
    """Item `index` of the set: (clip (T, C, H, W) float32 in [0, 1], label)."""
    labels = len(config.shapes) * len(config.motions)
    label = index % labels
    shape, motion = config.shapes[label // len(config.motions)], config.motions[label % len(config.motions)]
    g = _item_generator(config.seed, index)
    u = torch.rand(_NUM_DRAWS, generator=g)
    height, width = config.frame_size
    scale = min(height, width)  # pixels per frame unit
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / scale  # (W,)
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / scale  # (H,)
    radius = 0.12 + 0.08 * float(u[0])
    cx, cy, angle = _path(config, motion, radius, u)  # (T,) each
    dx = xs[None, None, :] - cx[:, None, None]  # (T, 1, W)
    dy = ys[None, :, None] - cy[:, None, None]  # (T, H, 1)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    lx, ly = cos * dx + sin * dy, -sin * dx + cos * dy  # (T, H, W) local coordinates of the shape
    inside = (0.5 - _signed_distance(shape, lx, ly, radius) * scale).clamp(0, 1)  # (T, H, W), 1-pixel soft edge
    marked = (0.5 + lx * scale).clamp(0, 1)  # (T, H, W): the half with local x > 0
    scene = _Scene(u, xs, ys, lx, ly, radius, inside, marked)
    parts = {kind: _channel(kind, scene) for kind in config.channels if kind != "gray"}
    if "gray" in config.channels:
        rgb = parts["rgb"] if "rgb" in parts else _channel("rgb", scene)
        parts["gray"] = (rgb * _LUMA[None, :, None, None]).sum(1, keepdim=True)  # (T, 1, H, W)
    clip = torch.cat([parts[kind] for kind in config.channels], dim=1)  # (T, C, H, W)
    if config.noise > 0:
        clip = clip + config.noise * torch.randn(clip.shape, generator=g)
    return clip.clamp_(0, 1), label


def _channel(kind: str, scene: _Scene) -> Tensor:
    """One channel kind ("rgb", "depth" or "thermal") of the scene without noise: (T, c, H, W), c = CHANNELS[kind]."""
    u, xs, ys, lx, ly, radius, inside, marked = scene
    mask = inside[:, None]  # (T, 1, H, W)
    if kind == "depth":
        plane = 0.8 + 0.07 * _ramp(xs, ys, 2 * math.pi * float(u[8]))  # (H, W) far background plane
        near = 0.3 + 0.15 * float(u[9]) + 0.05 * (lx / radius).clamp(-1.2, 1.2)  # (T, H, W) slightly tilted
        return (plane * (1 - inside) + near * inside)[:, None]
    if kind == "thermal":
        cool = 0.15 + 0.05 * float(u[10]) + 0.05 * _ramp(xs, ys, 2 * math.pi * float(u[11]))  # (H, W)
        warm = 0.6 + 0.25 * float(u[12]) + 0.05 * (ly / radius).clamp(-1.2, 1.2)  # (T, H, W)
        return (cool * (1 - inside) + warm * inside)[:, None]
    # rgb, drawn for a dark background and mirrored (v -> 1 - v) for a light one
    base = 0.05 + 0.2 * u[13:16]  # (3,) background colour
    slope = (0.2 * u[16:19] - 0.1) * float(u[19] < 0.5)  # (3,) gradient (half of the clips: a plain colour)
    background = base[:, None, None] + slope[:, None, None] * _ramp(xs, ys, 2 * math.pi * float(u[20]))[None]
    body = 0.55 + 0.25 * u[21:24]  # (3,) shape colour
    shade = body + 0.2  # the marked half: a lighter shade
    colour = body[None, :, None, None] * (1 - marked[:, None]) + shade[None, :, None, None] * marked[:, None]
    rgb = background[None] * (1 - mask) + colour * mask  # (T, 3, H, W)
    return 1 - rgb if float(u[1]) < 0.5 else rgb


class MovingShapes(Dataset):
    """The moving-shapes set: item i → (clip (T, C, H, W) float32 in [0, 1], label int), rendered on access.

    Args:
        config: a `MovingShapesConfig` or a mapping of its fields; None = the defaults.
        **fields: fields overriding `config`'s (e.g. `MovingShapes(num_samples=64, channels=("rgb", "depth"))`).

    Attributes:
        config: the set's config. class_names: "shape/motion" per label id. labels: the label of each item.
    """

    def __init__(self, config: MovingShapesConfig | Mapping[str, Any] | None = None, **fields: Any) -> None:
        base = MovingShapesConfig.from_dict(config)
        self.config = base.replace(**fields) if fields else base
        self.class_names = self.config.class_names
        self.labels = [i % len(self.class_names) for i in range(self.config.num_samples)]

    @property
    def num_channels(self) -> int:
        """C: the channel count of the clips."""
        return self.config.num_channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"MovingShapes: index {index} out of range for {len(self)} items")
        return render_clip(self.config, index % len(self))

    def column(self, name: str) -> list[str]:
        """Per item: "label" (the class name, "shape/motion"), "shape" or "motion"."""
        names = [self.class_names[label] for label in self.labels]
        if name == "label":
            return names
        if name in ("shape", "motion"):
            return [n.split("/")[name == "motion"] for n in names]
        raise ValueError(f"MovingShapes: no column {name!r}; the columns are ['label', 'shape', 'motion']")

    def tensors(self, n: int | None = None) -> tuple[Tensor, Tensor]:
        """The first `n` items (None = all) as (X (N, T, C, H, W) float32, y (N,) int64)."""
        count = len(self) if n is None else n
        require(0 < count <= len(self), self, "tensors", f"n must be in [1, {len(self)}], got {n}")
        items = [self[i] for i in range(count)]
        return torch.stack([clip for clip, _ in items]), torch.tensor([label for _, label in items])


def moving_shapes_arrays(
    config: MovingShapesConfig | Mapping[str, Any] | None = None, **fields: Any
) -> tuple[Tensor, Tensor]:
    """The whole moving-shapes set at once: (X (N, T, C, H, W) float32, y (N,) int64); arguments as `MovingShapes`."""
    return MovingShapes(config, **fields).tensors()
