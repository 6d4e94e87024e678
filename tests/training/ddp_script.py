"""A tiny forecast fine-tuning run that records which samples each rank trained on; a script for the DDP tests.

Lightning's `ddp` strategy relaunches the running script once per extra rank, so a real multi-process run has to
start from a script rather than from inside pytest. The test process runs

    python tests/training/ddp_script.py OUT_DIR --devices 2 --batch-size 4 --steps 8 --num-workers 2

with `MASTER_PORT` set to a free port, or, as one machine of a multi-node run, under torchrun:

    python -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank R --master-addr 127.0.0.1 \
        --master-port PORT tests/training/ddp_script.py OUT_DIR --devices 1 --num-nodes 2 ...

Every rank writes `OUT_DIR/seen_rank{r}.pt` (per training batch: the
global step, the sample indices and the data-loader worker that loaded each sample), and rank 0 also writes
`OUT_DIR/state_dict.pt` (the trained TaskModel's weights). The test imports :func:`run` to train the
single-process side in-process with exactly the same model, data and optimizer.

The name has no `test_` prefix, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

import mmsdk

CONTEXT, HORIZON = 32, 8
MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": CONTEXT, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2, "dropout": 0.0, "drop_path": 0.0},
    "objective": "mae",
}
HEAD = {"task": "forecast", "num_outputs": HORIZON}
OPTIM = {"lr": 1e-3, "warmup_steps": 0}


class IndexedWindows(Dataset):
    """`n` forecast pairs that also say which sample they are and which loader worker produced them.

    Items are `(inputs (32, 2), targets (8, 2), index, worker)`; mmsdk's batches use the first two entries only,
    so the last two ride along to the callbacks unchanged. `worker` is -1 when loading in the main process.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(CONTEXT + HORIZON).float().view(1, -1, 1)
        series = torch.sin(t / 3 + 6.28 * torch.rand(n, 1, 2, generator=g)) + 0.05 * torch.randn(
            n, CONTEXT + HORIZON, 2, generator=g
        )
        self.inputs, self.targets = series[:, :CONTEXT].contiguous(), series[:, CONTEXT:].contiguous()

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int, int]:
        info = get_worker_info()
        return self.inputs[index], self.targets[index], index, -1 if info is None else info.id


class SeenRecorder(L.Callback):
    """Records, for every training batch this rank receives, `(global_step, epoch, indices, workers)`."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, list[int], list[int]]] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.seen.append((trainer.global_step, trainer.current_epoch, batch[2].tolist(), batch[3].tolist()))


def tag_worker(item: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, int]:
    """A shard item with the loader worker that read it (the shards store -1, written in one process)."""
    info = get_worker_info()
    return item[0], item[1], item[2], -1 if info is None else info.id


def write_windows(directory: Path, n: int) -> Path:
    """Writes :class:`IndexedWindows` `n` to fine-tuning shards of 2 KB chunks (several chunks per rank × worker)."""
    from mmsdk.contracts.data import DataSplits
    from mmsdk.contracts.shards import write_shards
    from mmsdk.models.config import ModelConfig

    splits = DataSplits(IndexedWindows(n), batch_size=4)
    return write_shards(splits, directory, ModelConfig.from_dict(MODEL), "finetune", chunk_bytes="2KB", progress=False)


def shard_windows(directory: Path) -> Dataset:
    """The train split of :func:`write_windows`'s shards, streamed, with each item's worker recorded."""
    from mmsdk.contracts.shards import read_shards
    from mmsdk.models.config import ModelConfig

    train = read_shards(directory, ModelConfig.from_dict(MODEL), "finetune").train
    train.transform = tag_worker
    return train


def run(
    root: Path,
    devices: int = 1,
    strategy: str = "auto",
    batch_size: int = 8,
    steps: int = 8,
    n: int = 32,
    num_workers: int = 0,
    num_nodes: int = 1,
    shards: Path | None = None,
) -> tuple[mmsdk.FinetuneResult, SeenRecorder]:
    """Fine-tunes the tiny forecaster on CPU for `steps` optimizer steps; returns the result and what it saw.

    Everything that could differ between a rank and the single process is switched off: no dropout, no masks
    (forecasting draws none), LayerNorm (no batch statistics), and a loss that is a mean over equally sized
    per-rank batches, so DDP's gradient average equals the single process's gradient over the global batch.
    """
    recorder = SeenRecorder()
    trainer = {
        "max_steps": steps,
        "accelerator": "cpu",
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
        "logger": "none",
        "progress_bar": False,
        "default_root_dir": str(root),
        "seed": 0,
    }
    result = mmsdk.finetune(
        MODEL,
        HEAD,
        IndexedWindows(n) if shards is None else shard_windows(shards),
        optim=OPTIM,
        trainer=trainer,
        batch_size=batch_size,
        callbacks=[recorder],
        num_workers=num_workers,
    )
    return result, recorder


def main() -> None:
    """Runs :func:`run` with the command line's settings and writes what each rank saw, and rank 0's weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for seen_rank{r}.pt and state_dict.pt")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--num-nodes", type=int, default=1, help="machines (under torchrun: --nnodes)")
    parser.add_argument("--batch-size", type=int, default=4, help="per rank")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--samples", type=int, default=32, help="dataset size")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--shards", type=Path, help="stream the samples from these shards (write_windows)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the ranks share the machine's cores
    args.out.mkdir(parents=True, exist_ok=True)
    result, recorder = run(
        args.out / "runs",
        args.devices,
        args.strategy,
        args.batch_size,
        args.steps,
        args.samples,
        args.num_workers,
        args.num_nodes,
        args.shards,
    )
    rank = result.trainer.global_rank
    torch.save({"world_size": result.trainer.world_size, "seen": recorder.seen}, args.out / f"seen_rank{rank}.pt")
    if rank == 0:
        torch.save(result.model.state_dict(), args.out / "state_dict.pt")


if __name__ == "__main__":
    main()
