"""Checkpoints: atomic writes in their own directory with a checksum, safe loading that runs no code even with
`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`, corrupt files named, rotation that keeps the last good ones, and `--resume DIR`
falling back past a truncated checkpoint."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import support
import torch

import mmsdk
from mmsdk.hub.integrity import atomic_write_bytes, checksum_path
from mmsdk.training.checkpoints import CheckpointError, SafeCheckpointIO, load_checkpoint, resolve_resume

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}


def _series(n: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 32, 2, generator=g)


def _pretrain(root: Path, steps: int, **changes: object) -> mmsdk.PretrainResult:
    trainer = {"max_steps": steps, "logger": "none", "progress_bar": False, "default_root_dir": str(root)}
    trainer.update({"checkpoint_every_n_steps": 1, **changes})
    ckpt_path = trainer.pop("ckpt_path", None)
    return mmsdk.pretrain(MODEL, _series(), trainer=trainer, batch_size=8, ckpt_path=ckpt_path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    _pretrain(root, 5)
    return root


class _Payload:
    """Unpickling this runs `os.system`-like code: here it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "pwned"))


def test_checkpoints_rotate_in_the_run_directory_with_checksums(run_dir: Path) -> None:
    names = sorted(p.name for p in (run_dir / "checkpoints" / "pretrain").iterdir())
    assert names == [
        "last.ckpt",
        "last.ckpt.sha256",
        "step=4.ckpt",
        "step=4.ckpt.sha256",
        "step=5.ckpt",
        "step=5.ckpt.sha256",
    ]
    assert not list(run_dir.rglob(".*.tmp"))
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "pretrain" / "last.ckpt")
    assert checkpoint["global_step"] == 5


def test_a_rerun_in_the_same_directory_replaces_last_instead_of_versioning(tmp_path: Path) -> None:
    _pretrain(tmp_path, 2)
    _pretrain(tmp_path, 3)
    names = {p.name for p in (tmp_path / "checkpoints" / "pretrain").glob("*.ckpt")}
    assert "last-v1.ckpt" not in names and "last.ckpt" in names
    assert load_checkpoint(tmp_path / "checkpoints" / "pretrain" / "last.ckpt")["global_step"] == 3


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "flipped"])
def test_a_damaged_checkpoint_is_named(run_dir: Path, tmp_path: Path, damage: str) -> None:
    source = (run_dir / "checkpoints" / "pretrain" / "step=5.ckpt").read_bytes()
    data = {
        "truncated": source[: len(source) // 2],
        "empty": b"",
        "garbage": np.random.default_rng(17).bytes(4096),  # makes torch's unpickler fail with an IndexError
        "flipped": source[:-100] + bytes([source[-100] ^ 0xFF]) + source[-99:],
    }[damage]
    path = tmp_path / "bad.ckpt"
    path.write_bytes(data)
    if damage == "flipped":  # a checksum taken before the damage: the bytes no longer match it
        checksum_path(path).write_bytes((run_dir / "checkpoints" / "pretrain" / "step=5.ckpt.sha256").read_bytes())
    with pytest.raises(CheckpointError, match=r"bad\.ckpt") as error:
        load_checkpoint(path)
    assert "refused" not in str(error.value)  # damaged, not a file that needs code
    with pytest.raises(CheckpointError, match=r"bad\.ckpt"):
        _pretrain(tmp_path / "resumed", 6, ckpt_path=str(path))


def test_random_bytes_are_always_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.ckpt"
    for seed in range(60):  # torch's unpickler fails on them with UnpicklingError, IndexError, KeyError, ...
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(CheckpointError, match=r"noise\.ckpt cannot be read"):
            load_checkpoint(path)


def test_a_malicious_pickle_is_refused_even_with_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"evil.ckpt was refused: it holds objects that need code"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt"):
        _pretrain(tmp_path / "resumed", 2, ckpt_path=str(evil))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the guard is real: plain torch.load of it is refused too by default
        torch.load(evil, weights_only=True)


def test_nonfinite_weights_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "nan.ckpt"
    with pytest.raises(CheckpointError, match=r"nan.ckpt: the weights are not finite \(w \(3,\): 1 NaN"):
        SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan"), 2.0])}}, path)
    assert not path.exists() and not checksum_path(path).exists()


def test_an_interrupted_write_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.bin"
    atomic_write_bytes(path, b"old")
    renames = []

    def crash(src: str, dst: str) -> None:
        renames.append((Path(src).parent, Path(dst).parent))
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert renames == [(tmp_path, tmp_path)]  # the temporary file lives in the destination directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_resume_from_a_run_directory_skips_a_truncated_newest_checkpoint(
    run_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "run" / "checkpoints"
    copy.mkdir(parents=True)
    for i, name in enumerate(["step=4.ckpt", "step=5.ckpt", "last.ckpt"]):  # oldest to newest
        for suffix in ("", ".sha256"):
            (copy / (name + suffix)).write_bytes((run_dir / "checkpoints" / "pretrain" / (name + suffix)).read_bytes())
            os.utime(copy / (name + suffix), ns=(10**18 + i, 10**18 + i))
    assert resolve_resume(tmp_path / "run") == str(copy / "last.ckpt")
    for name in ("last.ckpt", "step=5.ckpt"):  # a crash cut the two newest short
        data = (copy / name).read_bytes()
        (copy / name).write_bytes(data[:1000])
        os.utime(copy / name, ns=(2 * 10**18, 2 * 10**18))
    assert resolve_resume(tmp_path / "run") == str(copy / "step=4.ckpt")
    assert "skipping a bad checkpoint" in caplog.text and "last.ckpt" in caplog.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \.ckpt"):
        resolve_resume(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint file or run directory"):
        resolve_resume(tmp_path / "missing")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["memory", "shards"])
def test_sigkill_mid_epoch_then_resume_from_the_run_directory_is_exact(source: str, tmp_path: Path) -> None:
    """Killed with SIGKILL mid-epoch, its newest checkpoint then cut short: resuming from the run directory falls
    back to the previous good checkpoint and ends with the uninterrupted run's exact weights, with the series in
    memory or streamed from shards by 2 loader workers (whose position the checkpoint holds)."""
    script = support.training_script("crash_script")
    if source == "shards":
        pytest.importorskip("litdata")
    shards = script.write_series_shards(tmp_path / "shards") if source == "shards" else None
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(Path(script.__file__)), str(run_dir), "--sleep", "0.4"]
        + (["--shards", str(shards)] if shards else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "pretrain" / "step=7.ckpt.sha256").exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached step 7"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    checkpoints = sorted((run_dir / "checkpoints" / "pretrain").glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[:2048])  # a crash mid-write (without the atomic rename) would do this
    counter = script.CountSteps()
    resumed = script.run(run_dir, resume=str(run_dir), callbacks=[counter], shards=shards)
    assert 0 < counter.steps <= script.TOTAL_STEPS - 6  # it resumed from step >= 6, not from scratch
    full = script.run(tmp_path / "full", shards=shards)
    assert resumed.trainer.global_step == full.trainer.global_step == script.TOTAL_STEPS
    expected = dict(full.model.named_parameters())
    for name, value in resumed.model.named_parameters():
        assert torch.equal(value, expected[name]), name
