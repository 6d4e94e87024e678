"""Point-MAE through the training API: reconstruction plots, pretrain → fine-tune classification, recipe data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import mmsdk
from mmsdk.adapters.pointcloud.data import SHAPE_CLASSES, make_shapes
from mmsdk.adapters.pointcloud.plots import plot_point_reconstruction
from mmsdk.adapters.pointcloud.pointmae import BatchNorm1dAnyBatch
from mmsdk.adapters.pointcloud.recipe_data import PointCloudDataConfig
from mmsdk.contracts.data import build_data
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.models import build_model
from mmsdk.training.callbacks import ReconstructionPlotter

N, S, K = 128, 16, 8
ADAPTER: dict[str, Any] = {"num_points": N, "num_groups": S, "group_size": K, "embed_hidden": 32}
ADAPTER |= {"embed_local": 32, "embed_global": 64, "cls_hidden": 32}
MODEL: dict[str, Any] = {
    "adapter": "pointmae",
    "adapter_config": ADAPTER,
    "encoder": {"dim": 32, "depth": 2, "heads": 2},
    "decoder": {"dim": 32, "depth": 1, "heads": 2},
    "objective": "mae",
}
EASY = [SHAPE_CLASSES.index(name) for name in ("box", "sphere", "torus")]


def _quiet(tmp_path: Path, steps: int, **extra: Any) -> dict[str, Any]:
    return {"max_steps": steps, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path), **extra}


def _read_png(path: Path) -> np.ndarray:
    import matplotlib.pyplot as plt

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return plt.imread(path)


@pytest.fixture(scope="module")
def easy_shapes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Box / sphere / torus, 12 clouds each: 8 per class for training, 4 for test (labels 0, 1, 2)."""
    points, labels, _ = make_shapes(num_per_class=12, num_points=N, seed=0)
    parts = [np.flatnonzero(labels == c) for c in EASY]
    train = np.concatenate([p[:8] for p in parts])
    test = np.concatenate([p[8:] for p in parts])
    relabel = {c: i for i, c in enumerate(EASY)}
    y = torch.tensor([relabel.get(int(c), -1) for c in labels], dtype=torch.long)
    x = torch.from_numpy(points)
    return x[train], y[train], x[test], y[test]


# ---------------------------------------------------------------------------------------------------------- plots


