"""Point-cloud evaluation: test-time voting, frozen-feature linear probe, few-shot episodes, end to end on shapes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from mmsdk.adapters.pointcloud.data import make_shapes
from mmsdk.adapters.pointcloud.evaluation import (
    embed,
    few_shot,
    few_shot_episodes,
    linear_probe,
    random_subset,
    vote_predict,
)
from mmsdk.models import EmbeddingModel, TaskModel, build_task_model

N, S, K, DIM = 64, 8, 8, 32
ADAPTER: dict[str, Any] = {"num_points": N, "num_groups": S, "group_size": K, "embed_hidden": 32}
ADAPTER |= {"embed_local": 32, "embed_global": 64, "cls_hidden": 32}
MODEL = {"adapter": "pointmae", "adapter_config": ADAPTER, "encoder": {"dim": DIM, "depth": 1, "heads": 2}}


@pytest.fixture(scope="module")
def classifier() -> TaskModel:
    torch.manual_seed(0)
    return build_task_model(MODEL, {"task": "classification", "num_outputs": 3}).eval()


def _clouds(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))  # (B, n, 3)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_subset_picks_distinct_points_of_each_cloud() -> None:
    points = _clouds(2, 100)
    subset = random_subset(points, N, _gen(0))
    assert subset.shape == (2, N, 3)
    for b in range(2):
        rows = {tuple(p) for p in subset[b].tolist()}
        assert len(rows) == N and rows <= {tuple(p) for p in points[b].tolist()}
    permuted = random_subset(points[:, :N], N, _gen(0))  # N_total == num_points: a permutation
    assert not torch.equal(permuted, points[:, :N])
    torch.testing.assert_close(permuted.sort(dim=1).values, points[:, :N].sort(dim=1).values)
    with pytest.raises(ValueError, match="num_points"):
        random_subset(points, 101)


def test_single_vote_is_one_forward_on_the_subset(classifier: TaskModel) -> None:
    points = _clouds(3, 96)
    logits = vote_predict(classifier, points, N, votes=1, generator=_gen(1))
    with torch.no_grad():
        expected = classifier(random_subset(points, N, _gen(1)))
    assert logits.shape == (3, 3)
    torch.testing.assert_close(logits, expected)


def test_voting_is_seeded_and_averages_logits(classifier: TaskModel) -> None:
    points = _clouds(2, N)  # N_total == num_points: votes re-permute the points
    classifier.train()
    logits = vote_predict(classifier, points, N, votes=3, generator=_gen(2))
    assert classifier.training  # the mode is restored
    classifier.eval()
    torch.testing.assert_close(vote_predict(classifier, points, N, votes=3, generator=_gen(2)), logits)
    gen = _gen(2)
    with torch.no_grad():
        singles = torch.stack([classifier(random_subset(points, N, gen)) for _ in range(3)])  # (votes, B, K)
    torch.testing.assert_close(logits, singles.mean(0))
    assert not torch.allclose(singles[0], singles[1])  # the permutation changes the FPS groups
    scaled = vote_predict(classifier, points, N, votes=2, generator=_gen(2), scale=(0.67, 1.5))
    assert scaled.shape == (2, 3) and torch.isfinite(scaled).all()
    with pytest.raises(ValueError, match="votes"):
        vote_predict(classifier, points, N, votes=0)


def _blobs(per_class: int, classes: int, dim: int, seed: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    centers = torch.randn(classes, dim, generator=_gen(99)) * spread  # (classes, dim), shared across seeds
    labels = torch.arange(classes).repeat_interleave(per_class)  # (M,)
    return centers[labels] + torch.randn(len(labels), dim, generator=gen), labels


@pytest.mark.parametrize("loss", ["squared_hinge", "logistic"])
def test_linear_probe_separable_and_random_labels(loss: str) -> None:
    x_train, y_train = _blobs(30, 4, 16, seed=0, spread=4.0)
    x_test, y_test = _blobs(30, 4, 16, seed=1, spread=4.0)
    assert linear_probe(x_train, y_train + 10, x_test, y_test + 10, loss=loss) >= 0.95  # type: ignore[arg-type]
    random_train = torch.randint(0, 4, (len(y_train),), generator=_gen(3))
    random_test = torch.randint(0, 4, (len(y_test),), generator=_gen(4))
    accuracy = linear_probe(x_train, random_train, x_test, random_test, C=0.1, loss=loss)  # type: ignore[arg-type]
    assert 0.0 <= accuracy <= 0.45  # chance is 0.25
    with pytest.raises(ValueError, match="features"):
        linear_probe(x_train, y_train, x_test[:, :3], y_test)


def test_few_shot_episodes_are_seeded_and_bounded() -> None:
    features, labels = _blobs(8, 5, 8, seed=0, spread=1.0)
    accuracies = few_shot_episodes(features, labels, n_way=3, k_shot=2, queries=3, episodes=4, seed=0)
    assert len(accuracies) == 4 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert few_shot_episodes(features, labels, 3, 2, queries=3, episodes=4, seed=0) == accuracies
    mean, std = few_shot(features.numpy(), labels.numpy(), 3, 2, queries=3, episodes=4, seed=0)
    assert mean == pytest.approx(np.mean(accuracies)) and std == pytest.approx(np.std(accuracies))
    other = few_shot_episodes(features, labels, 3, 2, queries=3, episodes=20, seed=1)
    assert len(other) == 20 and other[:4] != accuracies  # different seeds draw different episodes
    with pytest.raises(ValueError, match="classes with"):
        few_shot(features, labels, n_way=3, k_shot=5, queries=4)


def test_end_to_end_on_shapes(classifier: TaskModel) -> None:
    points, labels, _ = make_shapes(num_per_class=3, num_points=80, seed=0)  # (30, 80, 3)
    keep = labels < 3
    clouds, y = torch.from_numpy(points[keep]), torch.from_numpy(labels[keep])  # (9, 80, 3), (9,)
    logits = vote_predict(classifier, clouds, N, votes=2, generator=_gen(0))
    assert logits.shape == (9, 3) and torch.isfinite(logits).all()
    subsets = random_subset(clouds, N, _gen(5))  # (9, N, 3)
    features = embed(classifier, subsets, batch_size=4)
    assert features.shape == (9, DIM) and torch.isfinite(features).all()
    torch.testing.assert_close(embed(EmbeddingModel(classifier.backbone), subsets), features)
    accuracy = linear_probe(features[::2], y[::2], features[1::2], y[1::2])
    mean, std = few_shot(features, y, n_way=3, k_shot=1, queries=2, episodes=2)
    assert all(math.isfinite(v) for v in (accuracy, mean, std))
    with pytest.raises(TypeError, match="Backbone"):
        embed(torch.nn.Linear(3, 3), subsets)
