"""Pure-torch point-cloud ops (FPS, kNN, grouping, Chamfer) against brute-force references, plus ONNX export.

Every correctness test runs on CPU and, where a GPU exists, on CUDA (`gpu`-marked parameters).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from mmsdk.adapters.pointcloud import ops
from mmsdk.adapters.pointcloud.ops import chamfer_distance, farthest_point_sample, gather_points, group_points, knn

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def rand_points(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0, device: str = "cpu") -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def fps_reference(points: np.ndarray, num_samples: int, start: int) -> list[int]:
    """Textbook FPS on one (N, 3) cloud: next = argmax over points of the distance to the nearest sample."""
    dist = np.full(len(points), np.inf)
    chosen = [start]
    for _ in range(num_samples - 1):
        dist = np.minimum(dist, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
        chosen.append(int(np.argmax(dist)))
    return chosen


def direct_chamfer(a: Tensor, b: Tensor, norm: str) -> Tensor:
    """Per-cloud Chamfer (B,) from the full (B, N, M) distance matrix, as Point-MAE's extension defines it."""
    dist = ((a.unsqueeze(2) - b.unsqueeze(1)) ** 2).sum(-1)  # (B, N, M)
    d_a, d_b = dist.min(dim=2).values, dist.min(dim=1).values
    if norm == "l2":
        return d_a.mean(1) + d_b.mean(1)
    return (d_a.sqrt().mean(1) + d_b.sqrt().mean(1)) / 2


# ---------------------------------------------------------------------------------------------------- FPS


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "B", "N", "S"), [(torch.float64, 3, 200, 32), (torch.float32, 2, 513, 64)])
def test_fps_matches_reference(device: str, dtype: torch.dtype, B: int, N: int, S: int) -> None:
    points = rand_points(B, N, 3, dtype=dtype, device=device)
    idx = farthest_point_sample(points, S)
    assert idx.shape == (B, S) and idx.dtype == torch.long and idx.device.type == device
    for b in range(B):
        assert idx[b].tolist() == fps_reference(points[b].double().cpu().numpy(), S, start=0)


def test_fps_random_start_is_seeded_and_follows_reference() -> None:
    points = rand_points(4, 300, 3, dtype=torch.float64)
    first = farthest_point_sample(points, 20, start="random", generator=torch.Generator().manual_seed(7))
    again = farthest_point_sample(points, 20, start="random", generator=torch.Generator().manual_seed(7))
    other = farthest_point_sample(points, 20, start="random", generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first[:, 0], other[:, 0])
    assert not torch.equal(first[:, 0], torch.zeros(4, dtype=torch.long))
    for b in range(4):
        assert first[b].tolist() == fps_reference(points[b].numpy(), 20, start=int(first[b, 0]))


def test_fps_first_start_is_index_zero_and_deterministic() -> None:
    points = rand_points(5, 64, 3)
    idx = farthest_point_sample(points, 10)
    assert idx[:, 0].tolist() == [0] * 5
    assert torch.equal(idx, farthest_point_sample(points.clone(), 10))
    assert idx.unique(dim=1).shape[1] == 10  # distinct points while the cloud has enough of them


def test_fps_spreads_points_maximally() -> None:
    """Each sample is the point farthest from the earlier ones, so the samples are at least the final covering
    radius apart, and farther apart than a random subset."""
    points = rand_points(1, 1000, 3, dtype=torch.float64)[0]
    idx = farthest_point_sample(points[None], 48)[0]
    dist = torch.cdist(points, points)
    for i in range(1, 48):
        to_chosen = dist[:, idx[:i]].min(dim=1).values  # (N,) distance to the samples so far
        assert to_chosen[idx[i]] == to_chosen.max()
    covering_radius = dist[:, idx].min(dim=1).values.max()
    sample_dist = dist[idx][:, idx] + torch.eye(48, dtype=points.dtype) * 10
    assert sample_dist.min() >= covering_radius
    random_idx = torch.randperm(1000, generator=torch.Generator().manual_seed(1))[:48]
    random_dist = dist[random_idx][:, random_idx] + torch.eye(48, dtype=points.dtype) * 10
    assert sample_dist.min() > 2 * random_dist.min()


