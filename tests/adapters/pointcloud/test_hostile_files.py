"""Truncated and short PLY / PCD / OFF files raise a ValueError naming the file instead of reading padded points."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mmsdk.adapters.pointcloud.headers import check_body
from mmsdk.adapters.pointcloud.readers import read_points

o3d = pytest.importorskip("open3d")


def _cloud(n: int = 60) -> o3d.geometry.PointCloud:
    rng = np.random.default_rng(0)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.normal(size=(n, 3))))
    cloud.colors = o3d.utility.Vector3dVector(rng.random((n, 3)))
    return cloud


def _cut(path: Path, keep: float) -> Path:
    """A copy of `path` holding its first `keep` share of bytes."""
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


CLOUDS = [("a.ply", {"write_ascii": True}), ("b.ply", {}), ("a.pcd", {"write_ascii": True}), ("b.pcd", {})]
CLOUDS += [("c.pcd", {"compressed": True})]


@pytest.mark.parametrize(("name", "options"), CLOUDS)
@pytest.mark.parametrize("keep", [0.97, 0.6])
def test_truncated_point_clouds_raise(tmp_path: Path, name: str, options: dict, keep: float) -> None:
    cloud = _cloud()
    path = tmp_path / name
    assert o3d.io.write_point_cloud(str(path), cloud, **options)
    read = read_points(path)  # the whole file still reads exactly
    np.testing.assert_allclose(read.points, np.asarray(cloud.points), atol=1e-5)
    np.testing.assert_allclose(read.colors, np.asarray(cloud.colors), atol=1 / 255)
    with pytest.raises(ValueError, match=r"truncated or short (PLY|PCD) file") as info:
        read_points(_cut(path, keep))
    assert f"cut_{name}" in str(info.value)


@pytest.mark.parametrize(("name", "options"), [("m.off", {}), ("a.ply", {"write_ascii": True}), ("b.ply", {})])
@pytest.mark.parametrize("keep", [0.97, 0.5, 0.25])
def test_truncated_meshes_raise(tmp_path: Path, name: str, options: dict, keep: float) -> None:
    mesh = o3d.geometry.TriangleMesh.create_sphere(resolution=6)
    path = tmp_path / name
    assert o3d.io.write_triangle_mesh(str(path), mesh, write_vertex_normals=False, **options)
    assert len(read_points(path, num_mesh_samples=100)) == 100
    match = r"truncated or short (PLY|OFF) file: the header declares \d+ (vertices|faces)"
    with pytest.raises(ValueError, match=match):
        read_points(_cut(path, keep))


def test_header_claiming_a_million_vertices(tmp_path: Path) -> None:
    path = tmp_path / "liar.ply"
    header = "ply\nformat ascii 1.0\nelement vertex 1000000\nproperty float x\nproperty float y\nproperty float z\n"
    path.write_text(header + "end_header\n0 0 0\n1 1 1\n2 2 2\n")
    with pytest.raises(ValueError, match=r"liar.ply: .*header declares 1000000 vertices, the file holds 3 complete"):
        read_points(path)
    path.write_text(header.replace("1000000", "3") + "end_header\n0 0 0\n1 1 1\n2 2 2\n")
    np.testing.assert_array_equal(read_points(path).points, [[0, 0, 0], [1, 1, 1], [2, 2, 2]])


def _binary_ply(path: Path, points: np.ndarray, faces: list[list[int]], endian: str) -> None:
    """A hand-written binary PLY with a `face` element of mixed polygon sizes (and a per-face uchar after the list)."""
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[endian]
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {len(points)}"]
    lines += [f"property float {axis}" for axis in "xyz"]
    lines += [f"element face {len(faces)}", "property list uchar int vertex_indices", "property uchar flags"]
    body = b"".join(struct.pack(f"{endian}3f", *p) for p in points)
    body += b"".join(struct.pack(f"{endian}B{len(f)}iB", len(f), *f, 7) for f in faces)
    path.write_bytes(("\n".join(lines) + "\nend_header\n").encode() + body)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_binary_mixed_polygons(tmp_path: Path, endian: str) -> None:
    points = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = [[0, 1, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]  # a square pyramid: one quad, four triangles
    path = tmp_path / "pyramid.ply"
    _binary_ply(path, points, faces, endian)
    header = check_body(path)
    assert header is not None and [e.count for e in header.elements] == [5, 5]
    assert len(read_points(path, num_mesh_samples=50)) == 50
    path.write_bytes(path.read_bytes()[:-4])  # the last face loses its last index and flag byte
    with pytest.raises(ValueError, match=r"pyramid.ply: .*declares 5 faces, the file holds 4 complete faces"):
        read_points(path)


def test_short_pcd_lines_and_missing_off_colours(tmp_path: Path) -> None:
    head = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA ascii\n"
    pcd = tmp_path / "short.pcd"
    pcd.write_text(head + "1 2 3\n4 5 6\n7 8\n")  # open3d skips the short line and leaves a garbage point
    with pytest.raises(ValueError, match=r"short.pcd: .*declares 3 points, the file holds 2 .*needs 3 values"):
        read_points(pcd)
    off = tmp_path / "colour.off"
    off.write_text("COFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # COFF vertices need r g b a after xyz
    with pytest.raises(ValueError, match=r"colour.off: .*declares 3 vertices, .*fewer than the 7 numbers"):
        read_points(off)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("one_line.off", "OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "OFF, COFF, NOFF or CNOFF alone"),
        ("no_end.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "ends inside its header"),
        ("odd.ply", "ply\nformat ascii 1.0\nsecret-token 42\nend_header\n", "header line 3 is not a PLY header"),
        ("odd_type.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n1\n", "unknown type"),
    ],
)
def test_bad_headers_are_named_without_echoing_lines(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_points(path)
    message = str(info.value)
    assert name in message and "could not be read" in message
    assert "secret-token" not in message and "OFF3" not in message and "quad" not in message
