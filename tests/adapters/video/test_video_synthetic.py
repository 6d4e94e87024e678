"""The synthetic moving-shapes videos: determinism, labels, channels, real motion and the extra channels."""

from __future__ import annotations

import pytest
import torch

from mmsdk.adapters.video.synthetic import MovingShapes, MovingShapesConfig, moving_shapes_arrays

ALL_MOTIONS = ("right", "left", "up", "down", "rotate", "still")
SCENE = {"num_frames": 8, "size": 32, "motions": ALL_MOTIONS, "channels": ("rgb", "thermal", "depth"), "noise": 0.0}


def _centroids(mask: torch.Tensor) -> torch.Tensor:
    """(T, 2) centroid (x, y) in pixels of a (T, H, W) mask."""
    ys, xs = torch.meshgrid(torch.arange(mask.shape[1]), torch.arange(mask.shape[2]), indexing="ij")
    area = mask.sum((1, 2))
    return torch.stack([(mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area], dim=1)


def test_items_are_fixed_by_seed_and_index() -> None:
    ds = MovingShapes(num_samples=20, num_frames=4, size=16)
    clip, label = ds[5]
    again, label_again = MovingShapes(num_samples=20, num_frames=4, size=16)[5]
    torch.testing.assert_close(clip, again)
    assert label == label_again == 5 % 9
    assert not torch.equal(clip, ds[5 + 9][0])  # same class, another clip
    assert not torch.equal(clip, MovingShapes(num_samples=20, num_frames=4, size=16, seed=1)[5][0])
    torch.testing.assert_close(ds[-1][0], ds[19][0])
    with pytest.raises(IndexError):
        ds[20]


def test_labels_are_shape_times_motion_with_their_class_names() -> None:
    ds = MovingShapes(num_samples=10, num_frames=2, size=16, shapes=("disc", "triangle"), motions=("still", "up"))
    assert ds.class_names == ["disc/still", "disc/up", "triangle/still", "triangle/up"]
    assert ds.num_classes == 4 and ds.labels == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert (
        ds.column("label")[3] == "triangle/up" and ds.column("shape")[1] == "disc" and ds.column("motion")[2] == "still"
    )
    assert MovingShapes(num_samples=9).class_names[7] == "triangle/left"  # index = shape * len(motions) + motion
    with pytest.raises(ValueError, match="no column 'colour'"):
        ds.column("colour")


def test_channels_stack_in_order_with_values_in_range() -> None:
    ds = MovingShapes(num_samples=3, num_frames=5, size=(24, 40), channels=("thermal", "rgb", "gray", "depth"))
    assert ds.num_channels == 6
    clip, _ = ds[1]
    assert clip.shape == (5, 6, 24, 40) and clip.dtype == torch.float32
    assert clip.min() >= 0 and clip.max() <= 1 and torch.isfinite(clip).all()
    clean, _ = MovingShapes(ds.config, noise=0.0)[1]
    luma = (clean[:, 1:4] * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1)
    torch.testing.assert_close(clean[:, 4], luma)
    assert (clip - clean).std() == pytest.approx(0.03, abs=0.01)  # pixel noise
    X, y = moving_shapes_arrays({"num_samples": 4, "num_frames": 3, "size": 16, "channels": ["gray"]})
    assert X.shape == (4, 3, 1, 16, 16) and y.tolist() == [0, 1, 2, 3]
    assert MovingShapes(num_samples=4, size=16).tensors(2)[0].shape == (2, 16, 3, 16, 16)


def test_shapes_move_as_their_class_says() -> None:
    ds = MovingShapes(num_samples=36, **SCENE)
    moved: dict[str, list[torch.Tensor]] = {m: [] for m in ALL_MOTIONS}
    for i in range(len(ds)):
        clip, label = ds[i]
        centres = _centroids((clip[:, 3] > 0.45).float())  # the warm shape in the thermal channel
        moved[ds.class_names[label].split("/")[1]].append(centres[-1] - centres[0])
    for motion, shifts in moved.items():
        dx, dy = torch.stack(shifts).T  # pixels between the first and last frame, one per clip
        if motion in ("right", "left", "down", "up"):
            along, across = (dx, dy) if motion in ("right", "left") else (dy, dx)
            sign = 1 if motion in ("right", "down") else -1
            assert (sign * along > 0.25 * 32).all() and (sign * along < 0.65 * 32).all(), (motion, along)
            assert (across.abs() < 1).all(), (motion, across)
        else:
            assert (dx.abs() < 1).all() and (dy.abs() < 1).all(), (motion, dx, dy)


def test_rotation_turns_the_marked_shape_and_still_shapes_stay_put() -> None:
    ds = MovingShapes(num_samples=18, **SCENE)
    for i in range(len(ds)):
        clip, label = ds[i]
        motion = ds.class_names[label].split("/")[1]
        change = (clip[1:, :3] - clip[:-1, :3]).abs().amax()
        if motion == "still":
            assert change == 0
        elif motion == "rotate":
            assert change > 0.15  # even a spinning disc changes: its marked half turns
        if ds.class_names[label] in ("disc/rotate", "disc/still"):
            warm = clip[:, 3] > 0.45  # the disc itself covers the same pixels in every frame (up to its rim)
            assert ((warm ^ warm[:1]).sum((1, 2)) <= 0.1 * warm[0].sum()).all()
        if ds.class_names[label] == "square/rotate":  # a turning square covers other pixels
            warm = clip[:, 3] > 0.45
            assert ((warm ^ warm[:1]).sum((1, 2)) > 0.1 * warm[0].sum()).any()


def test_depth_is_nearer_on_the_shape_and_thermal_warmer() -> None:
    ds = MovingShapes(num_samples=9, **{**SCENE, "noise": 0.03})
    for i in range(len(ds)):
        clip, _ = ds[i]
        shape = clip[:, 3] > 0.45  # thermal: warm shape
        depth = clip[:, 4]
        assert depth[shape].mean() < depth[~shape].mean() - 0.2
        assert depth[shape].std() > 0.01  # a tilted surface, not a flat value
        assert clip[:, 3][shape].mean() > clip[:, 3][~shape].mean() + 0.3


def test_bad_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"MovingShapesConfig\.shapes: unknown \['star'\]"):
        MovingShapesConfig(shapes=("square", "star"))
    with pytest.raises(ValueError, match=r"motions"):
        MovingShapesConfig(motions=())
    with pytest.raises(ValueError, match=r"channels: unknown \['ir'\]"):
        MovingShapesConfig(channels=("rgb", "ir"))
    with pytest.raises(ValueError, match=r"size"):
        MovingShapesConfig(size=(32,))
    with pytest.raises(ValueError, match="unknown config key"):
        MovingShapesConfig.from_dict({"colours": 3})
    assert MovingShapesConfig.from_dict({"size": [16, 24], "channels": ["rgb", "depth"]}).frame_size == (16, 24)
