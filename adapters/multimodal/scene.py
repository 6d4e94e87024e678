"""A paired multimodal set generated on the fly (nothing to download): one bouncing ball seen three ways.

Every item is one hidden state — a ball dropped onto a floor — and three consistent views of its trajectory:
"video" (the ball filmed side-on), "audio" (the sound of its impacts) and "series" (its height and a vertical
accelerometer). All views are sampled from the same closed-form trajectory, so any one of them predicts the others.

Physical scales:

- Height is in units of the highest possible drop (`h_max`, = 1): the ball is released from rest at height
  `height` ∈ [0.6, 1] at time −`offset` (`offset` ∈ [0, 0.1] s, so at t = 0 it is already falling) and bounces with
  restitution `restitution` ∈ [0.65, 0.85] (rebound speed = restitution × impact speed) under `gravity` = 24.5
  h_max/s² (Earth's 9.81 m/s² if h_max = 0.4 m). A 1 s clip then shows 2–5 impacts (3 on average). An impact
  whose rebound would be slower than `rest_speed` (1.5 h_max/s, a hop of under 5% of h_max) ends the bouncing:
  the ball stays on the floor (in about one clip in five), so impacts are never closer than 2 · rest_speed /
  gravity ≈ 0.12 s.
- Radius and horizontal position are fractions of the frame side: `radius` ∈ [0.05, 0.125], centre `position` ∈
  [0.3, 0.7] (fixed over the clip).

Views (t = 0 is the clip's start, `duration` its length):

- "video" (T, 1, H, W) float32 in [0, 1], frame i at t = (i + 0.5) · duration / T: a bright (0.95) disc with a
  one-pixel soft edge on a dark (0.08) background. The floor is the row `round(0.85 · H)` (a line of 0.55) and
  the grey (0.25) rows below it; the ball's bottom is `height · (floor − 0.03 − 2 · radius_max)` frame sides above
  the floor's top edge (floor ≈ 0.85, radius_max the top of the `radius` range), so the largest ball dropped from
  h_max just stays below a 3% margin at the top.
- "audio" (S,) float32 in [-1, 1], S = round(duration · sample_rate), sample s at t = s / sample_rate: at each impact
  a sinusoid that starts at zero phase and decays with time constant `decay` (40 ms), of pitch 100 Hz / radius
  (800–2000 Hz: smaller balls ring higher) and amplitude 0.8 · impact speed / sqrt(2 · gravity) (0.8 for a drop
  from h_max).
- "series" (L, 2) float32, sample j at t = (j + 0.5) · duration / L. Column 0: the height (in [0, 1]). Column 1:
  the vertical acceleration divided by 8 · gravity: −1/8 in flight, 0 at rest, and at each impact a Gaussian pulse
  of std 1.5 samples whose area is the velocity change (1 + restitution) × impact speed (peaks up to about 1).

Every view gets Gaussian noise of std `noise` (in its own units) and is clamped to its range (video and audio only).
With `missing` > 0 each view of an item is dropped independently with that probability (replaced by zeros and
marked absent in "present"); when all three would be dropped one of them, chosen at random, is kept — so each view
is missing with probability missing − missing³ / 3.

Item `i` is fully determined by (seed, i): its draws come from numpy Generators seeded from both, one for the
hidden state and the dropped views and one per view for its noise, so dropping a view leaves the others unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from mmsdk.config import Config, require

__all__ = ["MODALITIES", "STATE_FIELDS", "BouncingScene", "SceneConfig", "impacts", "render", "scene_arrays"]

logger = logging.getLogger(__name__)

MODALITIES = ("series", "audio", "video")
"""The views of a scene, in the order of an item's keys and of their noise streams."""
STATE_FIELDS = ("height", "restitution", "radius", "position", "offset")
"""The hidden state, in the order of an item's "state" vector: drop height (h_max), restitution, radius (frame
sides), horizontal centre (frame sides from the left), release time before the clip's start (s)."""

_FLOOR = 0.85  # the floor's row, as a fraction of the frame height from the top
_TOP = 0.03  # margin above the highest ball
_PITCH = 100.0  # Hz · frame side: pitch = _PITCH / radius
_GAIN = 0.8  # audio amplitude of an impact at the largest possible speed, sqrt(2 · gravity)
_ACCEL = 8.0  # the accelerometer column is acceleration / (_ACCEL · gravity)
_SMOOTH = 1.5  # accelerometer smoothing: Gaussian std in series samples
_INTENSITY = {"background": 0.08, "line": 0.55, "floor": 0.25, "ball": 0.95}
_NUM_DRAWS = 8  # uniforms per item, in fixed slots: the 5 state fields, then one drop draw per view


