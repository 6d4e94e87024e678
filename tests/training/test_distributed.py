"""Any Lightning strategy works with no code change, and data parallelism changes nothing but the speed.

- two-process DDP on CPU (gloo), both as `ddp_spawn` and as the real `ddp` strategy that relaunches a script, and
  two "machines" of one process each (`num_nodes: 2`), each launched by torchrun over the loopback interface;
- 2 ranks × batch 4 train to the same weights as 1 process × batch 8, because batch k of the ranks together is
  batch k of the single process;
- every sample is seen exactly once per epoch across 2 ranks × 2 loader workers, and a remainder is dropped,
  never padded with repeats (except for data of a single global batch), from memory and streamed from shards;
- FSDP on one GPU.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import support
import torch

import mmsdk
from mmsdk.adapters.timeseries import WindowDataset
from mmsdk.training.data import DataModule

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}
SCRIPT = Path(__file__).with_name("ddp_script.py")
# the DDP run: 2 ranks x batch 4 over 32 samples = 4 steps an epoch, 2 epochs
WORLD, BATCH, N, STEPS = 2, 4, 32, 8


ddp_script = support.training_script("ddp_script")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(seen: list[tuple[int, int, list[int], list[int]]]) -> list[list[int]]:
    """The sample indices of each recorded training batch, in order."""
    return [indices for _, _, indices, _ in seen]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real two-process `ddp` run (gloo, 2 loader workers per rank) of the script; what it wrote."""
    out = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), PYTHONUNBUFFERED="1")
    args = ["--devices", str(WORLD), "--strategy", "ddp", "--batch-size", str(BATCH), "--steps", str(STEPS)]
    args += ["--samples", str(N), "--num-workers", "2"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args], cwd=out, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"ddp script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    ranks = [torch.load(out / f"seen_rank{r}.pt") for r in range(WORLD)]
    return {"state": torch.load(out / "state_dict.pt"), "ranks": ranks}


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two "machines" of one process each (`num_nodes: 2`), each started by its own torchrun with a rendezvous
    over the loopback interface, as a multi-node job runs: what they wrote."""
    out = tmp_path_factory.mktemp("two_nodes")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env["PYTHONUNBUFFERED"] = "1"
    port = _free_port()
    procs = []
    for node in range(WORLD):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(WORLD), "--nproc-per-node", "1"]
        launch += ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port)]
        args = ["--devices", "1", "--num-nodes", str(WORLD), "--strategy", "ddp", "--batch-size", str(BATCH)]
        args += ["--steps", str(STEPS), "--samples", str(N), "--num-workers", "2"]
        command = [*launch, str(SCRIPT), str(out), *args]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        procs.append(subprocess.Popen(command, cwd=out, env=env, **pipes))
    logs = [proc.communicate(timeout=240)[0] for proc in procs]
    for node, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"node {node} failed ({proc.returncode}):\n{log[-3000:]}"
    ranks = [torch.load(out / f"seen_rank{r}.pt") for r in range(WORLD)]
    return {"state": torch.load(out / "state_dict.pt"), "ranks": ranks}


@pytest.fixture(scope="module")
def shard_ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two-process `ddp` run of :func:`ddp_run`, its samples streamed from shards (2 KB chunks): what it wrote."""
    out = tmp_path_factory.mktemp("ddp_shards")
    shards = ddp_script.write_windows(out / "shards", N)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), PYTHONUNBUFFERED="1")
    args = ["--devices", str(WORLD), "--strategy", "ddp", "--batch-size", str(BATCH), "--steps", str(STEPS)]
    args += ["--samples", str(N), "--num-workers", "2", "--shards", str(shards)]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args], cwd=out, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"ddp script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"ranks": [torch.load(out / f"seen_rank{r}.pt") for r in range(WORLD)]}


RUNS = ["ddp_run", "two_node_run"]
"""One machine with 2 processes (Lightning relaunches the script) and 2 machines × 1 process (torchrun)."""