@pytest.mark.parametrize("device", DEVICES)
def test_fps_valid_mask_mixed_sizes(device: str) -> None:
    """Padded points (here far away, so unmasked FPS would pick them first) are never chosen; each cloud gets
    the indices it would get alone, and a cloud smaller than S repeats its first valid point."""
    sizes, N, S = [100, 37, 8, 64], 100, 16
    points = rand_points(4, N, 3, dtype=torch.float64, device=device)
    valid = torch.arange(N, device=device)[None] < torch.tensor(sizes, device=device)[:, None]
    valid[1, :5] = False  # padding at the front too: start="first" must begin at the first valid point
    points = torch.where(valid[..., None], points, torch.full_like(points, 50.0))
    points[3, ~valid[3]] = float("nan")  # NaN padding is fine as long as it is masked
    idx = farthest_point_sample(points, S, valid=valid)
    assert bool(torch.gather(valid, 1, idx).all())
    for b in range(4):
        keep = valid[b].nonzero().flatten().cpu().numpy()
        cloud = points[b, keep].cpu().numpy()
        expected = keep[fps_reference(cloud, min(S, len(keep)), start=0)].tolist()
        expected += [int(keep[0])] * (S - len(expected))
        assert idx[b].tolist() == expected, b
    assert idx[1, 0] == 5
    assert sorted(idx[2, :8].tolist()) == list(range(8))


# ---------------------------------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_knn_matches_brute_force(device: str, chunk_size: int | None) -> None:
    query, points = rand_points(3, 20, 3, seed=1, device=device), rand_points(3, 150, 3, seed=2, device=device)
    idx = knn(query, points, 9, chunk_size=chunk_size)
    assert idx.shape == (3, 20, 9) and idx.dtype == torch.long
    dist = ((query.double()[:, :, None] - points.double()[:, None]) ** 2).sum(-1)  # (B, S, N)
    expected = dist.argsort(dim=-1)[..., :9]
    assert torch.equal(idx.sort(-1).values, expected.sort(-1).values)  # same neighbour sets
    assert bool((torch.gather(dist, 2, idx).diff(dim=-1) >= 0).all())  # nearest first


def test_knn_far_from_origin_stays_exact() -> None:
    """Difference-form distances: a cloud translated by 1e4 keeps its neighbours (the expanded form would not)."""
    query, points = rand_points(2, 10, 3, dtype=torch.float64, seed=3), rand_points(2, 80, 3, dtype=torch.float64)
    expected = knn(query, points, 5)
    shifted = knn((query + 1e4).float(), (points + 1e4).float(), 5)
    assert (shifted.sort(-1).values == expected.sort(-1).values).float().mean() > 0.97  # float32 spacing ~1e-3


def test_knn_excludes_padded_points_and_fills_small_clouds() -> None:
    points = rand_points(2, 30, 3)
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[0, 10:] = False  # 10 valid points
    valid[1, :3] = False
    points[1, :3] = float("nan")
    query = rand_points(2, 6, 3, seed=5)
    idx = knn(query, points, 4, valid=valid)
    assert bool(torch.gather(valid, 1, idx.flatten(1)).all())
    alone = knn(query[1:], points[1:, 3:], 4) + 3
    assert torch.equal(idx[1:], alone)
    few = knn(query, points, 12, valid=valid)  # cloud 0 has 10 valid points < k
    assert torch.equal(few[0, :, :10].sort(-1).values, torch.arange(10).expand(6, 10))
    assert torch.equal(few[0, :, 10:], few[0, :, :1].expand(6, 2))


# ---------------------------------------------------------------------------------------------------- grouping


@pytest.mark.parametrize("device", DEVICES)
def test_group_points_shapes_and_recentring(device: str) -> None:
    xyz, rgb = rand_points(2, 200, 3, device=device), rand_points(2, 200, 3, seed=9, device=device)
    points = torch.cat([xyz, rgb], dim=-1).requires_grad_(True)
    centers_idx = farthest_point_sample(points, 16)
    neighborhoods, centers = group_points(points, centers_idx, 8)
    assert neighborhoods.shape == (2, 16, 8, 6) and centers.shape == (2, 16, 3)
    assert torch.equal(centers, gather_points(xyz, centers_idx))
    nn_idx = knn(centers, xyz, 8)
    torch.testing.assert_close(neighborhoods[..., :3] + centers[:, :, None], gather_points(xyz, nn_idx))
    assert torch.equal(neighborhoods[..., 3:], gather_points(rgb, nn_idx))  # extra channels are not re-centred
    assert bool((neighborhoods[:, :, 0, :3] == 0).all())  # each center is its own nearest neighbour
    assert float(neighborhoods[..., :3].detach().norm(dim=-1).max()) < 0.5  # local patches
    neighborhoods.sum().backward()
    assert points.grad is not None and bool(points.grad[..., 3:].any())


def test_group_points_xyz_only_and_valid_mask() -> None:
    points = rand_points(2, 50, 3)
    valid = torch.arange(50)[None] < torch.tensor([[50], [20]])
    points[1, 20:] = float("nan")
    centers_idx = farthest_point_sample(points, 8, valid=valid)
    neighborhoods, centers = group_points(points, centers_idx, 5, valid=valid)
    assert neighborhoods.shape == (2, 8, 5, 3)
    assert bool(torch.isfinite(neighborhoods).all()) and bool(torch.isfinite(centers).all())


