"""The built-in tasks' losses and metrics, and a multilabel model fine-tuned end to end (BCE, val/map)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mmsdk
from mmsdk.models.tasks import Classification, Forecast, Multilabel, Regression


def test_real_valued_tasks_ignore_missing_targets() -> None:
    outputs = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    targets = torch.tensor([[1.0, float("nan")], [5.0, 4.0]])
    for task in (Regression(2), Forecast(2)):
        loss, metrics = task.evaluate(outputs, targets)
        assert float(loss) == pytest.approx(4 / 3) and float(metrics["mae"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"targets have shape \(2, 3\) but the head predicts \(2, 2\)"):
        Regression(2).evaluate(outputs, torch.zeros(2, 3))


def test_classification_checks_class_ids() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    loss, metrics = Classification(2).evaluate(logits, torch.tensor([0, 0]))
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([0, 0])))
    assert float(metrics["acc"]) == 0.5
    with pytest.raises(ValueError, match="integer class ids"):
        Classification(2).evaluate(logits, torch.tensor([0.0, 1.0]))
    soft = torch.tensor([[0.7, 0.3], [0.0, 1.0]])  # mixup: a blend of two classes
    loss, metrics = Classification(2).evaluate(logits, soft)
    torch.testing.assert_close(loss, F.cross_entropy(logits, soft))
    assert float(metrics["acc"]) == 1.0
    with pytest.raises(ValueError, match="sum to 1"):
        Classification(2).evaluate(logits, torch.tensor([[0.7, 0.7], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 2\)"):
        Classification(2).evaluate(logits, torch.tensor([0, 2]))


def test_multilabel_bce_skips_unknown_labels_and_map_is_per_label() -> None:
    task = Multilabel(3)
    logits = torch.tensor([[3.0, -3.0, 0.5], [-2.0, 2.0, 0.1]])
    targets = torch.tensor([[1.0, 0.0, float("nan")], [0.0, 1.0, 1.0]])
    loss, metrics = task.evaluate(logits, targets)
    known = torch.isfinite(targets)
    expected = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    torch.testing.assert_close(loss, expected)
    assert float(metrics["label_acc"]) == 1.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        task.evaluate(logits, torch.full((2, 3), 1.5))
    soft, _ = task.evaluate(logits, torch.full((2, 3), 0.5))  # mixup's blends of two label sets
    torch.testing.assert_close(soft, F.binary_cross_entropy_with_logits(logits, torch.full((2, 3), 0.5)))
    with pytest.raises(ValueError, match=r"\(batch, labels\) = \(2, 3\)"):
        task.evaluate(logits, torch.zeros(2))
    metric = task.epoch_metrics()["map"]
    perfect = torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.3], [0.1, 0.9, 0.7]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    metric.update(*task.metric_inputs(perfect, labels))
    assert float(metric.compute()) == pytest.approx(1.0)


def test_multilabel_fine_tuning_logs_mean_average_precision(tmp_path: Path) -> None:
    """Labels: which of 3 channels has a positive level. PatchTST with RevIN would normalize the level away, so the
    adapter runs without it; the model learns the labels (val/map well above chance)."""
    g = torch.Generator().manual_seed(0)
    n, length, channels = 96, 32, 3
    level = torch.randn(n, 1, channels, generator=g)
    x = level + 0.3 * torch.randn(n, length, channels, generator=g)
    y = (level[:, 0] > 0).float()  # (n, 3)
    model = {
        "adapter": "patchtst",
        "adapter_config": {
            "context_length": length,
            "num_channels": channels,
            "patch_len": 8,
            "stride": 8,
            "revin": False,
        },
        "encoder": {"dim": 16, "depth": 1, "heads": 2},
        "objective": "bert",
    }
    trainer = {"max_steps": 60, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    result = mmsdk.finetune(
        model,
        {"task": "multilabel", "num_outputs": 3},
        (x[:64], y[:64]),
        val_data=(x[64:], y[64:]),
        test_data=(x[64:], y[64:]),
        optim={"lr": 3e-3},
        trainer=trainer,
        batch_size=16,
    )
    assert {"val/loss", "val/label_acc", "val/map", "test/map"} <= set(result.metrics)
    assert result.metrics["test/map"] > 0.85
