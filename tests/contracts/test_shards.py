"""Shards: every family's recipe data round-trips through them exactly, the loaders split them over ranks × workers
without repeats, shuffle the same on every run, resume mid-epoch exactly, and bad shard directories are refused."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import support
import torch

from mmsdk.contracts.data import DataSplits, build_data
from mmsdk.contracts.shards import MANIFEST, read_manifest, read_shards, write_shards
from mmsdk.demos.multimodal import DemoConfig as SceneDemo
from mmsdk.demos.multimodal import model_config as scene_model
from mmsdk.models.config import ModelConfig
from mmsdk.training import pretrain
from mmsdk.training.data import DataModule

pytest.importorskip("litdata")
ddp_script = support.training_script("ddp_script")

ENCODER = {"dim": 16, "depth": 1, "heads": 2}
PATCHTST = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 7, "patch_len": 8, "stride": 8},
    "encoder": ENCODER,
}
WINDOWS = ModelConfig.from_dict(ddp_script.MODEL)


def _audio_manifest(root: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(8):
        label = ("low", "high")[i % 2]
        t = np.arange(8000) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (300 if label == "low" else 1500) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(root / f"{i}.wav", wave.astype(np.float32), 16000)
        lines.append(f"{i}.wav,{label}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def _family(name: str, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, data section) of a tiny job of each family, from data the repository ships or generates."""
    if name == "patchtst":
        return PATCHTST, {"horizon": 8, "batch_size": 4, "stride": 512}
    if name == "moirai":  # packed windows of a synthetic corpus: the collate function is mmsdk's PackCollate
        config = {"context_length": 64, "patch_sizes": [8], "patch_size": 8}
        model = {"adapter": "moirai", "adapter_config": config, "encoder": ENCODER}
        corpus = {"statsmodels": [], "synthetic_series": 6, "synthetic_length": 128, "synthetic_min_length": 64}
        return model, {"corpus": corpus, "max_tokens": 32, "batch_size": 4}
    if name == "pointmae":
        config = {
            "num_points": 64,
            "num_groups": 8,
            "group_size": 8,
            "embed_hidden": 16,
            "embed_local": 16,
            "embed_global": 16,
        }
        return {"adapter": "pointmae", "adapter_config": config, "encoder": ENCODER}, {"num_per_class": 2}
    if name == "ssast":
        config = {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64}
        data = {"manifest": str(_audio_manifest(tmp_path)), "clip_seconds": 0.5, "batch_size": 4}
        return {"adapter": "ssast", "adapter_config": config, "encoder": ENCODER}, data
    if name == "videomae":
        config = {"num_frames": 4, "frame_size": [16, 16], "tubelet": 2, "patch": 8}
        return {"adapter": "videomae", "adapter_config": config, "encoder": ENCODER}, {"synthetic": {"num_samples": 8}}
    if name == "multimodal":
        return scene_model(SceneDemo()), {"builder": "bouncing_scene", "num_samples": 8, "val_samples": 4}
    raise AssertionError(name)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


FAMILIES = ["patchtst", "moirai", "pointmae", "ssast", "videomae", "multimodal"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_every_family_round_trips_through_shards_and_trains(family: str, stage: str, tmp_path: Path) -> None:
    """Items read back from shards equal the recipe data's (dtype and value, dicts and tuples kept); the split sizes,
    batch size, builder info and collate function come back; a training step runs from `data.shards`."""
    if family == "moirai" and stage == "finetune":
        pytest.skip("the Moirai corpus is a pretraining source")
    model_dict, data = _family(family, tmp_path)
    model = ModelConfig.from_dict(model_dict)
    splits = build_data(data, model, stage)
    out = write_shards(splits, tmp_path / "shards", model, stage, data, progress=False)
    streamed = build_data({**data, "shards": str(out)}, model, stage)
    for split in ("train", "val", "test"):
        ours, theirs = getattr(splits, split), getattr(streamed, split)
        assert (ours is None) == (theirs is None), split
        if ours is None:
            continue
        assert len(theirs) == len(ours), split
        assert type(theirs.collate_fn) is type(getattr(ours, "collate_fn", None)), split
        for index in range(len(ours)):
            assert _same(theirs[index], ours[index]), f"{split}[{index}] differs after the round trip"
    assert streamed.batch_size == splits.batch_size
    info = json.loads(json.dumps(splits.info, default=_list))
    assert {k: v for k, v in streamed.info.items() if k != "shards"} == info
    trainer = {"max_steps": 1, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path / "run")}
    if stage == "pretrain":
        result = pretrain(model_dict, streamed.train, trainer=trainer, batch_size=2)
        assert np.isfinite(result.metrics["train/loss"])


def _list(value: Any) -> Any:
    return np.asarray(value).tolist()