@pytest.mark.slow
def test_two_process_ddp_trains_and_returns_the_weights(tmp_path: Path) -> None:
    t = np.arange(2000, dtype=np.float32)
    series = np.stack([np.sin(t / 12), np.cos(t / 7)], axis=1).astype(np.float32)
    initial = mmsdk.build_model(MODEL).state_dict()  # seed 0 below reproduces this init
    trainer = {
        "max_steps": 4,
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp_spawn",
        "progress_bar": False,
        "logger": "none",
        "default_root_dir": str(tmp_path),
        "seed": 0,
    }
    torch.manual_seed(0)
    result = mmsdk.pretrain(MODEL, WindowDataset(series, 32), trainer=trainer, batch_size=8)
    assert result.trainer.world_size == 2
    trained = result.model.state_dict()
    changed = [k for k in initial if initial[k].shape == trained[k].shape and not torch.equal(initial[k], trained[k])]
    assert changed, "no parameter changed: the spawned workers' weights did not come back"
    assert np.isfinite(result.metrics["train/loss"])


@pytest.mark.slow
@pytest.mark.parametrize("launch", RUNS)
def test_two_process_ddp_matches_one_process_with_the_global_batch(
    launch: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """2 ranks (on one machine or on two) × batch 4 of forecast fine-tuning (no masks, no dropout, LayerNorm) end
    at the weights of 1 process × batch 8 after 8 AdamW steps (two epochs), to float rounding: DDP averages the
    ranks' mean gradients, which is the mean gradient of the union of their batches, and that union is the single
    process's batch at every step."""
    ddp_run = request.getfixturevalue(launch)
    single, recorder = ddp_script.run(tmp_path / "single", batch_size=WORLD * BATCH, steps=STEPS, n=N)
    rank0, rank1 = (_steps(r["seen"]) for r in ddp_run["ranks"])
    alone = _steps(recorder.seen)
    assert len(rank0) == len(rank1) == len(alone) == STEPS
    for k, (a, b, whole) in enumerate(zip(rank0, rank1, alone)):
        assert sorted(a + b) == sorted(whole), f"step {k}: the ranks' batches {a} + {b} are not the batch {whole}"

    expected = single.model.state_dict()
    ddp = ddp_run["state"]
    assert ddp.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(ddp[name], value, atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")

    # the tolerance is meaningful: one process with the per-rank batch (other data per step) ends elsewhere
    other, _ = ddp_script.run(tmp_path / "other", batch_size=BATCH, steps=STEPS, n=N)
    gap = max((other.model.state_dict()[k] - v).abs().max().item() for k, v in expected.items())
    assert gap > 100 * 1e-5, gap


@pytest.mark.slow
@pytest.mark.parametrize("launch", RUNS)
def test_two_process_ddp_sees_every_sample_once_per_epoch(launch: str, request: pytest.FixtureRequest) -> None:
    """32 samples on 2 ranks × 2 loader workers × batch 4: in each of the 2 epochs every index arrives exactly
    once over both ranks (none dropped, none repeated), both workers of each rank load batches, and each rank's
    batches are those of mmsdk's DataModule built for that rank: Lightning keeps mmsdk's sampler under DDP
    (it is a DistributedSampler) instead of replacing it."""
    ddp_run = request.getfixturevalue(launch)
    for rank, record in enumerate(ddp_run["ranks"]):
        assert record["world_size"] == WORLD
        assert {w for _, _, _, workers in record["seen"] for w in workers} == {0, 1}, f"rank {rank}: one worker"
    for epoch in range(STEPS * WORLD * BATCH // N):
        counts = Counter(i for r in ddp_run["ranks"] for _, e, indices, _ in r["seen"] if e == epoch for i in indices)
        assert sorted(counts) == list(range(N)), f"epoch {epoch}: samples missing: {set(range(N)) - set(counts)}"
        assert set(counts.values()) == {1}, f"epoch {epoch}: repeated: {[i for i, c in counts.items() if c > 1]}"

    for rank, record in enumerate(ddp_run["ranks"]):
        loader = _rank_loader(ddp_script.IndexedWindows(N), BATCH, rank, WORLD)
        expected = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            expected += [batch[2].tolist() for batch in loader]
        assert _steps(record["seen"]) == expected, f"rank {rank} did not train on its DataModule shard"


@pytest.mark.slow
def test_two_process_ddp_streams_every_shard_sample_once_per_epoch(shard_ddp_run: dict[str, Any]) -> None:
    """32 samples streamed from shards on 2 ranks × 2 loader workers × batch 4: in each of the 2 epochs every index
    arrives exactly once over both ranks, both workers of each rank read, and the second epoch is reshuffled."""
    orders = []
    for rank, record in enumerate(shard_ddp_run["ranks"]):
        assert record["world_size"] == WORLD
        assert len(record["seen"]) == STEPS
        assert {w for _, _, _, workers in record["seen"] for w in workers} == {0, 1}, f"rank {rank}: one worker"
    for epoch in range(STEPS * WORLD * BATCH // N):
        batches = [indices for r in shard_ddp_run["ranks"] for _, e, indices, _ in r["seen"] if e == epoch]
        counts = Counter(i for indices in batches for i in indices)
        assert sorted(counts) == list(range(N)), f"epoch {epoch}: samples missing: {set(range(N)) - set(counts)}"
        assert set(counts.values()) == {1}, f"epoch {epoch}: repeated: {[i for i, c in counts.items() if c > 1]}"
        orders.append(batches)
    assert orders[0] != orders[1], "the second epoch streamed the first one's order"


def _rank_loader(dataset: Any, batch_size: int, rank: int, world: int, num_workers: int = 0) -> Any:
    """The training loader that mmsdk's DataModule gives rank `rank` of a `world`-rank Trainer."""
    dm = DataModule(dataset, batch_size=batch_size, num_workers=num_workers, seed=0)
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # what DataModule reads from the Trainer
    return dm.train_dataloader()


@pytest.mark.parametrize(("n", "dropped"), [(16, 0), (10, 2), (11, 3)])
def test_ranks_share_an_epoch_without_repeats_and_drop_only_the_remainder(n: int, dropped: int) -> None:
    """2 ranks × 2 loader workers × batch 2 (global batch 4) over n samples, two epochs. Each epoch has n // 4
    steps, and batch k of the two ranks together is batch k of one process with batch 4. The last
    n % 4 samples of each epoch's permutation are dropped (different ones each epoch); no sample is ever
    repeated to pad a rank. (DistributedSampler's default would pad 11 samples to 12 with a repeat, giving
    3 steps with one sample twice.)"""
    data = ddp_script.IndexedWindows(n)
    loaders = [_rank_loader(data, 2, rank, 2, num_workers=2) for rank in range(2)]
    single = DataModule(data, batch_size=4, seed=0).train_dataloader()
    for epoch in range(2):
        batches = []
        for loader in (*loaders, single):
            loader.sampler.set_epoch(epoch)
            batches.append([batch[2].tolist() for batch in loader])
        rank0, rank1, alone = batches
        assert len(rank0) == len(rank1) == len(alone) == n // 4
        assert [sorted(a + b) for a, b in zip(rank0, rank1)] == [sorted(whole) for whole in alone]
        seen = [i for batch in rank0 + rank1 for i in batch]
        assert len(seen) == len(set(seen)) == n - dropped, f"epoch {epoch}: {sorted(seen)}"


def test_data_of_one_global_batch_is_padded_not_dropped() -> None:
    """3 samples, 2 ranks × batch 4: the only (global) batch is kept, and under DDP one sample repeats so that
    both ranks have a batch of 2 (DistributedSampler's padding); all 3 samples are trained on."""
    data = ddp_script.IndexedWindows(3)
    rank0, rank1 = ([batch[2].tolist() for batch in _rank_loader(data, 4, rank, 2)] for rank in range(2))
    assert len(rank0) == len(rank1) == 1 and len(rank0[0]) == len(rank1[0]) == 2
    counts = Counter(rank0[0] + rank1[0])
    assert sorted(counts) == [0, 1, 2] and sorted(counts.values()) == [1, 1, 2]


class InitialWeights(L.Callback):
    """Copies the model's weights when training starts (after the strategy has wrapped the model)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().float().cpu().clone() for k, v in pl_module.model.state_dict().items()}


@pytest.mark.gpu
def test_fsdp_on_one_gpu_trains_finite_changed_weights(tmp_path: Path) -> None:
    """2 steps of masked pretraining with `strategy="fsdp"` on one GPU (bf16-mixed): the returned model's
    weights are all finite and differ from those training started from."""
    t = np.arange(2000, dtype=np.float32)
    series = np.stack([np.sin(t / 12), np.cos(t / 7)], axis=1).astype(np.float32)
    trainer = {
        "max_steps": 2,
        "accelerator": "gpu",
        "devices": 1,
        "strategy": "fsdp",
        "progress_bar": False,
        "logger": "none",
        "default_root_dir": str(tmp_path),
        "seed": 0,
    }
    initial = InitialWeights()
    result = mmsdk.pretrain(MODEL, WindowDataset(series, 32), trainer=trainer, batch_size=16, callbacks=[initial])
    assert type(result.trainer.strategy).__name__ == "FSDPStrategy" and result.trainer.global_step == 2
    trained = {k: v.detach().float().cpu() for k, v in result.model.state_dict().items()}
    assert initial.state and trained.keys() == initial.state.keys()
    assert all(torch.isfinite(v).all() for v in trained.values()), "non-finite weights after FSDP steps"
    changed = [k for k, v in initial.state.items() if not torch.equal(v, trained[k])]
    assert changed, "no parameter changed under FSDP"
    assert np.isfinite(result.metrics["train/loss"])


def test_fsdp_wraps_each_transformer_block_and_its_settings_are_checked() -> None:
    """`strategy: fsdp` is built with the transformer block as the wrap unit (and as the activation-checkpointing
    unit when asked); `fsdp` settings with another strategy are refused, naming the field."""
    from mmsdk.layers.block import Block
    from mmsdk.training.api import TrainerConfig, _strategy

    plain = _strategy(TrainerConfig.from_dict({"strategy": "fsdp"}))
    assert type(plain).__name__ == "FSDPStrategy" and plain._activation_checkpointing_kwargs == {}
    assert plain.kwargs["auto_wrap_policy"]._module_classes == {Block}
    config = TrainerConfig.from_dict(
        {"strategy": "fsdp", "fsdp": {"activation_checkpointing": True, "sharding": "SHARD_GRAD_OP"}}
    )
    strategy = _strategy(config)
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy.sharding_strategy.name == "SHARD_GRAD_OP"
    assert TrainerConfig.from_dict(config.to_dict()) == config
    assert _strategy(TrainerConfig.from_dict({"strategy": "ddp"})) == "ddp"
    with pytest.raises(ValueError, match=r"TrainerConfig\.fsdp: configures strategy fsdp, but strategy is 'ddp'"):
        TrainerConfig.from_dict({"strategy": "ddp", "fsdp": {"activation_checkpointing": True}})
    with pytest.raises(ValueError, match="sharding"):
        TrainerConfig.from_dict({"strategy": "fsdp", "fsdp": {"sharding": "EVERYTHING"}})


@pytest.mark.gpu
def test_fsdp_with_activation_checkpointing_wraps_every_block(tmp_path: Path) -> None:
    """On one GPU, FSDP with activation checkpointing makes every transformer block an FSDP unit with a checkpoint
    wrapper, and 3 steps of masked pretraining give a finite loss and the model's own state-dict names back."""
    t = np.arange(2000, dtype=np.float32)
    series = np.stack([np.sin(t / 12), np.cos(t / 7)], axis=1).astype(np.float32)
    trainer = {"max_steps": 3, "accelerator": "gpu", "devices": 1, "strategy": "fsdp", "progress_bar": False,
               "logger": "none", "default_root_dir": str(tmp_path), "seed": 0,
               "fsdp": {"activation_checkpointing": True}}  # fmt: skip
    result = mmsdk.pretrain(MODEL, WindowDataset(series, 32), trainer=trainer, batch_size=16)
    names = [type(m).__name__ for m in result.trainer.strategy.model.modules()]
    assert names.count("Block") >= 1 and names.count("CheckpointWrapper") == names.count("Block"), names
    assert names.count("FullyShardedDataParallel") > names.count("Block"), names  # the root and one per block
    assert np.isfinite(result.metrics["train/loss"])
    assert result.model.state_dict().keys() == mmsdk.build_model(MODEL).state_dict().keys()


RECIPE = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "timeseries" / "patchtst_pretrain.yaml"
TINY_CLI = [
    *support.PATCHTST_TINY,
    "--data.stride=8",  # more windows: an epoch long enough to be killed in
    "--trainer.accelerator=cpu",
    "--trainer.strategy=ddp",
    "--trainer.num_nodes=2",
    "--trainer.devices=1",
    "--trainer.checkpoint_every_n_steps=2",
]


def _launch_nodes(out: Path, port: int, extra: list[str]) -> list[subprocess.Popen]:
    """`mmsdk pretrain` as two one-process "machines", each started by its own torchrun (loopback rendezvous)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    mmsdk_cli = str(Path(sys.executable).with_name("mmsdk"))
    procs = []
    for node in range(2):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        launch += ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port), "--no-python"]
        command = [*launch, mmsdk_cli, "pretrain", "--config", str(RECIPE), *TINY_CLI, f"--output_dir={out}"]
        command += [f"--trainer.default_root_dir={out}", *extra]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        procs.append(subprocess.Popen(command, cwd=out.parent, env=env, start_new_session=True, **pipes))
    return procs


def _children(pid: int) -> list[int]:
    """The process ids started by `pid` (torchrun's agent → the training process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _newest_step(checkpoints: Path) -> int:
    """The step of the newest complete periodic checkpoint (its checksum is written after it), or -1."""
    steps = [int(p.name.split("=")[1].split(".")[0]) for p in checkpoints.glob("step=*.ckpt.sha256")]
    return max(steps, default=-1)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the training process through /proc")
def test_a_machine_that_dies_mid_epoch_fails_the_run_clearly_and_a_restart_resumes(tmp_path: Path) -> None:
    """Two machines pretrain; the second one's training process is killed (SIGKILL, as a machine that loses power)
    mid-epoch. The first fails within seconds instead of hanging, with one line that says a rank was lost and how to
    restart; both restarted with `--resume` continue from the newest checkpoint and finish."""
    import signal
    import time

    out = tmp_path / "run"
    out.mkdir()
    procs = _launch_nodes(out, _free_port(), ["--trainer.max_steps=100000", "--trainer.max_epochs=-1"])
    checkpoints = out / "checkpoints" / "pretrain"
    try:
        deadline = time.monotonic() + 120
        while _newest_step(checkpoints) < 6:
            assert all(p.poll() is None for p in procs), procs[0].communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the run never reached step 6"
            time.sleep(0.05)
        (trainer,) = _children(procs[1].pid)
        os.kill(trainer, signal.SIGKILL)
        log0 = procs[0].communicate(timeout=90)[0]
        procs[1].communicate(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert procs[0].returncode != 0 and procs[1].returncode != 0
    assert "mmsdk: error: lost contact with another rank of the distributed run" in log0, log0[-3000:]
    assert f"--resume {out}" in log0

    newest = _newest_step(checkpoints)
    assert newest >= 6
    procs = _launch_nodes(out, _free_port(), [f"--trainer.max_steps={newest + 3}", "--trainer.max_epochs=-1",
                                              f"--resume={out}"])  # fmt: skip
    logs = [p.communicate(timeout=180)[0] for p in procs]
    for node, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"node {node} failed to resume ({proc.returncode}):\n{log[-3000:]}"
    assert "Restored all states from the checkpoint" in logs[0], logs[0][-3000:]
    assert f"pretraining done after {newest + 3} steps" in logs[0]
    assert (out / "model").is_dir()
