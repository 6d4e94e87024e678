"""Pictures the demos share (matplotlib is imported only when one is drawn)."""

from __future__ import annotations

from pathlib import Path

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