def test_gather_points() -> None:
    points = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)
    idx = torch.tensor([[[4, 0]], [[1, 1]]])
    assert gather_points(points, idx).tolist() == [[[[8, 9], [0, 1]]], [[[12, 13], [12, 13]]]]
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        gather_points(points, idx + 1)
    with pytest.raises(ValueError, match="long tensor"):
        gather_points(points, idx.int())


# ---------------------------------------------------------------------------------------------------- Chamfer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_chamfer_matches_direct_computation(device: str, norm: str) -> None:
    a = rand_points(4, 40, 3, dtype=torch.float64, seed=1, device=device).requires_grad_(True)
    b = rand_points(4, 57, 3, dtype=torch.float64, seed=2, device=device).requires_grad_(True)
    per_cloud = chamfer_distance(a, b, norm=norm, reduction="none")
    expected = direct_chamfer(a, b, norm)
    torch.testing.assert_close(per_cloud, expected)
    loss = chamfer_distance(a, b, norm=norm)
    torch.testing.assert_close(loss, expected.mean())
    grads = torch.autograd.grad(loss, (a, b))
    expected_grads = torch.autograd.grad(expected.mean(), (a, b))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_chamfer_zero_for_identical_and_symmetric(norm: str) -> None:
    a, b = rand_points(3, 32, 3, seed=1), rand_points(3, 45, 3, seed=2)
    shuffled = a[:, torch.randperm(32)].clone().requires_grad_(True)
    zero = chamfer_distance(a, shuffled, norm=norm)
    assert zero.item() == 0.0
    (grad,) = torch.autograd.grad(zero, shuffled)
    assert bool(torch.isfinite(grad).all())  # sqrt at 0 must not turn into NaN for "l1"
    torch.testing.assert_close(chamfer_distance(a, b, norm=norm), chamfer_distance(b, a, norm=norm))


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_chamfer_chunked_equals_unchunked(norm: str) -> None:
    a = rand_points(2, 100, 3, seed=3).requires_grad_(True)
    b = rand_points(2, 70, 3, seed=4).requires_grad_(True)
    full = chamfer_distance(a, b, norm=norm)
    chunked = chamfer_distance(a, b, norm=norm, chunk_size=16)
    assert full.item() == chunked.item()
    for g_full, g_chunk in zip(torch.autograd.grad(full, (a, b)), torch.autograd.grad(chunked, (a, b))):
        assert torch.equal(g_full, g_chunk)


def test_chamfer_pointmae_patch_loss_shape() -> None:
    """Point-MAE compares every reconstructed patch with its target: (B * groups, points per group, 3)."""
    pred, target = rand_points(2 * 64, 32, 3, seed=1), rand_points(2 * 64, 32, 3, seed=2)
    loss = chamfer_distance(pred, target)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, direct_chamfer(pred, target, "l2").mean())


def test_chamfer_valid_masks_match_unpadded_clouds() -> None:
    a, b = rand_points(2, 30, 3, seed=5), rand_points(2, 40, 3, seed=6)
    a_valid = torch.arange(30)[None] < torch.tensor([[30], [12]])
    b_valid = torch.arange(40)[None] < torch.tensor([[25], [40]])
    a[1, 12:], b[0, 25:] = float("nan"), 100.0
    a.requires_grad_(True)
    per_cloud = chamfer_distance(a, b, a_valid=a_valid, b_valid=b_valid, reduction="none")
    torch.testing.assert_close(per_cloud[0], direct_chamfer(a[:1], b[:1, :25], "l2")[0])
    torch.testing.assert_close(per_cloud[1], direct_chamfer(a[1:, :12], b[1:], "l2")[0])
    (grad,) = torch.autograd.grad(per_cloud.mean(), a)
    assert bool(torch.isfinite(grad).all()) and bool((grad[1, 12:] == 0).all())


def test_chamfer_half_precision_runs_in_float32() -> None:
    a, b = rand_points(2, 20, 3, seed=1), rand_points(2, 20, 3, seed=2)
    loss = chamfer_distance(a.half(), b.half())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, chamfer_distance(a.half().float(), b.half().float()))


def test_traced_distance_path_matches_eager() -> None:
    """The elementwise distance formula used while tracing equals the eager `cdist` one."""
    x, y = rand_points(2, 33, 3, seed=1), rand_points(2, 71, 3, seed=2)
    eager = ops._pairwise_sq_dist(x, y)
    traced = (x[:, :, None] - y[:, None]).square().sum(-1)
    torch.testing.assert_close(eager, traced)


# ---------------------------------------------------------------------------------------------------- ONNX


