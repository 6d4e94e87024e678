"""Point-cloud data: file reading (every format, bad inputs), transforms, the synthetic shapes set, folder datasets."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsdk.adapters.pointcloud.data import (
    SHAPE_CLASSES,
    Augment,
    AugmentConfig,
    PointCloud,
    PointCloudFolder,
    ShapesDataset,
    jitter,
    make_shapes,
    normalize_unit_sphere,
    point_dropout,
    read_points,
    rotate,
    scale_translate,
    subsample,
)

o3d = pytest.importorskip("open3d")
HAS_OPS = importlib.util.find_spec("mmsdk.adapters.pointcloud.ops") is not None


def _cloud(n: int = 200, seed: int = 0) -> o3d.geometry.PointCloud:
    rng = np.random.default_rng(seed)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.normal(size=(n, 3))))
    cloud.colors = o3d.utility.Vector3dVector(rng.random((n, 3)))
    normals = rng.normal(size=(n, 3))
    cloud.normals = o3d.utility.Vector3dVector(normals / np.linalg.norm(normals, axis=1, keepdims=True))
    return cloud


def _box_mesh() -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(1.0, 2.0, 3.0)
    mesh.compute_triangle_normals()
    mesh.compute_vertex_normals()
    return mesh


# ------------------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("suffix", "has_colors", "has_normals"),
    [(".ply", True, True), (".pcd", True, True), (".xyz", False, False), (".xyzn", False, True), (".pts", True, False)],
)
def test_point_formats_round_trip(tmp_path: Path, suffix: str, has_colors: bool, has_normals: bool) -> None:
    cloud = _cloud()
    path = tmp_path / f"cloud{suffix}"
    assert o3d.io.write_point_cloud(str(path), cloud)
    read = read_points(path)
    assert read.points.dtype == np.float32 and read.points.shape == (200, 3)
    np.testing.assert_allclose(read.points, np.asarray(cloud.points), atol=1e-5)
    assert (read.colors is not None) == has_colors and (read.normals is not None) == has_normals
    if has_colors:  # .pts stores 8-bit colours
        np.testing.assert_allclose(read.colors, np.asarray(cloud.colors), atol=1 / 255)
    if has_normals:
        np.testing.assert_allclose(read.normals, np.asarray(cloud.normals), atol=1e-5)


def test_binary_ply_and_headerless_pts(tmp_path: Path) -> None:
    cloud = _cloud(50)
    o3d.io.write_point_cloud(str(tmp_path / "b.ply"), cloud, write_ascii=False)
    np.testing.assert_allclose(read_points(tmp_path / "b.ply").points, np.asarray(cloud.points), atol=1e-6)
    xyz = np.asarray(cloud.points)
    np.savetxt(tmp_path / "plain.pts", np.c_[xyz, np.full(50, 7.0)])  # x y z intensity, no count line
    np.testing.assert_allclose(read_points(tmp_path / "plain.pts").points, xyz, atol=1e-6)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".stl", ".ply"])
def test_meshes_are_sampled(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"box{suffix}"
    assert o3d.io.write_triangle_mesh(str(path), _box_mesh())
    read = read_points(path, num_mesh_samples=500, seed=1)
    assert read.points.shape == (500, 3) and read.normals is not None
    assert (read.points > -1e-5).all() and (read.points < np.array([1, 2, 3]) + 1e-5).all()
    on_face = np.isclose(read.points, 0, atol=1e-5) | np.isclose(read.points, [1, 2, 3], atol=1e-5)
    assert on_face.any(axis=1).all()  # every sample lies on the box surface
    np.testing.assert_array_equal(read.points, read_points(path, num_mesh_samples=500, seed=1).points)
    assert not np.array_equal(read.points, read_points(path, num_mesh_samples=500, seed=2).points)


def test_numpy_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(30, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", np.c_[xyz, np.ones((30, 3))])  # extra columns are ignored
    np.testing.assert_array_equal(read_points(tmp_path / "a.npy").points, xyz)
    colors = rng.integers(0, 256, (30, 3), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", xyz=xyz, colors=colors, normals=xyz)
    read = read_points(tmp_path / "b.npz")
    np.testing.assert_allclose(read.colors, colors / 255.0, atol=1e-6)
    np.testing.assert_array_equal(read.features(["xyz", "rgb", "normal"]), np.c_[xyz, read.colors, xyz])


def test_non_finite_points_are_dropped(tmp_path: Path) -> None:
    cloud = _cloud(10)
    points = np.asarray(cloud.points).copy()
    points[3] = np.nan
    points[5, 1] = np.inf
    cloud.points = o3d.utility.Vector3dVector(points)
    for name, ascii_ in [("nan_ascii.pcd", True), ("nan_binary.pcd", False)]:
        o3d.io.write_point_cloud(str(tmp_path / name), cloud, write_ascii=ascii_)
        read = read_points(tmp_path / name)
        keep = np.isfinite(points).all(axis=1)
        assert np.isfinite(read.points).all() and len(read) == keep.sum() == 8
        np.testing.assert_allclose(read.colors, np.asarray(cloud.colors)[keep], atol=1 / 255)  # colours stay aligned


def _write(path: Path, data: str | bytes | np.ndarray) -> Path:
    if isinstance(data, np.ndarray):
        np.save(path, data)
        return path
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "error", "match"),
    [
        ("empty.ply", "", ValueError, "empty"),
        ("cloud.las", "1 2 3\n", ValueError, "unsupported extension.*\\.ply"),
        ("garbage.ply", "not a ply file\n", ValueError, "could not be read"),
        ("garbage.pcd", b"\x00\x01\x02 junk", ValueError, "could not be read"),
        ("flat.xyz", "1 2\n3 4\n", ValueError, "3-D coordinates"),
        ("flat.npy", np.zeros((5, 2)), ValueError, "3-D coordinates"),
        ("none.npy", np.zeros((0, 3)), ValueError, "no points"),
        ("nan.npy", np.full((4, 3), np.nan), ValueError, "all 4 points"),
        ("tree.npy", np.zeros(3), ValueError, r"\(N, 3\+\)"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path: Path, name: str, data: str | bytes | np.ndarray, error: type, match: str):
    path = _write(tmp_path / name, data)
    with pytest.raises(error, match=match) as info:
        read_points(path)
    assert name in str(info.value)


def test_missing_file_and_npz_keys(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.ply"):
        read_points(tmp_path / "nowhere.ply")
    np.savez(tmp_path / "keys.npz", coords=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"keys.npz.*'points' or 'xyz'"):
        read_points(tmp_path / "keys.npz")


def test_features_channels() -> None:
    cloud = PointCloud(np.zeros((4, 3), np.float32), normals=np.ones((4, 3), np.float32))
    assert cloud.features(["normal", "xyz"]).shape == (4, 6)
    with pytest.raises(ValueError, match="no rgb"):
        cloud.features(["xyz", "rgb"])
    with pytest.raises(ValueError, match="unknown point channel"):
        cloud.features(["depth"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------------- transforms


def test_normalize_unit_sphere() -> None:
    points = np.random.default_rng(0).normal(3.0, 5.0, size=(2, 100, 6))
    out = normalize_unit_sphere(points)
    np.testing.assert_allclose(out[..., :3].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out[..., :3], axis=-1).max(axis=1), 1.0)
    np.testing.assert_array_equal(out[..., 3:], points[..., 3:])
    torch_out = normalize_unit_sphere(torch.from_numpy(points))
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-12)
    for degenerate in (np.array([[1.0, 2.0, 3.0]]), np.tile([[1.0, 2.0, 3.0]], (5, 1))):
        np.testing.assert_array_equal(normalize_unit_sphere(degenerate), 0.0)  # centred, never NaN


def test_subsample_random() -> None:
    points = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    out = subsample(points, 32, "random", np.random.default_rng(1))
    assert out.shape == (32, 4) and len(np.unique(out, axis=0)) == 32
    np.testing.assert_array_equal(out, subsample(points, 32, "random", np.random.default_rng(1)))
    assert not np.array_equal(out, subsample(points, 32, "random", np.random.default_rng(2)))
    padded = subsample(points[:10], 25, "random", np.random.default_rng(0))  # fewer points than asked
    assert padded.shape == (25, 4) and len(np.unique(padded, axis=0)) == 10
    batch = subsample(torch.from_numpy(np.stack([points, points])), 16, "random", np.random.default_rng(0))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 16, 4)


@pytest.mark.skipif(not HAS_OPS, reason="mmsdk.adapters.pointcloud.ops is not available")
def test_subsample_fps() -> None:
    points = np.random.default_rng(0).normal(size=(2, 300, 3)).astype(np.float32)
    out = subsample(points, 64, "fps", np.random.default_rng(0))
    assert out.shape == (2, 64, 3)
    np.testing.assert_array_equal(out[:, 0], points[:, 0])  # FPS starts at the first point, like pointnet2_ops
    np.testing.assert_array_equal(out, subsample(points, 64, "fps", np.random.default_rng(5)))
    for cloud in out:
        assert len(np.unique(cloud, axis=0)) == 64

    # FPS spreads points: its worst coverage beats a random subset's
    def coverage(sub: np.ndarray, full: np.ndarray) -> float:
        return float(np.linalg.norm(full[:, None] - sub[None], axis=-1).min(axis=1).max())

    random = subsample(points[0], 64, "random", np.random.default_rng(0))
    assert coverage(out[0], points[0]) < coverage(random, points[0])


AUGMENTS = {
    "scale_translate": scale_translate,
    "rotate": rotate,
    "jitter": jitter,
    "point_dropout": point_dropout,
    "augment": Augment(AugmentConfig(rotate_axis="y", jitter_sigma=0.01, dropout_max_ratio=0.5)),
}


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_augmentations_keep_shape_and_are_seeded(name: str) -> None:
    transform = AUGMENTS[name]
    points = np.random.default_rng(0).normal(size=(3, 64, 6))
    out = transform(points, np.random.default_rng(7))
    assert out.shape == points.shape and np.isfinite(out).all()
    assert not np.array_equal(out, points)
    np.testing.assert_array_equal(out, transform(points, np.random.default_rng(7)))
    assert not np.array_equal(out, transform(points, np.random.default_rng(8)))
    torch_out = transform(torch.from_numpy(points), np.random.default_rng(7))  # same draws on a tensor
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-12)


def test_augmentation_semantics() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(128, 6))
    rotated = rotate(points, rng, axis="z")
    np.testing.assert_allclose(rotated[:, 2:], points[:, 2:])  # z and extra columns unchanged
    np.testing.assert_allclose(np.linalg.norm(rotated[:, :2], axis=1), np.linalg.norm(points[:, :2], axis=1))
    assert np.abs(jitter(points, rng, sigma=1.0, clip=0.05) - points).max() <= 0.05 + 1e-12
    ratio = (scale_translate(points, rng, shift=0.0) / points)[:, :3]  # per-axis constant in [2/3, 3/2]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape))
    assert ((ratio >= 2 / 3) & (ratio <= 1.5)).all()
    dropped = point_dropout(points, np.random.default_rng(3), max_ratio=0.875)
    changed = ~np.isclose(dropped, points).all(axis=1)
    assert changed.any() and np.allclose(dropped[changed], points[0])  # dropped points become the first point


def test_augment_config() -> None:
    assert len(Augment().steps) == 1  # Point-MAE: scale-and-translate only
    config = AugmentConfig.from_dict({"scale": [0.8, 1.2], "rotate_axis": "z"})
    assert config.scale == (0.8, 1.2) and len(Augment(config.to_dict()).steps) == 2
    with pytest.raises(ValueError, match="rotate_axis"):
        AugmentConfig(rotate_axis="w")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout_max_ratio"):
        AugmentConfig(dropout_max_ratio=1.0)


# ------------------------------------------------------------------------------------------------------ datasets


def _radial_histograms(points: np.ndarray) -> np.ndarray:
    radii = np.sort(np.linalg.norm(points, axis=-1), axis=-1)  # (M, N)
    return np.stack([np.histogram(r, bins=16, range=(0.0, 1.0))[0] for r in radii]) / points.shape[1]


def test_make_shapes() -> None:
    points, labels, names = make_shapes(12, num_points=256, seed=0)
    assert names == list(SHAPE_CLASSES) and len(names) == 10
    assert points.shape == (120, 256, 3) and points.dtype == np.float32 and labels.dtype == np.int64
    assert np.isfinite(points).all() and np.bincount(labels).tolist() == [12] * 10
    np.testing.assert_allclose(points.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(points, axis=-1).max(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(points, make_shapes(12, num_points=256, seed=0)[0])
    assert not np.allclose(points, make_shapes(12, num_points=256, seed=1)[0])
    # labels mean something: nearest class mean of radial histograms, fit on 8 shapes per class, tested on 4
    features = _radial_histograms(points)
    train = np.arange(len(labels)) % 12 < 8
    means = np.stack([features[train & (labels == c)].mean(axis=0) for c in range(10)])
    predicted = np.argmin(((features[~train, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == labels[~train]).mean() > 0.5  # chance is 0.1


def test_shapes_dataset_split() -> None:
    train = ShapesDataset("train", num_per_class=5, num_points=64, test_fraction=0.4)
    test = ShapesDataset("test", num_per_class=5, num_points=64, test_fraction=0.4)
    assert len(train) == 30 and len(test) == 20
    assert torch.bincount(test.labels).tolist() == [2] * 10
    flat_train, flat_test = train.points.flatten(1), test.points.flatten(1)
    assert torch.cdist(flat_test, flat_train).min() > 0  # no shape in both splits
    points, label = test[0]
    assert points.shape == (64, 3) and isinstance(label, int)
    augmented = ShapesDataset("train", 5, 64, test_fraction=0.4, augment=Augment(), augment_seed=0)
    np.testing.assert_array_equal(augmented[3][0], augmented[3][0])
    assert not torch.equal(augmented[3][0], train[3][0])


def test_point_cloud_folder(tmp_path: Path) -> None:
    (tmp_path / "boxes").mkdir()
    (tmp_path / "blobs" / "nested").mkdir(parents=True)
    o3d.io.write_triangle_mesh(str(tmp_path / "boxes" / "a.obj"), _box_mesh())
    o3d.io.write_triangle_mesh(str(tmp_path / "boxes" / "b.stl"), _box_mesh())
    o3d.io.write_point_cloud(str(tmp_path / "blobs" / "c.pcd"), _cloud(300))
    np.save(tmp_path / "blobs" / "nested" / "d.npy", np.random.default_rng(0).normal(size=(40, 3)))
    (tmp_path / "blobs" / "notes.txt").write_text("ignored")
    data = PointCloudFolder(tmp_path, num_points=128, seed=0, num_mesh_samples=1000, cache=True)
    assert data.class_names == ["blobs", "boxes"] and len(data) == 4
    assert [label for _, label in data.files] == [0, 0, 1, 1]
    for index in range(len(data)):
        points, _ = data[index]
        assert points.shape == (128, 3) and points.dtype == torch.float32
        torch.testing.assert_close(points.norm(dim=1).max(), torch.tensor(1.0))
        torch.testing.assert_close(points, data[index][0])  # seeded: reproducible
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 128, 3) and labels.tolist() == [0, 0, 1, 1]
    coloured = PointCloudFolder(tmp_path, 64, channels=("xyz", "rgb"), augment=Augment(), class_names=["blobs"])
    assert len(coloured) == 2 and coloured[0][0].shape == (64, 6)
    with pytest.raises(ValueError, match="no rgb"):
        coloured[1]  # the .npy file has no colours
    with pytest.raises(FileNotFoundError, match="missing"):
        PointCloudFolder(tmp_path / "missing")


def test_import_without_open3d() -> None:
    code = (
        "import sys; sys.modules['open3d'] = None\n"
        "import numpy as np\n"
        "from mmsdk.adapters.pointcloud import data\n"
        "pts = data.normalize_unit_sphere(np.random.default_rng(0).normal(size=(50, 3)))\n"
        "data.Augment({'jitter_sigma': 0.01})(pts, np.random.default_rng(0))\n"
        "try:\n    data.make_shapes(1)\nexcept ImportError as e:\n    assert 'open3d' in str(e)\n"
        "else:\n    raise SystemExit(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_resampled_clouds_serve_fresh_subsets_reproducibly() -> None:
    from mmsdk.adapters.pointcloud.resampled import ResampledClouds

    dense = torch.randn(3, 40, 3)
    data = ResampledClouds(dense, torch.tensor([0, 1, 2]), 16, None)
    torch.manual_seed(0)
    first, label = data[1]
    second, _ = data[1]
    assert first.shape == (16, 3) and label == 1 and not torch.equal(first, second)  # a new subset every access
    assert all(bool((dense[1] == p).all(dim=-1).any()) for p in first)  # points of the dense cloud
    torch.manual_seed(0)
    assert torch.equal(data[1][0], first)  # seeded by torch's global RNG
    with pytest.raises(ValueError, match="n <= N_dense"):
        ResampledClouds(dense, None, 41, None)
    with pytest.raises(ValueError, match="2 labels for 3 clouds"):
        ResampledClouds(dense, torch.tensor([0, 1]), 16, None)