def test_plot_point_reconstruction_writes_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hidden = np.zeros(S, dtype=bool)
    hidden[::3] = True
    path = plot_point_reconstruction(
        rng.normal(size=(N, 3)),
        rng.normal(size=(S, 3)),
        0.1 * rng.normal(size=(S, K, 3)),
        torch.from_numpy(0.1 * rng.normal(size=(S, K, 3))),
        torch.from_numpy(hidden),
        tmp_path / "sub" / "recon.png",
    )
    assert path == tmp_path / "sub" / "recon.png"
    image = _read_png(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 2 * image.shape[0]  # three panels side by side
    assert image[..., :3].std() > 0.01  # not a blank canvas


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"points": np.zeros((2, N, 3))}, "points must be one"),
        ({"centers": np.zeros((S, 2))}, "centers must be"),
        ({"groups": np.zeros((S, K * 3))}, "groups must be"),
        ({"predicted": np.zeros((S, K + 1, 3))}, "predicted must have"),
        ({"hidden": np.zeros(S - 1, dtype=bool)}, "hidden must be"),
        ({"hidden": np.zeros(S)}, "bool mask"),
        ({"points": [[0.0, 0.0, 0.0]]}, "numpy array or torch tensor"),
    ],
)
def test_plot_point_reconstruction_rejects_wrong_shapes(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "points": np.zeros((N, 3)),
        "centers": np.zeros((S, 3)),
        "groups": np.zeros((S, K, 3)),
        "predicted": np.zeros((S, K, 3)),
        "hidden": np.ones(S, dtype=bool),
    }
    with pytest.raises(ValueError, match=message):
        plot_point_reconstruction(**{**args, **change}, path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_adapter_plot_uses_the_token_batch(tmp_path: Path) -> None:
    model = build_model(MODEL).eval()
    points = model.adapter.example_input(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        batch = model.tokenize(points)
        mask = random_mask(2, S, 0.6, generator=torch.Generator().manual_seed(1))
        out = model(batch, mask)
    torch.testing.assert_close(batch.context["points"], points)  # the raw cloud travels with the tokens
    path = model.adapter.plot_reconstruction(batch, out.pred, mask.target, tmp_path / "r.png")
    assert path is not None and _read_png(path).shape[0] > 200
    assert model.adapter.plot_reconstruction(batch, out.pred[..., :-1], mask.target, tmp_path / "bad.png") is None
    assert not (tmp_path / "bad.png").exists()


def test_pretraining_callback_draws_point_clouds(easy_shapes: tuple[torch.Tensor, ...], tmp_path: Path) -> None:
    points = easy_shapes[0]
    plotter = ReconstructionPlotter(points[:1], tmp_path / "plots", every_n_steps=2)
    mmsdk.pretrain(MODEL, points, trainer=_quiet(tmp_path, 3), batch_size=8, callbacks=[plotter])
    assert [p.name for p in plotter.paths] == ["reconstruction_step000002.png", "reconstruction_step000003.png"]
    assert all(_read_png(p).shape[1] > 600 for p in plotter.paths)


# ----------------------------------------------------------------------------------------------- fine-tuning


class LossRecorder(L.Callback):
    """Training losses of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any) -> None:
        self.losses.append(float(outputs["loss"]))


def test_pretrain_then_finetune_classification(easy_shapes: tuple[torch.Tensor, ...], tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = easy_shapes
    pre = mmsdk.pretrain(MODEL, x_train, masking={"ratio": 0.6}, trainer=_quiet(tmp_path / "pre", 10), batch_size=8)
    mmsdk.save_pretrained(pre.model, tmp_path / "pretrained")
    recorder = LossRecorder()
    head = {"task": "classification", "num_outputs": 3}
    result = mmsdk.finetune(
        MODEL,
        head,
        (x_train, y_train),
        test_data=(x_test, y_test),
        pretrained=str(tmp_path / "pretrained"),
        optim={"lr": 2e-3, "weight_decay": 0.0},
        trainer=_quiet(tmp_path / "ft", 90),
        batch_size=8,
        callbacks=[recorder],
    )
    loaded = result.load_report.loaded
    assert any(
        k.startswith("backbone.adapters.pointmae.embed.") for k in loaded
    )  # the mini-PointNet came from pretraining
    assert any(k.startswith("backbone.encoder.") for k in loaded)
    assert not any(k.startswith("head.") for k in loaded)
    weights = mmsdk.from_pretrained(tmp_path / "pretrained").backbone.state_dict()
    key = "adapters.pointmae.embed.first_conv.0.weight"
    assert not torch.equal(weights[key], build_model(MODEL).backbone.state_dict()[key])  # a real pretrained value
    assert len(recorder.losses) == 90
    first, last = np.mean(recorder.losses[:5]), np.mean(recorder.losses[-5:])
    assert last < 0.5 * first, (first, last)
    assert set(result.metrics) >= {"train/loss", "test/acc", "test/loss"}
    assert result.metrics["test/acc"] >= 0.6  # 12 test clouds of 3 easy classes; chance is 1/3


def test_bn_head_survives_a_training_batch_of_one() -> None:
    norm = BatchNorm1dAnyBatch(4).train()
    before = norm.running_mean.clone()
    out = norm(torch.randn(1, 4))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(norm.running_mean, before)  # one sample does not move the statistics
    norm(torch.randn(3, 4) + 5.0)
    assert (norm.running_mean > before).all()  # larger batches are plain BatchNorm


class _PlainLoaders(L.LightningDataModule):
    """A user's data module whose training loader keeps a trailing batch of one cloud."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.data = TensorDataset(x, y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=len(self.data) - 1, drop_last=False)


def test_finetune_with_a_trailing_batch_of_one(easy_shapes: tuple[torch.Tensor, ...], tmp_path: Path) -> None:
    x_train, y_train = easy_shapes[0][:9], easy_shapes[1][:9]
    recorder = LossRecorder()
    mmsdk.finetune(
        MODEL,
        {"task": "classification", "num_outputs": 3},
        _PlainLoaders(x_train, y_train),
        trainer=_quiet(tmp_path, 4),
        callbacks=[recorder],
    )
    assert len(recorder.losses) == 4 and np.isfinite(recorder.losses).all()  # batches of 8, 1, 8, 1 clouds


# ------------------------------------------------------------------------------------------------- recipe data


def _write_folder(root: Path, counts: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            points = rng.normal(size=(200, 3))
            if name == "spheres":
                points /= np.linalg.norm(points, axis=1, keepdims=True)
            np.save(root / name / f"{i}.npy", points.astype(np.float32))


def test_recipe_data_from_a_folder(tmp_path: Path) -> None:
    config = mmsdk.ModelConfig.from_dict(MODEL)
    _write_folder(tmp_path / "train", {"blobs": 5, "spheres": 4})
    data = {"folder": str(tmp_path / "train"), "test_fraction": 0.25, "batch_size": 4}
    pre = build_data(data, config, "pretrain")
    assert pre.info["class_names"] == ["blobs", "spheres"]
    assert len(pre.train) + len(pre.val) == 9  # type: ignore[arg-type]
    assert pre.train[0].shape == (N, 3) and pre.train[0].dtype == torch.float32
    fine = build_data(data, config, "finetune")
    assert fine.test is not None and fine.batch_size == 4
    test_labels = sorted(int(fine.test[i][1]) for i in range(len(fine.test)))  # type: ignore[arg-type]
    assert test_labels == [0, 1]  # one of each class held out (round(0.25 * 5) = round(0.25 * 4) = 1)
    assert len(fine.train) == 7  # type: ignore[arg-type]
    torch.testing.assert_close(fine.test[0][0], fine.test[0][0])  # test clouds are fixed (seeded)
    few = build_data({**data, "labels_per_class": 2}, config, "finetune")
    assert sorted(int(few.train[i][1]) for i in range(len(few.train))) == [0, 0, 1, 1]  # type: ignore[arg-type]

    _write_folder(tmp_path / "test", {"blobs": 2, "spheres": 3}, seed=1)
    separate = build_data({**data, "test_folder": str(tmp_path / "test")}, config, "finetune")
    assert len(separate.train) == 9 and len(separate.test) == 5  # type: ignore[arg-type]
    labels = [int(separate.test[i][1]) for i in range(5)]  # type: ignore[index]
    assert labels == [0, 0, 1, 1, 1]


def test_recipe_data_validation(tmp_path: Path) -> None:
    config = mmsdk.ModelConfig.from_dict(MODEL)
    _write_folder(tmp_path, {"a": 2})
    with pytest.raises(ValueError, match=r"PointCloudDataConfig\.channels: give 6 values per point"):
        build_data({"folder": str(tmp_path), "channels": ["xyz", "rgb"]}, config, "finetune")
    with pytest.raises(ValueError, match=r"PointCloudDataConfig\.channels\[1\]='colour' is not one of"):
        PointCloudDataConfig(channels=("xyz", "colour"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PointCloudDataConfig\.test_folder"):
        PointCloudDataConfig(test_folder=str(tmp_path))
    with pytest.raises(ValueError, match=r"PointCloudDataConfig\.labels_per_class"):
        PointCloudDataConfig(labels_per_class=0)
    with pytest.raises(FileNotFoundError, match="missing"):
        build_data({"folder": str(tmp_path / "missing")}, config, "pretrain")


def test_recipe_data_shapes_few_labels_and_augment() -> None:
    config = mmsdk.ModelConfig.from_dict(MODEL)
    data = {"num_per_class": 5, "labels_per_class": 2, "augment": {"scale_translate": True}, "seed": 3}
    fine = build_data(data, config, "finetune")
    labels = sorted(int(fine.train[i][1]) for i in range(len(fine.train)))  # type: ignore[arg-type]
    assert labels == sorted(list(range(10)) * 2)
    assert not torch.equal(fine.train[0][0], fine.train[0][0])  # augmented afresh on every access
    assert fine.test is not None and torch.equal(fine.test[0][0], fine.test[0][0])  # test clouds are not augmented
    pre = build_data(data, config, "pretrain")
    assert len(pre.train) == 40  # type: ignore[arg-type]  # pretraining uses every training cloud
