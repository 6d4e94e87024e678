"""Does Point-MAE pretraining help on the bundled shapes? Pretrained vs scratch with few labels; frozen features.

Protocol, per seed (the seed drives the pretraining, the initialisations, the labelled subsets and the episodes):

1. **Pretrain** Point-MAE (MAE objective, random masking) on every training cloud of the bundled 10-class shapes,
   labels unused: each step draws a fresh random subset of `points` of each (denser) cloud and Point-MAE's
   scale-and-translate augmentation.
2. **Fine-tune with few labels**: for K labelled clouds per class, train the classifier twice with the same budget
   (steps, batch, optimizer, augmentation): from scratch and from the pretrained backbone. Test accuracy is
   reported plainly (one fixed subset of `points` per test cloud) and with test-time voting (Point-MAE's
   `validate_vote`: logits averaged over random subsets of the denser test clouds with random per-axis scaling).
3. **Frozen features** (mean-pooled encoder outputs) of the pretrained encoder and of the same encoder at its
   random initialisation: `evaluation.linear_probe` (LinearSVC-style, every training label) and
   `evaluation.few_shot` N-way K-shot episodes (frozen-feature variant; see its docstring).

Results are mean ± std over seeds. The per-batch grouping and Chamfer timings at Point-MAE's size (B = 32, 1024
points, 64 groups x 32) are read from `benchmarks/results/pointcloud_ops.json` (`benchmarks/pointcloud_ops.py`).

The default model is scaled for a CPU budget of about 15 minutes (512 points, 32 groups of 32, so every point lies
in about two groups as in Point-MAE; 4 blocks of width 128); `--points 1024 --groups 64` gives Point-MAE's sizes.

    python benchmarks/pointmae_shapes.py            # the full run (writes benchmarks/results/pointmae_shapes.*)
    python benchmarks/pointmae_shapes.py --quick    # a 1-minute smoke run (writes outputs/pointmae_shapes_quick/)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mmsdk
from mmsdk.adapters.pointcloud.data import Augment, ShapesDataset
from mmsdk.adapters.pointcloud.evaluation import embed, few_shot, linear_probe, vote_predict
from mmsdk.adapters.pointcloud.resampled import ResampledClouds
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.models import build_model

logger = logging.getLogger("benchmarks.pointmae_shapes")

RESULTS = Path(__file__).resolve().parent / "results"


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """Point-MAE, scaled by the command-line sizes."""
    heads = max(1, args.dim // 32)
    return {
        "adapter": "pointmae",
        "adapter_config": {
            "num_points": args.points,
            "num_groups": args.groups,
            "group_size": args.group_size,
            "embed_hidden": args.embed // 4,
            "embed_local": args.embed // 2,
            "embed_global": args.embed,
            "cls_hidden": 256,
        },
        "encoder": {"dim": args.dim, "depth": args.depth, "heads": heads, "drop_path": 0.1},
        "decoder": {"dim": args.dim, "depth": 2, "heads": heads},
        "objective": "mae",
    }


def quiet_trainer(steps: int, seed: int, root: Path) -> dict[str, Any]:
    return {"max_steps": steps, "seed": seed, "logger": "none", "progress_bar": False, "default_root_dir": str(root)}


@torch.no_grad()
def held_out_chamfer(model: torch.nn.Module, points: torch.Tensor, ratio: float) -> float:
    """Chamfer loss of hidden groups on fixed clouds with one fixed mask (eval mode)."""
    model.eval()
    batch = model.tokenize(points)
    mask = random_mask(batch.batch_size, batch.num_tokens, ratio, generator=torch.Generator().manual_seed(123))
    out = model(batch, mask)
    return float(model.adapter.reconstruction_loss(out.pred, batch, mask.target)["chamfer"])


def labelled_subset(labels: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Indices of k training clouds per class, drawn with a seeded generator."""
    rng = np.random.default_rng([seed, k])
    chosen = [rng.choice(np.flatnonzero(labels.numpy() == c), k, replace=False) for c in np.unique(labels.numpy())]
    return np.sort(np.concatenate(chosen))