class Grouper(nn.Module):
    """Point-MAE's tokenizer front end: FPS centers + kNN neighbourhoods, re-centred."""

    def __init__(self, num_groups: int, group_size: int) -> None:
        super().__init__()
        self.num_groups, self.group_size = num_groups, group_size

    def forward(self, points: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        centers_idx = farthest_point_sample(points, self.num_groups, valid=valid)
        neighborhoods, centers = group_points(points, centers_idx, self.group_size, valid=valid)
        return neighborhoods, centers, centers_idx


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*axis name.*:UserWarning")
def test_onnx_export_matches_eager_with_dynamic_batch_and_points(tmp_path: Path) -> None:
    model = Grouper(num_groups=12, group_size=6).eval()
    points = rand_points(2, 90, 4)
    valid = torch.ones(2, 90, dtype=torch.bool)
    batch, num_points = torch.export.Dim("batch", min=1), torch.export.Dim("num_points", min=12)
    program = torch.onnx.export(
        model,
        (points, valid),
        dynamo=True,
        dynamic_shapes=({0: batch, 1: num_points}, {0: batch, 1: num_points}),
        input_names=["points", "valid"],
        output_names=["neighborhoods", "centers", "centers_idx"],
        verbose=False,
    )
    path = tmp_path / "grouper.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for B, N, seed in [(3, 257, 1), (1, 12, 2), (5, 64, 3)]:
        x = rand_points(B, N, 4, seed=seed)
        mask = torch.ones(B, N, dtype=torch.bool)
        mask[0, N // 2 :] = B == 1  # a half-padded cloud in the multi-cloud batches
        got = session.run(None, {"points": x.numpy(), "valid": mask.numpy()})
        with torch.no_grad():
            want = model(x, mask)
        assert got[2].dtype == np.int64
        np.testing.assert_array_equal(got[2], want[2].numpy())
        np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(got[1], want[1].numpy(), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: farthest_point_sample(p[0], 4), r"rank 2 .*unsqueeze\(0\)"),
        (lambda p: farthest_point_sample(p[..., :2], 4), "need 3-D xyz coordinates"),
        (lambda p: knn(p[..., :2], p, 3), "query has 2-D coordinates.*need 3-D xyz"),
        (lambda p: chamfer_distance(p[..., :2], p[..., :2]), "need 3-D xyz coordinates"),
        (lambda p: knn(torch.cat([p, p], -1), p, 3), r"query must be \(B, N, 3\), got last dim 6"),
        (lambda p: chamfer_distance(p, torch.cat([p, p], -1)), "b must be .*got last dim 6"),
        (lambda p: farthest_point_sample(p, 11), r"num_samples=11 exceeds the number of points N \(10\)"),
        (lambda p: farthest_point_sample(p, 0), "num_samples must be >= 1"),
        (lambda p: farthest_point_sample(p, 2.0), "num_samples must be a Python int"),
        (lambda p: farthest_point_sample(p, 3, start="last"), "start='last' is not one of"),
        (lambda p: knn(p, p, 11), r"k=11 exceeds the number of points N \(10\)"),
        (lambda p: knn(p, p[:1], 3), "query batch 2 != points batch 1"),
        (lambda p: knn(p, p, 3, chunk_size=0), "chunk_size must be a positive int"),
        (lambda p: group_points(p, torch.zeros(2, 3, dtype=torch.long), 11), "k=11 exceeds"),
        (lambda p: chamfer_distance(p, p, norm="l3"), "norm='l3' is not one of"),
        (lambda p: chamfer_distance(p, p, reduction="sum"), "reduction='sum' is not one of"),
        (lambda p: farthest_point_sample(p.long(), 3), "floating-point tensor"),
        (lambda p: farthest_point_sample(p, 3, valid=torch.ones(2, 10)), "valid must be a bool tensor"),
        (lambda p: farthest_point_sample(p, 3, valid=torch.ones(2, 9, dtype=torch.bool)), r"shape \(B, N\)"),
        (
            lambda p: knn(p, p, 3, valid=torch.zeros(2, 10, dtype=torch.bool)),
            r"no point as valid in cloud\(s\) \[0, 1\]",
        ),
        (lambda p: farthest_point_sample(p[:, :0], 1), "holds no points"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(rand_points(2, 10, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fn", ["fps", "knn_query", "knn_points", "group", "chamfer"])
def test_non_finite_coordinates_are_rejected(fn: str, bad: float) -> None:
    points = rand_points(2, 10, 3)
    points[1, 4, 2] = bad
    clean = rand_points(2, 10, 3, seed=1)
    calls = {
        "fps": lambda: farthest_point_sample(points, 3),
        "knn_query": lambda: knn(points, clean, 3),
        "knn_points": lambda: knn(clean, points, 3),
        "group": lambda: group_points(points, torch.zeros(2, 2, dtype=torch.long), 3),
        "chamfer": lambda: chamfer_distance(clean, points),
    }
    kind = "NaN" if bad != bad else "infinite"
    with pytest.raises(ValueError, match=rf"has {kind} coordinates \(first at batch 1, point 4\)"):
        calls[fn]()
