"""Point-cloud operators for Point-MAE-style models in pure PyTorch: no CUDA extensions, CPU and GPU alike.

Point-MAE, Point-BERT and PointGPT rely on `pointnet2_ops` (farthest point sampling), `KNN_CUDA` and
`chamfer_dist`, compiled CUDA extensions that fail to build on many machines and never run on CPU. This module
re-implements them as batched, vectorized torch code that runs on any device, differentiates where it should
(Chamfer) and exports to ONNX with the dynamo exporter (FPS, kNN, grouping).

Conventions:
    * Clouds are batched as (B, N, 3) xyz tensors, or (B, N, C) with xyz in the first 3 channels and extra
      channels (colour, normal, ...) after them.
    * Clouds of different sizes share a batch through a `valid` (B, N) bool mask, True for real points. Padded
      points may hold anything (zeros, NaN): they are never selected, never neighbours, and never counted.
    * Nearest-neighbour searches compare exact difference-form distances `sum((x - y) ** 2)`, never the
      expanded `|x|^2 - 2 x.y + |y|^2`, which loses precision far from the origin and under TF32 / autocast
      matmuls. Eager code uses `torch.cdist` in its difference mode; traced code (ONNX export, `torch.compile`)
      uses the same formula written with elementwise ops, which the exporter supports.
    * Half-precision inputs are searched in float32.
    * Input checks raise `ValueError` naming the argument. Checks that read tensor values (non-finite
      coordinates, empty clouds, index ranges) run in eager mode only and are skipped while tracing.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor

from mmsdk.layers.tracing import is_tracing

logger = logging.getLogger(__name__)

__all__ = ["chamfer_distance", "farthest_point_sample", "gather_points", "group_points", "knn"]


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Distance dtype: float16 / bfloat16 searches run in float32 (their rounding reorders close neighbours)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _check_points(fn: str, name: str, points: object, min_channels: int = 3, exact: bool = True) -> Tensor:
    """Checks a (B, N, 3) xyz tensor (or (B, N, C >= 3) with `exact=False`) and returns it."""
    if not isinstance(points, Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(points).__name__}")
    if not points.is_floating_point():
        raise ValueError(f"{fn}: {name} must be a floating-point tensor, got dtype {points.dtype}")
    shape = tuple(points.shape)
    layout = "(B, N, 3)" if exact else "(B, N, C) with xyz in the first 3 channels"
    if points.dim() != 3:
        hint = "; add a batch dimension with .unsqueeze(0)" if points.dim() == 2 and shape[-1] == 3 else ""
        raise ValueError(f"{fn}: {name} must be a 3-D tensor {layout}, got rank {points.dim()} shape {shape}{hint}")
    if shape[-1] == 2:
        raise ValueError(
            f"{fn}: {name} has 2-D coordinates (last dim 2, shape {shape}), but these ops need 3-D xyz coordinates; "
            "append a zero z channel, e.g. torch.nn.functional.pad(points, (0, 1))"
        )
    if (exact and shape[-1] != min_channels) or shape[-1] < min_channels:
        raise ValueError(f"{fn}: {name} must be {layout}, got last dim {shape[-1]} (shape {shape})")
    if shape[1] == 0:
        raise ValueError(f"{fn}: {name} holds no points (shape {shape})")
    return points


def _check_valid(fn: str, name: str, valid: Tensor | None, points: Tensor) -> Tensor | None:
    """Checks a (B, N) bool mask against its points; in eager mode every cloud needs one valid point."""
    if valid is None:
        return None
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool:
        kind = valid.dtype if isinstance(valid, Tensor) else type(valid).__name__
        raise ValueError(f"{fn}: {name} must be a bool tensor (True = real point), got {kind}")
    if tuple(valid.shape) != tuple(points.shape[:2]):
        raise ValueError(f"{fn}: {name} must have shape (B, N) = {tuple(points.shape[:2])}, got {tuple(valid.shape)}")
    if not is_tracing() and not bool(valid.any(dim=1).all()):
        empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"{fn}: {name} marks no point as valid in cloud(s) {empty}; every cloud needs one")
    return valid


def _check_finite(fn: str, name: str, points: Tensor, valid: Tensor | None) -> None:
    """Rejects NaN / inf coordinates among the valid points (eager mode only: it reads the values)."""
    if is_tracing():
        return
    finite = torch.isfinite(points[..., :3]).all(dim=-1)  # (B, N)
    if valid is not None:
        finite = finite | ~valid
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        kind = "NaN" if bool(torch.isnan(points[..., :3]).any()) else "infinite"
        raise ValueError(
            f"{fn}: {name} has {kind} coordinates (first at batch {bad[0]}, point {bad[1]}); "
            "drop those points or mark them invalid with a mask"
        )


def _check_count(fn: str, name: str, value: object, upper: int, what: str) -> int:
    """Checks a positive static count (`num_samples`, `k`) against the number of points `upper`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{fn}: {name} must be a Python int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {value}")
    if value > upper:  # a guard `upper >= value` on a symbolic size while exporting
        raise ValueError(f"{fn}: {name}={value} exceeds {what} ({upper})")
    return value