def _check_range(owner: object, field: str, value: tuple[float, float], lo: float, hi: float) -> None:
    """Requires a (low, high) pair with lo <= low <= high <= hi."""
    ok = len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    require(ok, owner, field, f"must be a (low, high) pair of numbers, got {value!r}")
    require(lo <= value[0] <= value[1] <= hi, owner, field, f"must satisfy {lo} <= low <= high <= {hi}, got {value}")


@dataclass
class SceneConfig(Config):
    """The bouncing-ball scene (`BouncingScene`); the module docstring gives the units."""

    duration: float = 1.0
    """Clip length in seconds."""
    sample_rate: int = 16000
    """Audio samples per second."""
    num_frames: int = 8
    """Video frames T per clip."""
    frame_size: int = 32
    """Video frame side H = W in pixels."""
    series_length: int = 64
    """Samples L of the (height, acceleration) series over the clip."""
    missing: float = 0.0
    """Probability that each view of an item is dropped (one view always stays)."""
    height: tuple[float, float] = (0.6, 1.0)
    """Range of the drop height, in units of h_max (at most 1)."""
    restitution: tuple[float, float] = (0.65, 0.85)
    """Range of the restitution (rebound speed / impact speed), below 1."""
    radius: tuple[float, float] = (0.05, 0.125)
    """Range of the ball radius, in frame sides (at most 0.2); sets the pitch 100 Hz / radius."""
    position: tuple[float, float] = (0.3, 0.7)
    """Range of the ball's horizontal centre, in frame sides (the ball must stay inside the frame)."""
    offset: tuple[float, float] = (0.0, 0.1)
    """Range of the release time before the clip's start, in seconds (the ball must not reach the floor by t=0)."""
    gravity: float = 24.5
    """Gravitational acceleration in h_max / s² (tuned for 2–5 impacts per second)."""
    rest_speed: float = 1.5
    """The ball stops bouncing at the first impact whose rebound would be slower than this (h_max / s)."""
    decay: float = 0.04
    """Time constant of an impact sound's exponential decay, in seconds."""
    noise: float = 0.02
    """Std of the Gaussian noise added to each view (pixel values, waveform samples, series values)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("height", "restitution", "radius", "position", "offset"):
            setattr(self, name, tuple(getattr(self, name)))
        require(self.duration > 0, self, "duration", f"must be > 0, got {self.duration}")
        require(self.num_frames >= 1, self, "num_frames", f"must be >= 1, got {self.num_frames}")
        require(self.frame_size >= 8, self, "frame_size", f"must be >= 8, got {self.frame_size}")
        require(self.series_length >= 2, self, "series_length", f"must be >= 2, got {self.series_length}")
        require(0 <= self.missing <= 1, self, "missing", f"must be in [0, 1], got {self.missing}")
        require(self.gravity > 0, self, "gravity", f"must be > 0, got {self.gravity}")
        require(self.rest_speed > 0, self, "rest_speed", f"must be > 0, got {self.rest_speed}")
        require(self.decay > 0, self, "decay", f"must be > 0, got {self.decay}")
        require(self.noise >= 0, self, "noise", f"must be >= 0, got {self.noise}")
        _check_range(self, "height", self.height, 1e-3, 1.0)
        _check_range(self, "restitution", self.restitution, 0.0, 0.99)
        _check_range(self, "radius", self.radius, 1e-3, 0.2)
        big = self.radius[1]
        _check_range(self, "position", self.position, big, 1 - big)
        fall = math.sqrt(2 * self.height[0] / self.gravity)  # the shortest fall from rest to the floor
        _check_range(self, "offset", self.offset, 0.0, 0.999 * fall)
        nyquist = 2 * _PITCH / self.radius[0]
        require(
            self.sample_rate > nyquist,
            self,
            "sample_rate",
            f"must exceed {nyquist:g} (twice the pitch {_PITCH:g} Hz / radius of the smallest ball), got "
            f"{self.sample_rate}",
        )

    @property
    def audio_length(self) -> int:
        """S: audio samples per clip."""
        return round(self.duration * self.sample_rate)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each view of one item."""
        side = self.frame_size
        return {
            "series": (self.series_length, 2),
            "audio": (self.audio_length,),
            "video": (self.num_frames, 1, side, side),
        }


