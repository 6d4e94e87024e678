"""Point-MAE adapter: grouping tokens, hidden-group Chamfer loss, tiny pretraining, classification and ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mmsdk
from mmsdk.adapters.pointcloud import ops
from mmsdk.adapters.pointcloud.data import make_shapes
from mmsdk.adapters.pointcloud.pointmae import PointMAEAdapter, PointMAEConfig
from mmsdk.contracts.adapter import build_adapter
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.export.onnx import to_onnx
from mmsdk.models import build_model, build_task_model
from mmsdk.models.config import ModelConfig

N, S, K, DIM = 128, 16, 8, 32
ADAPTER: dict[str, Any] = {"num_points": N, "num_groups": S, "group_size": K, "embed_hidden": 32}
ADAPTER |= {"embed_local": 32, "embed_global": 64, "cls_hidden": 32}
ENCODER = {"dim": DIM, "depth": 2, "heads": 2}
DECODER = {"dim": 32, "depth": 1, "heads": 2}


def _model_config(objective: str = "mae", **adapter: Any) -> ModelConfig:
    decoder = DECODER if objective == "mae" else None
    return ModelConfig.from_dict(
        {
            "adapter": "pointmae",
            "adapter_config": {**ADAPTER, **adapter},
            "encoder": ENCODER,
            "decoder": decoder,
            "objective": objective,
        }
    )


def _adapter(**overrides: Any) -> PointMAEAdapter:
    adapter = build_adapter("pointmae", {**ADAPTER, **overrides}, DIM)
    assert isinstance(adapter, PointMAEAdapter)
    return adapter.eval()


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.Tensor, torch.Tensor]:
    points, labels, _ = make_shapes(num_per_class=2, num_points=N, seed=0)
    keep = labels < 3  # 3 classes, 6 clouds
    return torch.from_numpy(points[keep]), torch.from_numpy(labels[keep])


def test_tokenize_shapes() -> None:
    adapter = _adapter()
    points = adapter.example_input(3, torch.Generator().manual_seed(0))
    batch = adapter.tokenize(points).validate()
    assert batch.tokens.shape == (3, S, DIM)
    assert batch.positions is not None and batch.positions.shape == (3, S, 3)
    assert batch.positions.dtype == torch.float32
    assert batch.targets is not None and batch.targets.shape == (3, S, K * 3)
    assert adapter.target_dim == K * 3


def test_extra_channels_are_embedded_not_reconstructed() -> None:
    adapter = _adapter(in_channels=6)
    points = adapter.example_input(2, torch.Generator().manual_seed(0))
    assert points.shape == (2, N, 6)
    batch = adapter.tokenize(points)
    assert batch.targets is not None and batch.targets.shape == (2, S, K * 3)
    changed = points.clone()
    changed[..., 3:] += 1.0
    assert not torch.allclose(adapter.tokenize(changed).tokens, batch.tokens)
    torch.testing.assert_close(adapter.tokenize(changed).targets, batch.targets)


def test_groups_reconstruct_sampled_points() -> None:
    adapter = _adapter()
    points = adapter.example_input(2, torch.Generator().manual_seed(1))
    batch = adapter.tokenize(points)
    assert batch.targets is not None and batch.positions is not None
    absolute = batch.targets.view(2, S, K, 3) + batch.positions.unsqueeze(2)  # (B, S, k, 3)
    idx = ops.knn(batch.positions, points, K)  # (B, S, k)
    torch.testing.assert_close(absolute, ops.gather_points(points, idx), atol=1e-6, rtol=0)
    # the center is its own nearest neighbour: the first re-centred point of every group is the origin
    torch.testing.assert_close(batch.targets.view(2, S, K, 3)[:, :, 0], torch.zeros(2, S, 3))


def test_translation_moves_centers_not_neighborhoods() -> None:
    adapter = _adapter()
    points = adapter.example_input(2, torch.Generator().manual_seed(2))
    shift = torch.tensor([0.5, -1.0, 2.0])
    base, moved = adapter.tokenize(points), adapter.tokenize(points + shift)
    assert base.positions is not None and moved.positions is not None
    torch.testing.assert_close(moved.positions, base.positions + shift, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.targets, base.targets, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.tokens, base.tokens, atol=1e-4, rtol=1e-4)


def test_mae_loss_finite_backward_and_hidden_only() -> None:
    torch.manual_seed(0)
    model = build_model(_model_config()).train()
    adapter = model.adapter
    points = adapter.example_input(2, torch.Generator().manual_seed(0))
    batch = model.tokenize(points)
    mask = random_mask(2, S, 0.6, generator=torch.Generator().manual_seed(1))
    out = model(batch, mask)
    assert out.pred.shape == (2, S, K * 3)
    loss = adapter.reconstruction_loss(out.pred, batch, mask.target)["chamfer"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.backbone.adapter.embed.first_conv[0].weight.grad is not None  # the group embedding learns

    pred, targets = out.pred.detach(), batch.targets
    assert targets is not None
    changed = targets.clone()
    changed[~mask.target] += 3.0  # visible groups' targets do not enter the loss
    same = adapter.reconstruction_loss(pred, batch.replace(targets=changed), mask.target)["chamfer"]
    torch.testing.assert_close(same, loss.detach())
    changed = targets.clone()
    changed[mask.target] += 3.0
    assert adapter.reconstruction_loss(pred, batch.replace(targets=changed), mask.target)["chamfer"] > loss.detach()


def test_loss_is_chamfer_over_hidden_groups() -> None:
    adapter = _adapter(loss="chamfer_l1")
    batch = adapter.tokenize(adapter.example_input(2, torch.Generator().manual_seed(3)))
    assert batch.targets is not None
    pred = torch.randn(2, S, K * 3, generator=torch.Generator().manual_seed(4)) * 0.1
    hidden = torch.zeros(2, S, dtype=torch.bool)
    hidden[:, :5] = True
    expected = ops.chamfer_distance(pred[:, :5].reshape(-1, K, 3), batch.targets[:, :5].reshape(-1, K, 3), norm="l1")
    torch.testing.assert_close(adapter.reconstruction_loss(pred, batch, hidden)["chamfer"], expected)
    # a perfect prediction up to the order of points within each group costs nothing
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(5))
    shuffled = batch.targets.view(2, S, K, 3)[:, :, perm].reshape(2, S, K * 3)
    assert float(adapter.reconstruction_loss(shuffled, batch, hidden)["chamfer"]) < 1e-6


def _fixed_batch_loss(model: torch.nn.Module, points: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        batch = model.tokenize(points)
        mask = random_mask(points.shape[0], S, 0.6, generator=torch.Generator().manual_seed(7))
        out = model(batch, mask)
        return float(model.adapter.reconstruction_loss(out.pred, batch, mask.target)["chamfer"])


def test_pretraining_lowers_chamfer(shapes: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    points, _ = shapes
    config = _model_config()
    torch.manual_seed(0)
    before = _fixed_batch_loss(build_model(config), points)
    result = mmsdk.pretrain(
        config,
        points,
        masking={"strategy": "random", "ratio": 0.6},
        optim={"lr": 2e-3, "weight_decay": 0.0},
        trainer={"max_steps": 60, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)},
        batch_size=6,
    )
    after = _fixed_batch_loss(result.model, points)
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


def test_classification_and_onnx_export(shapes: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    points, labels = shapes
    model = build_task_model(_model_config(), HeadConfig(task="classification", num_outputs=3))
    assert model.head.pooling == "mean_max"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(points), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(points)
    assert logits.shape == (points.shape[0], 3) and torch.isfinite(logits).all()

    result = to_onnx(model, tmp_path / "pointmae.onnx", verify_batch_sizes=(1, 3))
    assert result.input_name == "points"
    assert set(result.max_abs_error) == {1, 3}
    assert max(result.max_abs_error.values()) <= result.tolerance


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_head_pooling_and_linear_head(pooling: str) -> None:
    model = build_task_model(_model_config(cls_head="linear"), HeadConfig(num_outputs=4, pooling=pooling)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        assert model(model.adapter.example_input(2)).shape == (2, 4)
    with pytest.raises(ValueError, match="class token"):
        build_task_model(_model_config(), HeadConfig(num_outputs=2, pooling="first"))


def test_bad_inputs() -> None:
    adapter = _adapter()
    points = adapter.example_input(2, torch.Generator().manual_seed(0))
    nan = points.clone()
    nan[1, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        adapter.tokenize(nan)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        adapter.tokenize(points[0])
    with pytest.raises(ValueError, match="num_points=128"):
        adapter.tokenize(points[:, :100])
    with pytest.raises(ValueError, match="channels"):
        adapter.tokenize(points[..., :2])
    with pytest.raises(ValueError, match="floating point"):
        adapter.tokenize(points.long())


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_groups"):
        PointMAEConfig(num_points=16, num_groups=32, group_size=8)
    with pytest.raises(ValueError, match="group_size"):
        PointMAEConfig(num_points=16, num_groups=8, group_size=32)
    with pytest.raises(ValueError, match="in_channels"):
        PointMAEConfig(in_channels=2)
    PointMAEConfig(num_points=64, num_groups=16, group_size=16)  # overlapping groups (S·k > N) are fine


def test_recipe_data_builder() -> None:
    from mmsdk.contracts.data import build_data

    config = _model_config()
    pre = build_data({"num_per_class": 2, "batch_size": 4}, config, "pretrain")
    item = pre.train[0]
    assert isinstance(item, torch.Tensor) and item.shape == (N, 3)
    fine = build_data({"num_per_class": 2}, config, "finetune")
    cloud, label = fine.train[0]
    assert cloud.shape == (N, 3) and int(label) >= 0
    assert fine.test is not None and len(fine.test) + len(fine.train) == 20  # type: ignore[arg-type]