def _check_chunk(fn: str, chunk_size: object) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{fn}: chunk_size must be a positive int or None, got {chunk_size!r}")


def _check_choice(fn: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{fn}: {name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _clean(points: Tensor, valid: Tensor | None) -> Tensor:
    """xyz in the search dtype with padded points zeroed, so NaN padding cannot leak into distances."""
    xyz = points[..., :3].to(_work_dtype(points.dtype))
    return xyz if valid is None else torch.where(valid.unsqueeze(-1), xyz, torch.zeros_like(xyz))


def _pairwise_sq_dist(x: Tensor, y: Tensor) -> Tensor:
    """Squared distances (B, S, N) between x (B, S, 3) and y (B, N, 3), in the difference form."""
    if not is_tracing():
        # Difference-form kernel: exact, O(B*S*N) memory, cast to float32 by autocast, never TF32.
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").square()
    yt = y.transpose(1, 2).unsqueeze(1)  # (B, 1, 3, N)
    dist = (x[..., 0:1] - yt[:, :, 0]).square()  # (B, S, N)
    dist = dist + (x[..., 1:2] - yt[:, :, 1]).square()
    return dist + (x[..., 2:3] - yt[:, :, 2]).square()


def gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """Picks points by per-cloud index: `out[b, i...] = points[b, idx[b, i...]]`.

    Args:
        points: (B, N, C) any channels.
        idx: (B, *I) long indices into N (e.g. (B, S) centers or (B, S, k) neighbourhoods).

    Returns:
        (B, *I, C), differentiable with respect to `points`.

    Raises:
        ValueError: on a rank / batch / dtype mismatch or (eager mode) an index outside [0, N).
    """
    if not isinstance(points, Tensor) or points.dim() != 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"gather_points: points must be a (B, N, C) tensor, got {shape}")
    if not isinstance(idx, Tensor) or idx.dtype != torch.long or idx.dim() < 2 or idx.shape[0] != points.shape[0]:
        desc = f"{idx.dtype} {tuple(idx.shape)}" if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"gather_points: idx must be a long tensor (B, ...) with B={points.shape[0]}, got {desc}")
    if not is_tracing() and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= points.shape[1]):
        raise ValueError(f"gather_points: idx has values outside [0, {points.shape[1]}) (N = points.shape[1])")
    B, C = points.shape[0], points.shape[-1]
    flat = idx.reshape(B, -1, 1).expand(-1, -1, C)  # (B, L, C)
    return torch.gather(points, 1, flat).reshape(*idx.shape, C)


