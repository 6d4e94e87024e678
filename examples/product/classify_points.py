"""Classify a point cloud with an exported mmsdk Point-MAE classifier (numpy + onnxruntime only, no torch or open3d).

    python examples/product/classify_points.py classifier.onnx cloud.ply [--top 5] [--seed 0]

Reads `.npy` (an (N, C) array), `.xyz`/`.txt`/`.pts`/`.csv` (one point per line, whitespace or comma separated,
`#` comments) or `.ply` (ASCII or binary; the vertex element's x y z, then any other vertex properties). The
Point-MAE graph groups the points it is given but does not normalize them, so this script prepares the cloud
as the training data pipeline (`PointCloudFolder`) does: `num_points` points drawn at random without replacement
(a smaller cloud keeps every point and repeats random ones), then centred at the centroid and scaled so the
farthest point has norm 1. Prints the top classes, one `name<TAB>probability` line each, best first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mmsdk.export.runtime import OnnxModel

CLASSIFIER_TASKS = ("classification", "multilabel")
TEXT_SUFFIXES = (".xyz", ".txt", ".pts", ".csv")
# PLY property types -> numpy type codes (byte order added per file).
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


def check_classifier(model: OnnxModel) -> tuple[int, int, str]:
    """(num_points, channels per point, task) of a point-cloud classifier; ValueError for another model."""
    task = model.task
    cfg = model.adapter_config
    if task not in CLASSIFIER_TASKS or "num_points" not in cfg:
        raise ValueError(
            f"{model.path.name} is not a point-cloud classifier (adapter {model.metadata.get('mmsdk.adapter')!r}, "
            f"task {task!r}); export a Point-MAE model fine-tuned with task: classification"
        )
    return int(cfg["num_points"]), int(cfg.get("in_channels", 3)), str(task)


def _read_ply(handle: BinaryIO, path: Path) -> np.ndarray:
    """The vertex properties (N, P) of a PLY file, x y z first; ValueError for PLY files this reader cannot parse."""
    if handle.readline().strip() != b"ply":
        raise ValueError(f"{path} does not start with 'ply'")
    fmt, count, names, types, in_vertex, before_vertex = None, None, [], [], False, False
    while True:
        line = handle.readline()
        if not line:
            raise ValueError(f"{path}: the PLY header has no end_header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            in_vertex = words[1] == "vertex"
            if in_vertex:
                count = int(words[2])
            elif count is None and int(words[2]) > 0:
                before_vertex = True
        elif words[0] == "property" and in_vertex:
            if words[1] == "list":
                raise ValueError(f"{path}: list properties in the vertex element are not supported")
            types.append(_PLY_TYPES.get(words[1], ""))
            names.append(words[2])
    if count is None or not {"x", "y", "z"} <= set(names) or "" in types:
        raise ValueError(f"{path}: no vertex element with x y z properties of known types")
    if before_vertex:
        raise ValueError(f"{path}: the vertex element must come first")
    if fmt == "ascii":
        rows = [handle.readline().split() for _ in range(count)]
        if any(len(row) < len(names) for row in rows):
            raise ValueError(f"{path}: fewer than {count} complete vertex lines")
        data = np.array([row[: len(names)] for row in rows], dtype=np.float64).reshape(count, len(names))
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + code) for name, code in zip(names, types)])
        raw = handle.read(dtype.itemsize * count)
        if len(raw) < dtype.itemsize * count:
            raise ValueError(f"{path}: the file ends before its {count} vertices")
        record = np.frombuffer(raw, dtype=dtype, count=count)
        data = np.stack([record[name].astype(np.float64) for name in names], axis=1)
    else:
        raise ValueError(f"{path}: unknown PLY format {fmt!r}")
    xyz = [names.index(axis) for axis in "xyz"]
    rest = [i for i in range(len(names)) if i not in xyz]
    return data[:, xyz + rest]


def read_cloud(path: Path) -> np.ndarray:
    """The points (N, C) float64 of a `.npy`, text or `.ply` file, x y z first."""
    if not path.is_file():
        raise FileNotFoundError(f"no point cloud file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = np.load(path, allow_pickle=False)
    elif suffix in TEXT_SUFFIXES:
        text = path.read_text().replace(",", " ")
        points = np.loadtxt(text.splitlines(), comments="#", ndmin=2)
    elif suffix == ".ply":
        with path.open("rb") as handle:
            points = _read_ply(handle, path)
    else:
        raise ValueError(f"{path}: unsupported extension {suffix!r}; use .npy, .ply or one of {TEXT_SUFFIXES}")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] < 3:
        raise ValueError(f"{path}: expected (N, 3+) points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: the cloud holds NaN or Inf coordinates")
    return points


def prepare(points: np.ndarray, num_points: int, channels: int, seed: int = 0) -> np.ndarray:
    """`num_points` points (num_points, channels) float32, centred and scaled to the unit sphere, as in training."""
    if points.shape[1] < channels:
        raise ValueError(f"the model takes {channels} channels per point, the cloud has {points.shape[1]}")
    points = points[:, :channels]
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    if n >= num_points:
        index = rng.choice(n, num_points, replace=False)
    else:
        index = np.concatenate([rng.permutation(n), rng.integers(0, n, num_points - n)])
    chosen = points[index].copy()
    centred = chosen[:, :3] - chosen[:, :3].mean(axis=0)
    radius = float(np.linalg.norm(centred, axis=1).max())
    chosen[:, :3] = centred / radius if radius > 1e-12 else centred
    return chosen.astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad model or input, with a message)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="the exported point-cloud classifier (.onnx)")
    parser.add_argument("cloud", type=Path, help="a .npy, .ply, .xyz, .txt, .pts or .csv point cloud")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the point resampling (default 0)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    try:
        model = OnnxModel(args.model)
        num_points, channels, _ = check_classifier(model)
        cloud = prepare(read_cloud(args.cloud), num_points, channels, args.seed)
        best = model.top_classes(model(cloud[None])[0], args.top)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, probability in best:
        print(f"{name}\t{probability:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