class _Trajectory(NamedTuple):
    """A closed-form bouncing trajectory: free fall between impacts, the ball at rest after the last if it stops."""

    height: float  # release height (h_max)
    offset: float  # release time before t = 0 (s)
    gravity: float
    times: np.ndarray  # (K,) impact times (s), increasing, all > 0
    speeds: np.ndarray  # (K,) impact speeds (h_max / s)
    rebounds: np.ndarray  # (K,) rebound speeds: restitution × speed, 0 for the impact the ball stops at
    rest: float  # time the ball comes to rest (inf if it never does)

    def heights(self, t: np.ndarray) -> np.ndarray:
        """The height of the ball's bottom above the floor (h_max) at times t (s), any shape."""
        falling = self.height - 0.5 * self.gravity * (t + self.offset) ** 2
        if len(self.times) == 0:
            return np.maximum(falling, 0.0)
        seg = np.searchsorted(self.times, t, side="right")  # 0: before the first impact; k: after impact k - 1
        last = np.maximum(seg - 1, 0)
        since = t - self.times[last]
        bouncing = self.rebounds[last] * since - 0.5 * self.gravity * since**2
        return np.maximum(np.where(seg == 0, falling, bouncing), 0.0)

    def acceleration(self, t: np.ndarray, sigma: float) -> np.ndarray:
        """Vertical acceleration (h_max / s²) at times t (N,), smoothed by a Gaussian of std sigma (s)."""
        if math.isfinite(self.rest):
            flying = np.array([0.5 * math.erfc((x - self.rest) / (sigma * math.sqrt(2))) for x in t])
        else:
            flying = np.ones_like(t)
        dt = t[:, None] - self.times[None, :]  # (len(t), K)
        pulses = np.exp(-0.5 * (dt / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return -self.gravity * flying + pulses @ (self.speeds + self.rebounds)


def _state_dict(state: Mapping[str, float] | Sequence[float] | Tensor | np.ndarray) -> dict[str, float]:
    """A hidden state as {field: float}, from a mapping or a vector in STATE_FIELDS order."""
    if isinstance(state, Mapping):
        missing = [f for f in STATE_FIELDS if f not in state]
        if missing:
            raise ValueError(f"scene state: missing field(s) {missing}; the fields are {list(STATE_FIELDS)}")
        return {f: float(state[f]) for f in STATE_FIELDS}
    values = state.tolist() if isinstance(state, (Tensor, np.ndarray)) else list(state)
    if len(values) != len(STATE_FIELDS):
        raise ValueError(f"scene state: expected {len(STATE_FIELDS)} values {list(STATE_FIELDS)}, got {len(values)}")
    return dict(zip(STATE_FIELDS, map(float, values)))


def _trajectory(state: Mapping[str, float], config: SceneConfig) -> _Trajectory:
    """Solves the bounces of `state` up to a little past the clip's end (for the smoothed accelerometer)."""
    g, e = config.gravity, state["restitution"]
    horizon = config.duration * (1 + 4 * _SMOOTH / config.series_length)
    fall = math.sqrt(2 * state["height"] / g)
    time, speed = fall - state["offset"], g * fall  # the first impact
    times, speeds, rebounds, rest = [], [], [], math.inf
    while time <= horizon:
        rebound = e * speed
        times.append(time)
        speeds.append(speed)
        if rebound < config.rest_speed:
            rebounds.append(0.0)
            rest = time
            break
        rebounds.append(rebound)
        time, speed = time + 2 * rebound / g, rebound
    arrays = [np.asarray(v, dtype=np.float64) for v in (times, speeds, rebounds)]
    return _Trajectory(state["height"], state["offset"], g, *arrays, rest)


def impacts(
    state: Mapping[str, float] | Sequence[float] | Tensor, config: SceneConfig | Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The impacts of a hidden state within the clip: (times (K,) in s, impact speeds (K,) in h_max / s)."""
    cfg = SceneConfig.from_dict(config)
    traj = _trajectory(_state_dict(state), cfg)
    keep = traj.times < cfg.duration
    return traj.times[keep], traj.speeds[keep]


def _video(state: Mapping[str, float], traj: _Trajectory, config: SceneConfig) -> np.ndarray:
    """The noise-free clip (T, 1, H, W) in [0, 1]."""
    side, frames = config.frame_size, config.num_frames
    centres = (np.arange(side) + 0.5) / side  # (H,) = (W,) pixel centres in frame sides
    line = round(_FLOOR * side)  # the floor line's row
    floor = line / side  # the floor's top edge (frame sides from the top), on a pixel boundary
    row = np.arange(side)
    on_line, below = row == line, row > line
    background = np.where(on_line, _INTENSITY["line"], np.where(below, _INTENSITY["floor"], _INTENSITY["background"]))
    radius = state["radius"]
    span = floor - _TOP - 2 * config.radius[1]  # frame sides per h_max
    t = (np.arange(frames) + 0.5) * config.duration / frames  # (T,)
    cy = floor - radius - span * traj.heights(t)  # (T,) ball centre row, frame sides from the top
    dy = centres[None, :, None] - cy[:, None, None]  # (T, H, 1)
    dx = centres[None, None, :] - state["position"]  # (1, 1, W)
    coverage = np.clip(0.5 - (np.sqrt(dx * dx + dy * dy) - radius) * side, 0.0, 1.0)  # (T, H, W), soft edge
    clip = background[None, :, None] * (1 - coverage) + _INTENSITY["ball"] * coverage
    return clip[:, None]


def _audio(state: Mapping[str, float], traj: _Trajectory, config: SceneConfig) -> np.ndarray:
    """The noise-free waveform (S,): one decaying sinusoid per impact inside the clip."""
    rate, count = config.sample_rate, config.audio_length
    wave = np.zeros(count)
    pitch = _PITCH / state["radius"]
    reach = math.ceil(8 * config.decay * rate)  # samples until a burst has decayed below e^-8
    loudest = math.sqrt(2 * config.gravity)  # the impact speed of a drop from h_max
    for time, speed in zip(traj.times, traj.speeds):
        first = math.ceil(time * rate)
        if first >= count:
            break
        n = np.arange(first, min(first + reach, count))
        since = n / rate - time  # (n,) >= 0
        burst = np.exp(-since / config.decay) * np.sin(2 * math.pi * pitch * since)
        wave[first : first + len(n)] += _GAIN * speed / loudest * burst
    return wave


def _series(state: Mapping[str, float], traj: _Trajectory, config: SceneConfig) -> np.ndarray:
    """The noise-free (L, 2) series: height (h_max) and acceleration / (8 · gravity) (`state` is unused)."""
    length = config.series_length
    step = config.duration / length
    t = (np.arange(length) + 0.5) * step  # (L,)
    accel = traj.acceleration(t, _SMOOTH * step) / (_ACCEL * config.gravity)
    return np.stack([traj.heights(t), accel], axis=1)


_VIEWS = {"video": (_video, (0.0, 1.0)), "audio": (_audio, (-1.0, 1.0)), "series": (_series, None)}
"""View -> (noise-free renderer (state, trajectory, config) -> array, clamp range after the noise or None)."""


def _render(
    state: Mapping[str, float],
    config: SceneConfig,
    rngs: Mapping[str, np.random.Generator | None],
    modalities: Sequence[str],
) -> dict[str, Tensor]:
    """The requested views of one state; noise from rngs[view] (None: none)."""
    traj = _trajectory(state, config)
    views = {}
    for name in modalities:
        fn, bounds = _VIEWS[name]
        view = fn(state, traj, config)
        rng = rngs.get(name)
        if rng is not None and config.noise > 0:
            view = view + config.noise * rng.standard_normal(view.shape)
        if bounds is not None:
            view = np.clip(view, *bounds)
        views[name] = torch.from_numpy(view.astype(np.float32))
    return views


def render(
    state: Mapping[str, float] | Sequence[float] | Tensor,
    config: SceneConfig | Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    modalities: Sequence[str] = MODALITIES,
) -> dict[str, Tensor]:
    """The views of one hidden state, all sampled from the same trajectory.

    Args:
        state: {field: value} over STATE_FIELDS, or a vector of them in that order (e.g. an item's "state").
        config: a `SceneConfig` or a mapping of its fields; None = the defaults.
        seed: seeds the noise (view k of MODALITIES from `np.random.default_rng([seed, k])`); None = noise-free.
        modalities: the views to render, of MODALITIES.

    Returns:
        {"video": (T, 1, H, W) in [0, 1], "audio": (S,) in [-1, 1], "series": (L, 2)}, float32, the requested only.
    """
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"render: unknown modalities {unknown}; choose from {list(MODALITIES)}")
    rngs = {} if seed is None else {m: np.random.default_rng([seed, k]) for k, m in enumerate(MODALITIES)}
    return _render(_state_dict(state), SceneConfig.from_dict(config), rngs, modalities)


class BouncingScene(Dataset):
    """The bouncing-ball set: item i → its three views, which of them are present, and its hidden state.

    Items are {"video": (T, 1, H, W), "audio": (S,), "series": (L, 2) float32 (zeros where dropped),
    "present": {view: 0-d bool tensor}, "state": (len(STATE_FIELDS),) float32}; `default_collate` stacks them.
    `render(item["state"], config)` gives an item's views without their noise.

    With `pairs=True` items are `(inputs, state)` instead: the views and "present" (what a model of the three
    modalities reads, e.g. for pretraining) and the state vector as the target (regression of hidden properties).

    Args:
        size: the number of items.
        config: a `SceneConfig` or a mapping of its fields; None = the defaults.
        seed: seed of the set (>= 0): item i is a function of (seed, i).
        pairs: give `(inputs, state)` pairs rather than one mapping.
        cache: keep each item once rendered (about 100 KB at the default sizes), so a set read for many epochs
            renders every item once (1.3 ms each on one core); items are the same either way.
    """

    def __init__(
        self,
        size: int,
        config: SceneConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        pairs: bool = False,
        cache: bool = False,
    ) -> None:
        require(isinstance(size, int) and size >= 1, "BouncingScene", "size", f"must be an int >= 1, got {size!r}")
        require(isinstance(seed, int) and seed >= 0, "BouncingScene", "seed", f"must be an int >= 0, got {seed!r}")
        self.size, self.seed, self.pairs = size, seed, pairs
        self.config = SceneConfig.from_dict(config)
        self._cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return self.size

    def _index(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"BouncingScene: index {index} out of range for {self.size} items")
        return index % self.size

    def _draws(self, index: int) -> tuple[dict[str, float], dict[str, bool]]:
        """The hidden state (rounded to float32, as the item reports it) and the views kept, of item `index`."""
        u = np.random.default_rng([self.seed, index]).random(_NUM_DRAWS)
        cfg = self.config
        state = {}
        for k, name in enumerate(STATE_FIELDS):
            lo, hi = getattr(cfg, name)
            state[name] = float(np.float32(lo + u[k] * (hi - lo)))
        keep = {m: bool(u[5 + k] >= cfg.missing) for k, m in enumerate(MODALITIES)}
        if not any(keep.values()):  # everything dropped: keep one view, chosen by the smallest drop draw
            keep[MODALITIES[int(np.argmin(u[5:8]))]] = True
        return state, keep

    def state(self, index: int) -> dict[str, float]:
        """The hidden state of item `index` as {field: value} (the values of its "state" vector)."""
        return self._draws(self._index(index))[0]

    def __getitem__(self, index: int) -> dict[str, Any] | tuple[dict[str, Any], Tensor]:
        index = self._index(index)
        if self._cache is None:
            return self._item(index)
        if index not in self._cache:
            self._cache[index] = self._item(index)
        return self._cache[index]

    def _item(self, index: int) -> dict[str, Any] | tuple[dict[str, Any], Tensor]:
        state, keep = self._draws(index)
        rngs = {m: np.random.default_rng([self.seed, index, 1 + k]) for k, m in enumerate(MODALITIES)}
        views = _render(state, self.config, rngs, [m for m in MODALITIES if keep[m]])
        shapes = self.config.shapes()
        item: dict[str, Any] = {m: views[m] if keep[m] else torch.zeros(shapes[m]) for m in MODALITIES}
        item["present"] = {m: torch.tensor(keep[m]) for m in MODALITIES}
        vector = torch.tensor([state[f] for f in STATE_FIELDS], dtype=torch.float32)
        if self.pairs:
            return item, vector
        item["state"] = vector
        return item


def scene_arrays(n: int, config: SceneConfig | Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """The first n items of `BouncingScene(n, config, seed)` stacked: {"video": (n, T, 1, H, W), "audio": (n, S),
    "series": (n, L, 2), "present": {view: (n,) bool}, "state": (n, len(STATE_FIELDS))}."""
    scene = BouncingScene(n, config, seed)
    return default_collate([scene[i] for i in range(n)])