def _windows(tmp_path: Path, n: int) -> Path:
    return ddp_script.write_windows(tmp_path / "shards", n)


def _epoch(dataset: Any, batch_size: int = 4, num_workers: int = 2, seed: int = 0, epochs: int = 2) -> list[list[int]]:
    module = DataModule(dataset, batch_size=batch_size, num_workers=num_workers, seed=seed)
    loader = module.train_dataloader()
    return [[i for batch in loader for i in batch[2].tolist()] for _ in range(epochs)]


def test_the_order_is_a_function_of_the_seed_and_the_epoch(tmp_path: Path) -> None:
    train = read_shards(_windows(tmp_path, 40), WINDOWS, "finetune").train
    first, again, other = _epoch(train), _epoch(train), _epoch(train, seed=1)
    assert first == again  # the same on every run
    assert first[0] != first[1]  # reshuffled each epoch
    assert other[0] != first[0]
    for epoch in first:
        assert sorted(epoch) == list(range(40))


@pytest.mark.parametrize(("n", "batch_size", "dropped"), [(40, 4, 0), (41, 4, 1), (43, 4, 3), (41, 3, 5)])
def test_ranks_split_an_epoch_and_drop_the_remainder_never_repeat(
    n: int, batch_size: int, dropped: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 ranks × 2 workers (litdata reads the rank from WORLD_SIZE/GLOBAL_RANK, as a torchrun job sets them): every
    sample once across the ranks when the data divides evenly; otherwise each rank streams as many samples as the
    other, and the few left over (fewer than ranks × workers × batch size) are dropped, never repeated."""
    shards = _windows(tmp_path, n)
    seen = []
    for rank in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        train = read_shards(shards, WINDOWS, "finetune").train
        seen.append(_epoch(train, batch_size, epochs=1)[0])
    counts = Counter(seen[0] + seen[1])
    assert set(counts.values()) == {1}, "a sample was repeated"
    assert len(seen[0]) == len(seen[1]), "the ranks streamed different numbers of samples"
    assert n - len(counts) == dropped


def test_a_resumed_run_continues_the_sample_order_and_ends_with_the_same_weights(tmp_path: Path) -> None:
    """A run checkpointed every 3 steps mid-epoch (40 samples, batch 8 → 5 steps an epoch, 2 loader workers), resumed
    from its step-3 and step-7 checkpoints: the resumed runs train on exactly the batches the uninterrupted run
    trained on after those steps, and end with bit-identical weights."""
    shards = _windows(tmp_path, 40)
    model = {**ddp_script.MODEL, "encoder": {**ddp_script.MODEL["encoder"], "dropout": 0.1}}

    def run(root: Path, ckpt: str | None = None) -> tuple[Any, list[list[int]]]:
        train = read_shards(shards, WINDOWS, "pretrain").train
        train.inputs_only = False
        recorder = Seen()
        trainer = {
            "max_steps": 9,
            "logger": "none",
            "progress_bar": False,
            "default_root_dir": str(root),
            "checkpoint_every_n_steps": 1,
            "keep_all_checkpoints": True,
            "deterministic": True,
            "seed": 3,
        }
        result = pretrain(
            model, train, trainer=trainer, batch_size=8, num_workers=2, ckpt_path=ckpt, callbacks=[recorder]
        )
        return result, recorder.batches

    full, order = run(tmp_path / "full")
    assert len(order) == 9
    for step in (3, 7):
        (ckpt,) = (tmp_path / "full").rglob(f"*step={step}.ckpt")
        resumed, rest = run(tmp_path / f"resumed{step}", str(ckpt))
        assert rest == order[step:], f"resumed at step {step}"
        expected = dict(full.model.named_parameters())
        for name, value in resumed.model.named_parameters():
            assert torch.equal(value, expected[name]), name


class Seen(L.Callback):
    """The sample indices of every training batch, in order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.batches.append(batch[2].tolist())


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    return _windows(tmp_path, 40)


def test_a_chunk_cut_short_is_an_error_naming_the_file(shards: Path) -> None:
    chunk = sorted((shards / "train").glob("chunk-*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"chunk {chunk} is 100 bytes but its index records \d+: .*cut short"):
        read_shards(shards, WINDOWS, "finetune")
    chunk.unlink()
    with pytest.raises(ValueError, match=rf"chunk {chunk} is missing"):
        read_shards(shards, WINDOWS, "finetune")


def test_shards_of_another_format_version_adapter_or_stage_are_refused(shards: Path, tmp_path: Path) -> None:
    manifest = json.loads((shards / MANIFEST).read_text())
    (shards / MANIFEST).write_text(json.dumps({**manifest, "format": 0, "mmsdk_version": "0.0.1"}))
    with pytest.raises(ValueError, match=r"shard format 0 \(written by mmsdk 0\.0\.1\).*reads format 1"):
        read_manifest(shards)
    (shards / MANIFEST).write_text(json.dumps({**manifest, "mmsdk_version": "0.0.1"}))  # same format: readable
    assert len(read_shards(shards, WINDOWS, "finetune").train) == 40
    (shards / MANIFEST).write_text(json.dumps(manifest))

    timerxl = {"adapter": "timerxl", "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8}}
    with pytest.raises(ValueError, match=r"written for a model of patchtst, this model has timerxl"):
        read_shards(shards, ModelConfig.from_dict({**ddp_script.MODEL, **timerxl}), "finetune")
    other = {**ddp_script.MODEL, "adapter_config": {**ddp_script.MODEL["adapter_config"], "context_length": 64}}
    with pytest.raises(ValueError, match=r"another patchtst configuration .*context_length: 32 there, 64 here"):
        read_shards(shards, ModelConfig.from_dict(other), "finetune")

    pre = write_shards(DataSplits(torch.randn(8, 32, 2)), tmp_path / "pre", WINDOWS, "pretrain", progress=False)
    with pytest.raises(ValueError, match=r"holds pretraining items .* --stage finetune"):
        read_shards(pre, WINDOWS, "finetune")
    assert read_shards(shards, WINDOWS, "pretrain").train[0].shape == (32, 2)  # fine-tuning shards pretrain too


def test_a_manifest_may_name_only_mmsdk_shard_rebuildable_code(shards: Path) -> None:
    """A manifest handed over from elsewhere cannot make the reader import or call anything else: only mmsdk's
    functions and classes marked `shard_rebuildable` (collate functions, read-time augmentations) are rebuilt."""
    manifest = json.loads((shards / MANIFEST).read_text())
    for spec, what in (
        ({"name": "mmsdk.cli.main:pretrain", "fields": {}}, "augment"),
        ({"name": "os:system", "fields": {"command": "true"}}, "augment"),
        ({"name": "mmsdk.hub:push_to_hub", "fields": {}}, "collate"),
    ):
        manifest["splits"]["train"][what] = spec
        (shards / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match=r"refused"):
            read_shards(shards, WINDOWS, "finetune")
        manifest["splits"]["train"][what] = None
    (shards / MANIFEST).write_text(json.dumps(manifest))
    assert len(read_shards(shards, WINDOWS, "finetune").train) == 40


def test_directories_that_are_not_complete_mmsdk_shards_are_refused(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory"):
        read_shards(tmp_path / "missing", WINDOWS, "pretrain")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no mmsdk-shards\.json \(no shards\)"):
        read_shards(tmp_path / "empty", WINDOWS, "pretrain")
    with pytest.raises(ValueError, match=r"litdata shards without mmsdk's manifest"):
        read_shards(shards / "train", WINDOWS, "pretrain")
    (shards / "train" / "shard-000000.tar").write_bytes(b"webdataset")
    with pytest.raises(ValueError, match=r"mixes other files with its chunks \(shard-000000\.tar\)"):
        read_shards(shards, WINDOWS, "pretrain")
    (shards / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="is not a readable manifest"):
        read_shards(shards, WINDOWS, "pretrain")


def test_the_writer_refuses_what_it_cannot_store_or_overwrite(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = DataSplits(torch.randn(4, 32, 2))
    with pytest.raises(ValueError, match="already holds shards; pass overwrite=True"):
        write_shards(data, shards, WINDOWS, "pretrain", progress=False)
    write_shards(data, shards, WINDOWS, "pretrain", overwrite=True, progress=False)
    assert read_manifest(shards).stage == "pretrain" and read_manifest(shards).samples("train") == 4
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not an mmsdk shard directory"):
        write_shards(data, tmp_path / "notes", WINDOWS, "pretrain", overwrite=True, progress=False)
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"

    class Odd(torch.utils.data.Dataset):
        collate_fn = staticmethod(lambda items: items)

        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> Any:
            return {"x": torch.zeros(2), "when": object()}

    with pytest.raises(ValueError, match=r"collates with .*not one of mmsdk.s shard-rebuildable collate functions"):
        write_shards(DataSplits(Odd()), tmp_path / "odd", WINDOWS, "pretrain", progress=False)
    Odd.collate_fn = None
    with pytest.raises(ValueError, match="item 0 of the train split holds a object"):
        write_shards(DataSplits(Odd()), tmp_path / "odd", WINDOWS, "pretrain", progress=False)
    assert not (tmp_path / "odd").exists(), "a failed write left a directory behind"
    Odd.augment = staticmethod(lambda x: x)  # a dataset drawing an augmentation per read: one draw is frozen
    Odd.__getitem__ = lambda self, index: torch.zeros(2)
    with caplog.at_level("WARNING", "mmsdk.contracts.shards"):
        write_shards(DataSplits(Odd()), tmp_path / "odd", WINDOWS, "pretrain", progress=False)
    assert "the train split draws an augmentation anew when an item is read (Odd)" in caplog.text
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"runs in one process, not in a distributed job \(WORLD_SIZE=2\)"):
        write_shards(data, tmp_path / "ddp", WINDOWS, "pretrain", progress=False)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_read_time_augmentation_is_written_plain_and_drawn_anew_at_every_read(stage: str, tmp_path: Path) -> None:
    """Point-MAE's scale/shift augmentation: the shards hold the plain clouds and the manifest the augmentation,
    which every read then draws anew (as the in-memory dataset does), in the loader workers too."""
    model_dict, data = _family("pointmae", tmp_path)
    model = ModelConfig.from_dict(model_dict)
    augmented = {**data, "augment": {"scale_translate": True}}
    splits = build_data(augmented, model, stage)
    out = write_shards(splits, tmp_path / "shards", model, stage, augmented, progress=False)
    record = json.loads((out / MANIFEST).read_text())["splits"]["train"]["augment"]
    assert record["name"].endswith(":CloudAugment") and record["fields"]["config"]["scale_translate"] is True
    plain = build_data(data, model, stage).train
    streamed = read_shards(out, model, stage).train
    first = lambda item: item[0] if isinstance(item, tuple) else item  # noqa: E731
    a, b = first(streamed[0]), first(streamed[0])
    assert not torch.equal(a, b), "the augmentation was not drawn anew"
    base = first(plain[0])
    scale = (a - a.mean(0)).std(0) / (base - base.mean(0)).std(0)  # per-axis scale of a scaled, shifted copy
    torch.testing.assert_close(a - a.mean(0), (base - base.mean(0)) * scale, atol=1e-5, rtol=1e-4)
    assert scale.min() >= 2 / 3 - 1e-4 and scale.max() <= 3 / 2 + 1e-4
    drawn = _first_batch(streamed)  # through the loader workers
    streamed.augment = None  # the items as stored: the plain clouds
    assert _same(streamed[0], plain[0])
    stored = _first_batch(streamed)  # the same samples (same seed), unaugmented
    assert drawn.shape == stored.shape and not torch.equal(drawn, stored)


def _first_batch(dataset: Any) -> torch.Tensor:
    """The inputs of the first training batch (2 workers, seed 0)."""
    batch = next(iter(DataModule(dataset, batch_size=4, num_workers=2, seed=0).train_dataloader()))
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def test_the_audio_speed_and_shift_augmentation_is_redone_when_read(tmp_path: Path) -> None:
    from mmsdk.adapters.audio.augment import WaveAugment

    g = torch.Generator().manual_seed(0)
    clips = [(torch.sin(torch.arange(8000) / (3 + i)) + 0.01 * torch.randn(8000, generator=g), i) for i in range(4)]
    train = WaveAugment(clips, 16000, speed=0.1, shift_seconds=0.05)
    out = write_shards(DataSplits(train), tmp_path / "audio", WINDOWS, "finetune", progress=False)
    record = json.loads((out / MANIFEST).read_text())["splits"]["train"]["augment"]
    assert record == {"name": "mmsdk.adapters.audio.augment:ClipAugment",
                      "fields": {"sample_rate": 16000, "speed": 0.1, "shift_seconds": 0.05}}  # fmt: skip
    streamed = read_shards(out, WINDOWS, "finetune").train
    clip, label = streamed[2]
    assert label == 2 and clip.shape == (8000,) and not torch.equal(clip, streamed[2][0])
    streamed.augment = None
    assert torch.equal(streamed[2][0], clips[2][0])  # stored plain


def test_a_folder_that_subsamples_each_read_is_named_when_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mmsdk.adapters.pointcloud.data import PointCloudFolder

    for label in ("a", "b"):
        (tmp_path / "clouds" / label).mkdir(parents=True)
        np.save(tmp_path / "clouds" / label / "0.npy", np.random.default_rng(0).normal(size=(100, 3)))
    folder = PointCloudFolder(tmp_path / "clouds", num_points=32, seed=None)
    with caplog.at_level("WARNING", "mmsdk.contracts.shards"):
        write_shards(DataSplits(folder), tmp_path / "shards", WINDOWS, "finetune", progress=False)
    assert "draws subsampling anew when an item is read (PointCloudFolder)" in caplog.text
    caplog.clear()
    seeded = PointCloudFolder(tmp_path / "clouds", num_points=32, seed=0)  # the same items every read: no warning
    with caplog.at_level("WARNING", "mmsdk.contracts.shards"):
        write_shards(DataSplits(seeded), tmp_path / "seeded", WINDOWS, "finetune", progress=False)
    assert "anew" not in caplog.text