def farthest_point_sample(
    points: Tensor,
    num_samples: int,
    valid: Tensor | None = None,
    start: Literal["first", "random"] = "first",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Farthest point sampling (FPS), as `pointnet2_ops.furthest_point_sample` used by Point-MAE.

    Greedy: the first sample is the start point; each next one is the point farthest (largest squared distance)
    from all samples so far. A Python loop of `num_samples` steps, each vectorized over the batch and the cloud
    (O(B * N) work), so the cost is O(S * B * N). Ties go to the lowest index (`argmax`'s rule, and ONNX ArgMax's).

    Clouds of different sizes share a batch through `valid`: padded points are never chosen. A cloud with fewer
    valid points than `num_samples` yields all of its valid points first, then repeats its lowest-index valid
    point (the start point with `start="first"`) in the remaining slots. A cloud with duplicate points does the
    same once all its distinct positions are taken.

    The function exports to ONNX (dynamo exporter) with a static `num_samples` (the loop unrolls) and dynamic
    batch and point counts; the exported graph requires N >= num_samples, which the exporter records as a
    guard (give the point-count `Dim` a `min` of at least `num_samples`).

    Args:
        points: (B, N, 3) xyz, or (B, N, C) with xyz first (only xyz is used).
        num_samples: S, the number of points to pick, 1 <= S <= N.
        valid: (B, N) bool, True for real points; None = all real.
        start: "first" starts every cloud at its first valid point (index 0 without a mask), as pointnet2_ops
            does; "random" starts at a uniformly drawn valid point (drawn with `generator`).
        generator: random generator for `start="random"`, on the device of `points`; None = torch's global one.

    Returns:
        (B, S) long indices into N, in selection order. Deterministic for "first"; for "random",
        deterministic given a seeded generator.

    Raises:
        ValueError: bad shapes, dtype or `start`, `num_samples` outside [1, N], a cloud without valid points, or
            NaN / infinite valid coordinates.
    """
    fn = "farthest_point_sample"
    _check_points(fn, "points", points, exact=False)
    valid = _check_valid(fn, "valid", valid, points)
    _check_finite(fn, "points", points, valid)
    _check_choice(fn, "start", start, ("first", "random"))
    S = _check_count(fn, "num_samples", num_samples, points.shape[1], "the number of points N")
    if valid is not None and not is_tracing() and logger.isEnabledFor(logging.DEBUG):
        smallest = int(valid.sum(dim=1).min())
        if smallest < S:
            logger.debug("%s: a cloud has %d valid points < num_samples=%d; indices repeat", fn, smallest, S)

    xyz = _clean(points, valid)  # (B, N, 3)
    B = xyz.shape[0]
    if start == "first":
        farthest = xyz.new_zeros(B, dtype=torch.long) if valid is None else valid.to(xyz.dtype).argmax(dim=1)
    else:
        scores = torch.rand(xyz.shape[:2], generator=generator, device=xyz.device)  # (B, N) in [0, 1)
        if valid is not None:
            scores = scores.masked_fill(~valid, -1.0)
        farthest = scores.argmax(dim=1)  # (B,)

    # Distance to the nearest sample so far; padded points sit at -1 so they never win the argmax.
    dist = torch.full_like(xyz[..., 0], float("inf"))  # (B, N)
    if valid is not None:
        dist = dist.masked_fill(~valid, -1.0)
    # Coordinate-major layout: each step is elementwise work on contiguous (B, N) planes, several times faster
    # on CPU than reducing the size-3 last dim of (B, N, 3).
    coords = xyz.permute(2, 0, 1).contiguous()  # (3, B, N)
    chosen = [farthest]
    for _ in range(S - 1):
        center = torch.gather(coords, 2, farthest.view(1, B, 1).expand(3, B, 1))  # (3, B, 1)
        dist = torch.minimum(dist, (coords - center).square().sum(dim=0))
        farthest = dist.argmax(dim=1)  # (B,)
        chosen.append(farthest)
    # Once a cloud's valid points are all taken, every one sits at distance 0 and argmax returns the first.
    return torch.stack(chosen, dim=1)  # (B, S)


def knn(
    query: Tensor,
    points: Tensor,
    k: int,
    valid: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """k nearest neighbours of every query among `points` (brute force), as Point-MAE's `KNN_CUDA` grouping.

    Args:
        query: (B, S, 3) query xyz (e.g. FPS centers).
        points: (B, N, 3) xyz, or (B, N, C) with xyz first.
        k: neighbours per query, 1 <= k <= N. A query that is itself in `points` is its own first neighbour.
        valid: (B, N) bool, True for real points; padded points are never neighbours. A cloud with fewer than k
            valid points fills the missing slots with each query's nearest neighbour.
        chunk_size: queries per chunk (peak memory O(B * chunk_size * N)); None = all at once. Keep None (or
            a static query count) when exporting.

    Returns:
        (B, S, k) long indices into N, nearest first.

    Raises:
        ValueError: bad shapes or dtypes, batch mismatch, k outside [1, N], chunk_size < 1, a cloud without
            valid points, or NaN / infinite coordinates.
    """
    fn = "knn"
    _check_points(fn, "query", query)
    _check_points(fn, "points", points, exact=False)
    if query.shape[0] != points.shape[0]:
        raise ValueError(f"{fn}: query batch {query.shape[0]} != points batch {points.shape[0]}")
    valid = _check_valid(fn, "valid", valid, points)
    _check_finite(fn, "query", query, None)
    _check_finite(fn, "points", points, valid)
    k = _check_count(fn, "k", k, points.shape[1], "the number of points N")
    _check_chunk(fn, chunk_size)

    xyz = _clean(points, valid)  # (B, N, 3)
    q = query.to(xyz.dtype)
    S = q.shape[1]
    starts = [0] if chunk_size is None or chunk_size >= S else range(0, S, chunk_size)
    step = S if chunk_size is None else chunk_size
    parts = []
    for lo in starts:
        dist = _pairwise_sq_dist(q[:, lo : lo + step], xyz)  # (B, s, N)
        if valid is not None:
            dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
        top = dist.topk(k, dim=-1, largest=False, sorted=True)  # (B, s, k)
        idx = top.indices
        if valid is not None:
            idx = torch.where(torch.isinf(top.values), idx[..., :1], idx)
        parts.append(idx)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def group_points(
    points: Tensor,
    centers_idx: Tensor,
    k: int,
    valid: Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Point-MAE's grouping: a neighbourhood of the k nearest points around each center, re-centred on it.

    Point-MAE's `Group` module takes FPS centers and their kNN patches, then subtracts the center from the patch
    xyz so the encoder sees local shapes and the centers only through its positional embedding. Extra channels
    (colour, normal, intensity) are gathered as they are, never re-centred.

    Args:
        points: (B, N, C) with xyz in the first 3 channels (C >= 3).
        centers_idx: (B, S) long indices of the centers (usually `farthest_point_sample(points, S, valid)`).
        k: points per neighbourhood, 1 <= k <= N.
        valid: (B, N) bool, True for real points (see :func:`knn` for clouds smaller than k).
        chunk_size: centers per kNN chunk; see :func:`knn`.

    Returns:
        neighborhoods: (B, S, k, C), xyz relative to the group's center, nearest first (the center itself
            first when it is one of the points); differentiable with respect to `points`.
        centers: (B, S, 3) absolute center xyz.
    """
    fn = "group_points"
    _check_points(fn, "points", points, exact=False)
    if not isinstance(centers_idx, Tensor) or centers_idx.dim() != 2:
        shape = tuple(centers_idx.shape) if isinstance(centers_idx, Tensor) else type(centers_idx).__name__
        raise ValueError(f"{fn}: centers_idx must be a (B, S) long tensor, got {shape}")
    centers = gather_points(points[..., :3], centers_idx)  # (B, S, 3)
    nn_idx = knn(centers, points, k, valid=valid, chunk_size=chunk_size)  # (B, S, k)
    grouped = gather_points(points, nn_idx)  # (B, S, k, C)
    local = grouped[..., :3] - centers.unsqueeze(2)
    neighborhoods = torch.cat([local, grouped[..., 3:]], dim=-1) if points.shape[-1] > 3 else local
    return neighborhoods, centers


def _nearest_sq_dist(x: Tensor, y: Tensor, y_valid: Tensor | None, chunk_size: int | None) -> Tensor:
    """Squared distance (B, N) from every x point to its nearest valid y point, differentiable in x and y.

    The search runs without autograd over chunks of x (peak memory O(B * chunk * M)); the distance to the
    found neighbour is then recomputed exactly with autograd, so backward stores O(B * N * 3) instead of the
    (B, N, M) matrix and the gradient is the CUDA extension's: 2 (x - y_nn) for x, scattered back to y_nn.
    """
    dtype = _work_dtype(x.dtype)
    with torch.no_grad():
        ys = _clean(y.detach(), y_valid)
        xs = x.detach().to(dtype)
        N = xs.shape[1]
        step = N if chunk_size is None else chunk_size
        parts = []
        for lo in range(0, N, step):
            dist = _pairwise_sq_dist(xs[:, lo : lo + step], ys)  # (B, chunk, M)
            if y_valid is not None:
                dist = dist.masked_fill(~y_valid.unsqueeze(1), float("inf"))
            parts.append(dist.argmin(dim=-1))
        nearest = torch.cat(parts, dim=1)  # (B, N)
    y_nn = gather_points(y.to(dtype), nearest)  # (B, N, 3)
    return (x.to(dtype) - y_nn).square().sum(dim=-1)


def _masked_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Per-cloud mean (B,) of (B, N) values over valid points (padded values, possibly NaN, are ignored)."""
    if valid is None:
        return values.mean(dim=1)
    filled = torch.where(valid, values, torch.zeros_like(values))
    return filled.sum(dim=1) / valid.sum(dim=1).clamp_min(1).to(values.dtype)


def chamfer_distance(
    a: Tensor,
    b: Tensor,
    norm: Literal["l2", "l1"] = "l2",
    a_valid: Tensor | None = None,
    b_valid: Tensor | None = None,
    chunk_size: int | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Chamfer distance between point clouds, equal to Point-MAE's `extensions/chamfer_dist` losses.

    With `d_a[i] = min_j |a_i - b_j|^2` (for every point of a) and `d_b[j] = min_i |a_i - b_j|^2`:

    * "l2" (`ChamferDistanceL2`, Point-MAE's pretraining loss): `mean(d_a) + mean(d_b)`, squared distances.
    * "l1" (`ChamferDistanceL1`): `(mean(sqrt(d_a)) + mean(sqrt(d_b))) / 2`, Euclidean distances.

    Point-MAE averages over all points of the batch at once; with equal-sized clouds that equals the mean of
    the per-cloud values computed here. With masks, each cloud averages over its own valid points and
    `reduction="mean"` weighs every cloud equally. Point-MAE's loss compares each reconstructed patch with its
    target patch: pass them as (B * groups, points per group, 3).

    The sqrt of "l1" has a zero (not NaN) gradient where a point coincides with its neighbour; the CUDA
    extension's gradient is NaN there.

    Args:
        a: (B, N, 3) first clouds (e.g. predictions).
        b: (B, M, 3) second clouds (e.g. targets).
        norm: "l2" or "l1" as above.
        a_valid: (B, N) bool, True for real points of a; None = all real.
        b_valid: (B, M) bool, True for real points of b; None = all real.
        chunk_size: points per nearest-neighbour chunk, bounding peak memory to O(B * chunk_size * max(N, M));
            None = all at once. Values and gradients do not depend on it.
        reduction: "mean" returns a scalar (mean over clouds); "none" returns (B,) per-cloud values.

    Returns:
        Scalar or (B,), differentiable with respect to `a` and `b`, float32 for half-precision inputs.

    Raises:
        ValueError: bad shapes or options, batch mismatch, clouds without valid points, NaN / inf coordinates.
    """
    fn = "chamfer_distance"
    _check_points(fn, "a", a)
    _check_points(fn, "b", b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{fn}: a batch {a.shape[0]} != b batch {b.shape[0]}")
    _check_choice(fn, "norm", norm, ("l2", "l1"))
    _check_choice(fn, "reduction", reduction, ("mean", "none"))
    _check_chunk(fn, chunk_size)
    a_valid = _check_valid(fn, "a_valid", a_valid, a)
    b_valid = _check_valid(fn, "b_valid", b_valid, b)
    _check_finite(fn, "a", a, a_valid)
    _check_finite(fn, "b", b, b_valid)
    if a_valid is not None:
        a = torch.where(a_valid.unsqueeze(-1), a, torch.zeros_like(a))  # NaN padding must not reach backward
    if b_valid is not None:
        b = torch.where(b_valid.unsqueeze(-1), b, torch.zeros_like(b))

    d_a = _nearest_sq_dist(a, b, b_valid, chunk_size)  # (B, N)
    d_b = _nearest_sq_dist(b, a, a_valid, chunk_size)  # (B, M)
    if norm == "l1":
        d_a, d_b = _safe_sqrt(d_a), _safe_sqrt(d_b)
    per_cloud = _masked_mean(d_a, a_valid) + _masked_mean(d_b, b_valid)  # (B,)
    if norm == "l1":
        per_cloud = per_cloud / 2
    return per_cloud.mean() if reduction == "mean" else per_cloud


def _safe_sqrt(values: Tensor) -> Tensor:
    """sqrt with a zero gradient at 0 (plain sqrt gives inf * 0 = NaN there)."""
    positive = values > 0
    return torch.where(
        positive, torch.where(positive, values, torch.ones_like(values)).sqrt(), torch.zeros_like(values)
    )
