"""Pictures and tables the demos share (matplotlib and rich are imported only when one is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def plot_confusion(labels: torch.Tensor, predicted: torch.Tensor, names: list[str], title: str, path: Path) -> Path:
    """Draws the (K, K) confusion matrix of (T,) labels and predictions (rows true, columns predicted) as a PNG."""
    from mmsdk.adapters._plotting import pyplot, save_figure

    k = len(names)
    matrix = torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).numpy()  # (K, K) counts
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    image = ax.imshow(matrix, cmap="Blues")
    for row in range(k):
        for col in range(k):
            if matrix[row, col]:
                color = "white" if matrix[row, col] > matrix.max() / 2 else "black"
                ax.text(col, row, str(matrix[row, col]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.trace(matrix) / max(1, matrix.sum()))
    ax.set_title(f"{title} (accuracy {accuracy:.1%})", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def accuracy_table(summary: dict[str, Any], model: str, items: str, vote: bool = False) -> Any:
    """The demos' rich table of test accuracy: `model` pretrained + fine-tuned, the same model from scratch, chance.

    Args:
        summary: a demo summary with `split` (labels_per_class, labelled, train, test) and `test_accuracy`.
        model: the pretrained family's name, e.g. "VideoMAE".
        items: what the examples are called, e.g. "clips".
        vote: add the `test_acc_vote` column (test-time voting).
    """
    from rich.table import Table

    split = summary["split"]
    table = Table(
        title=f"Test accuracy, {split['labels_per_class']} labels per class "
        f"({split['labelled']} labelled of {split['train']} training {items}, {split['test']} test {items})"
    )
    table.add_column("classifier")
    table.add_column("accuracy", justify="right")
    if vote:
        table.add_column("with voting", justify="right")
    names = {
        "pretrained": f"{model} pretrained + fine-tuned",
        "scratch": "same model from scratch",
        "chance": "chance (majority class)",
    }
    for name, acc in summary["test_accuracy"].items():
        cells = [names.get(name, name), f"{acc['test_acc']:.1%}"]
        if vote:
            cells.append("" if acc.get("test_acc_vote") is None else f"{acc['test_acc_vote']:.1%}")
        table.add_row(*cells)
    return table