def frozen_metrics(
    model: torch.nn.Module, data: dict[str, torch.Tensor], args: argparse.Namespace, seed: int
) -> dict[str, float]:
    """Linear-probe and few-shot accuracy of frozen mean-pooled encoder features."""
    train_f, test_f = embed(model, data["train_plain"]), embed(model, data["test_plain"])  # (M, D), (T, D)
    out = {"linear_probe": linear_probe(train_f, data["train_labels"], test_f, data["test_labels"])}
    features = torch.cat([train_f, test_f])  # (M + T, D): no labels were used to learn them
    labels = torch.cat([data["train_labels"], data["test_labels"]])
    for n_way in args.ways:
        mean, _ = few_shot(features, labels, n_way, args.shots, args.queries, args.episodes, seed=seed)
        out[f"few_shot_{n_way}way_{args.shots}shot"] = mean
    return out


def run_seed(seed: int, data: dict[str, torch.Tensor], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Pretraining, frozen-feature evaluation and the few-label fine-tuning grid for one seed."""
    config = model_config(args)
    augment = Augment({"scale_translate": True})
    result: dict[str, Any] = {"seed": seed}

    torch.manual_seed(seed)
    random_model = build_model(config)
    start, cpu = time.perf_counter(), time.process_time()
    pre = mmsdk.pretrain(
        config,
        ResampledClouds(data["train_dense"], None, args.points, augment),
        masking={"strategy": "random", "ratio": args.mask_ratio},
        optim={"lr": args.pretrain_lr, "weight_decay": 0.05, "warmup_ratio": 0.05},
        trainer=quiet_trainer(args.pretrain_steps, seed, work / f"pre{seed}"),
        batch_size=args.batch_size,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    pre_dir = work / f"pretrained{seed}"
    mmsdk.save_pretrained(pre.model, pre_dir)
    result["pretrain"] = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "seconds_per_step": seconds / args.pretrain_steps,
        "final_train_loss": pre.metrics.get("train/loss"),
        "test_chamfer_random_init": held_out_chamfer(random_model, data["test_plain"], args.mask_ratio),
        "test_chamfer_pretrained": held_out_chamfer(pre.model, data["test_plain"], args.mask_ratio),
    }
    logger.info("seed %d: pretrained %d steps in %.0f s: %s", seed, args.pretrain_steps, seconds, result["pretrain"])

    result["frozen"] = {
        "pretrained": frozen_metrics(pre.model, data, args, seed),
        "random_init": frozen_metrics(random_model, data, args, seed),
    }
    logger.info("seed %d: frozen features %s", seed, result["frozen"])

    head = {"task": "classification", "num_outputs": int(data["train_labels"].max()) + 1, "dropout": 0.5}
    result["finetune"] = {}
    for k in args.labels_per_class:
        subset = labelled_subset(data["train_labels"], k, seed)
        train = ResampledClouds(data["train_dense"][subset], data["train_labels"][subset], args.points, augment)
        for init in ("scratch", "pretrained"):
            start, cpu = time.perf_counter(), time.process_time()
            run = mmsdk.finetune(
                config,
                head,
                train,
                test_data=(data["test_plain"], data["test_labels"]),
                pretrained=str(pre_dir) if init == "pretrained" else None,
                optim={"lr": args.finetune_lr, "weight_decay": 0.05, "warmup_ratio": 0.1},
                trainer=quiet_trainer(args.finetune_steps, seed, work / f"ft{seed}_{k}_{init}"),
                batch_size=min(args.finetune_batch_size, len(subset)),
            )
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            generator = torch.Generator().manual_seed(seed)
            logits = vote_predict(run.model, data["test_dense"], args.points, args.votes, generator, (2 / 3, 3 / 2))
            vote = float((logits.argmax(1) == data["test_labels"]).float().mean())
            entry = {"test_acc": run.metrics["test/acc"], "test_acc_vote": vote, "seconds": seconds, "cpu_seconds": cpu}
            result["finetune"][f"k{k}_{init}"] = entry
            logger.info("seed %d, %d labels/class, %s: %s", seed, k, init, entry)
    return result


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds (population std) of every reported number."""
    first = runs[0]
    summary: dict[str, Any] = {"finetune": {}, "frozen": {}, "pretrain": {}}
    for key, metrics in first["finetune"].items():
        summary["finetune"][key] = {m: mean_std([r["finetune"][key][m] for r in runs]) for m in metrics}
    for init, metrics in first["frozen"].items():
        summary["frozen"][init] = {m: mean_std([r["frozen"][init][m] for r in runs]) for m in metrics}
    for m in first["pretrain"]:
        summary["pretrain"][m] = mean_std([float(r["pretrain"][m]) for r in runs])
    return summary


def fmt(stat: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The result tables."""
    s, cfg = report["summary"], report["config"]
    n = len(cfg["seeds"])
    lines = [
        f"Point-MAE on the bundled shapes ({cfg['train_clouds']} training / {cfg['test_clouds']} test clouds, "
        f"10 classes), accuracy in % (mean ± std over {n} seeds); model {cfg['points']} points, {cfg['groups']} "
        f"groups x {cfg['group_size']}, encoder {cfg['depth']} x {cfg['dim']}; pretraining {cfg['pretrain_steps']} "
        f"steps, fine-tuning {cfg['finetune_steps']} steps.",
        "",
        f"| labelled clouds per class | init | test acc | test acc (voting, {cfg['votes']} votes) |",
        "|---:|---|---:|---:|",
    ]
    for key, stats in s["finetune"].items():
        k, init = key[1:].split("_", 1)
        lines.append(f"| {k} | {init} | {fmt(stats['test_acc'])} | {fmt(stats['test_acc_vote'])} |")
    metrics = list(next(iter(s["frozen"].values())))
    lines += ["", "| frozen encoder | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for init, stats in s["frozen"].items():
        lines.append(f"| {init} | " + " | ".join(fmt(stats[m]) for m in metrics) + " |")
    p = s["pretrain"]
    lines += [
        "",
        f"Held-out Chamfer L2 of hidden groups (fixed mask): {fmt(p['test_chamfer_random_init'], 1.0, 4)} at random "
        f"init, {fmt(p['test_chamfer_pretrained'], 1.0, 4)} after pretraining.",
        f"Pretraining: {fmt(p['seconds_per_step'], 1.0, 3)} s/step (wall clock). Whole benchmark: "
        f"{report['total_seconds']:.0f} s wall clock, {report['total_cpu_seconds']:.0f} s of CPU time, "
        f"{report['environment']['cpu_threads']} torch thread(s) ({report['environment']['machine']}).",
    ]
    ops = report.get("ops_timings")
    if ops:
        lines += [
            "",
            f"Per-batch op timings at Point-MAE's size (B={ops['batch_size']}, {ops['num_points']} points, "
            f"{ops['num_groups']} groups x {ops['group_size']}), CPU median from `pointcloud_ops.json`: "
            + ", ".join(f"{name} {ms:.1f} ms" for name, ms in ops["cpu_median_ms"].items())
            + ".",
        ]
    return "\n".join(lines) + "\n"


def ops_timings() -> dict[str, Any] | None:
    """Grouping and Chamfer timings of `benchmarks/pointcloud_ops.py`, if its results exist."""
    path = RESULTS / "pointcloud_ops.json"
    if not path.is_file():
        logger.warning("%s not found; run benchmarks/pointcloud_ops.py for the op timings", path)
        return None
    ops = json.loads(path.read_text())
    cpu = ops["results"]["cpu"]
    names = ("grouping", "chamfer_l2_fwd", "chamfer_l2_fwdbwd")
    return {**ops["config"], "cpu_median_ms": {name: cpu[name]["median_ms"] for name in names}, "source": path.name}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--quick", action="store_true", help="a 1-minute smoke run with tiny sizes")
    add("--seeds", type=int, nargs="+", default=[0, 1])
    add("--num-per-class", type=int, default=60, help="shapes per class (a quarter is held out for test)")
    add("--points", type=int, default=512)
    add("--groups", type=int, default=32)
    add("--group-size", type=int, default=32)
    add("--embed", type=int, default=128, help="mini-PointNet width (hidden / local layers are 1/4 and 1/2 of it)")
    add("--dim", type=int, default=128)
    add("--depth", type=int, default=4)
    add("--mask-ratio", type=float, default=0.6)
    add("--pretrain-steps", type=int, default=800)
    add("--pretrain-lr", type=float, default=1e-3)
    add("--batch-size", type=int, default=32, help="pretraining batch")
    add("--labels-per-class", type=int, nargs="+", default=[5, 10])
    add("--finetune-steps", type=int, default=150)
    add("--finetune-lr", type=float, default=1e-3)
    add("--finetune-batch-size", type=int, default=16)
    add("--votes", type=int, default=10)
    add("--ways", type=int, nargs="+", default=[5, 10])
    add("--shots", type=int, default=10)
    add("--queries", type=int, default=20)
    add("--episodes", type=int, default=10)
    add("--threads", type=int, default=1, help="torch CPU threads (1 was fastest on a busy 2-core machine)")
    add("--output", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.num_per_class, args.points, args.groups, args.group_size = [0], 8, 128, 16, 16
        args.embed, args.dim, args.depth, args.pretrain_steps, args.finetune_steps = 64, 32, 1, 10, 10
        args.labels_per_class, args.votes, args.shots, args.queries, args.episodes = [2], 2, 2, 3, 2
        args.output = args.output or Path("outputs/pointmae_shapes_quick")
    args.output = args.output or RESULTS
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import lightning  # noqa: F401  (imported first: it sets its loggers' levels on import)

    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric", "mmsdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()

    common = {"num_per_class": args.num_per_class, "num_points": 2 * args.points, "seed": 0, "test_fraction": 0.25}
    train_set, test_set = ShapesDataset("train", **common), ShapesDataset("test", **common)
    data = {
        "train_dense": train_set.points,  # (M, 2N, 3) uniform surface samples: any N of them are a random subset
        "test_dense": test_set.points,  # (T, 2N, 3)
        "train_plain": train_set.points[:, : args.points].contiguous(),  # (M, N, 3) one fixed subset per cloud
        "test_plain": test_set.points[:, : args.points].contiguous(),  # (T, N, 3)
        "train_labels": train_set.labels,
        "test_labels": test_set.labels,
    }
    seconds = time.perf_counter() - start
    logger.info("shapes: %d train / %d test clouds (%.0f s)", len(train_set), len(test_set), seconds)

    with tempfile.TemporaryDirectory(prefix="pointmae_shapes_") as tmp:
        runs = [run_seed(seed, data, args, Path(tmp)) for seed in args.seeds]
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    report = {
        "config": {
            **{k: (v.name if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "train_clouds": len(train_set),
            "test_clouds": len(test_set),
            "model": model_config(args),
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
        },
        "summary": summarize(runs),
        "runs": runs,
        "ops_timings": ops_timings(),
        "total_seconds": total,
        "total_cpu_seconds": total_cpu,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "pointmae_shapes.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "pointmae_shapes.md").write_text(markdown(report))
    logger.info("done in %.0f s (%.0f s CPU); wrote %s", total, total_cpu, args.output / "pointmae_shapes.json")
    logger.info("\n%s", markdown(report))


if __name__ == "__main__":
    main()
