"""Point-cloud evaluation protocols of Point-MAE: test-time voting, frozen-feature linear probes, few-shot episodes.

- `vote_predict`: Point-MAE's voting test (`validate_vote`): the logits of a classifier are averaged over several
  random subsets of each (denser) cloud, optionally with a random per-axis rescaling.
- `embed` + `linear_probe`: the linear-SVM protocol on frozen encoder features. Point-MAE fits sklearn's
  `LinearSVC`; to avoid a sklearn dependency the probe here minimises the same one-vs-rest squared-hinge primal
  (0.5·||W||² + C·Σ max(0, 1 - y·(Wx + b))², intercept unregularised) with full-batch L-BFGS in torch on
  standardised features. A multinomial logistic regression with the same L2 penalty is available as well.
- `few_shot`: N-way K-shot episodes. Point-MAE fine-tunes the whole model on every episode's support set; this is
  the much cheaper frozen-feature variant (a linear probe per episode), a quick proxy for representation quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from mmsdk.models import EmbeddingModel
from mmsdk.models.backbone import Backbone

ArrayLike = Tensor | np.ndarray | Sequence[float] | Sequence[int]


def random_subset(points: Tensor, num_points: int, generator: torch.Generator | None = None) -> Tensor:
    """Picks `num_points` distinct points of each cloud uniformly at random (a random permutation when equal).

    Args:
        points: (B, N_total, C) clouds, N_total >= num_points.
        num_points: points kept per cloud.
        generator: randomness (a CPU generator; the indices are moved to the points' device).

    Returns:
        (B, num_points, C) subsets, in random order.
    """
    if points.dim() != 3:
        raise ValueError(f"random_subset: points must be (B, N, C), got shape {tuple(points.shape)}")
    b, n_total, c = points.shape
    if not 1 <= num_points <= n_total:
        raise ValueError(f"random_subset: num_points must be in [1, N_total={n_total}], got {num_points}")
    device = generator.device if generator is not None else points.device
    keys = torch.rand(b, n_total, generator=generator, device=device)  # (B, N_total)
    idx = keys.argsort(dim=1)[:, :num_points].to(points.device)  # (B, num_points)
    return points.gather(1, idx.unsqueeze(-1).expand(b, num_points, c))


def vote_predict(
    model: nn.Module,
    points: Tensor,
    num_points: int,
    votes: int = 10,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] | None = None,
) -> Tensor:
    """Test-time voting: mean logits over `votes` random subsets of `num_points` points of each cloud.

    As Point-MAE's `validate_vote`, logits (not probabilities) are averaged. With N_total == num_points every vote
    sees a fresh random permutation of the same points (the FPS grouping starts at the first point, so the order
    matters). The model runs in eval mode without gradients; its training flag is restored afterwards.

    Args:
        model: a classifier mapping (B, num_points, C) clouds to (B, K) logits (e.g. a Point-MAE `TaskModel`).
        points: (B, N_total, C) clouds, N_total >= num_points.
        num_points: points per cloud the model expects.
        votes: number of subsets averaged.
        generator: randomness of the subsets (and scales); None = torch's global RNG.
        scale: optional (low, high) range of a random per-cloud, per-axis xyz scale applied to every vote (Point-MAE
            uses 2/3..3/2); None = no augmentation.

    Returns:
        (B, K) mean logits.
    """
    if votes < 1:
        raise ValueError(f"vote_predict: votes must be >= 1, got {votes}")
    if scale is not None and not 0 < scale[0] <= scale[1]:
        raise ValueError(f"vote_predict: scale must be a (low, high) range with 0 < low <= high, got {scale}")
    was_training = model.training
    model.eval()
    total: Tensor | None = None
    try:
        with torch.no_grad():
            for _ in range(votes):
                subset = random_subset(points, num_points, generator)  # (B, n, C)
                if scale is not None:
                    device = generator.device if generator is not None else points.device
                    factors = torch.empty(points.shape[0], 1, 3, device=device).uniform_(*scale, generator=generator)
                    subset = torch.cat([subset[..., :3] * factors.to(subset), subset[..., 3:]], dim=-1)
                logits = model(subset)  # (B, K)
                total = logits if total is None else total + logits
    finally:
        model.train(was_training)
    assert total is not None
    return total / votes


def _embedding_model(model: nn.Module) -> EmbeddingModel:
    if isinstance(model, EmbeddingModel):
        return model
    if isinstance(model, Backbone):
        return EmbeddingModel(model)
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, Backbone):  # TaskModel, Objective
        return EmbeddingModel(backbone)
    raise TypeError(
        f"embed: expected an EmbeddingModel, a Backbone or a model with a .backbone, got {type(model).__name__}"
    )


def embed(model: nn.Module, points: Tensor | np.ndarray, batch_size: int = 64) -> Tensor:
    """Frozen encoder features: mean-pooled backbone outputs of every cloud (`EmbeddingModel`, eval, no grad).

    Args:
        model: an `EmbeddingModel`, a `Backbone`, or a model holding one as `.backbone` (TaskModel, Objective).
        points: (M, N, C) clouds with the adapter's num_points.
        batch_size: clouds per forward pass.

    Returns:
        (M, D) float32 features on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"embed: batch_size must be >= 1, got {batch_size}")
    embedder = _embedding_model(model)
    points = torch.as_tensor(points, dtype=torch.float32)
    device = next(embedder.parameters()).device
    was_training = embedder.training
    embedder.eval()
    try:
        with torch.no_grad():
            chunks = [
                embedder(points[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(points), batch_size)
            ]
    finally:
        embedder.train(was_training)
    return torch.cat(chunks)  # (M, D)


def linear_probe(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    C: float = 1.0,
    loss: Literal["squared_hinge", "logistic"] = "squared_hinge",
    max_iter: int = 200,
) -> float:
    """Fits a linear classifier on frozen features and returns its test accuracy.

    Features are standardised with the training mean and std. "squared_hinge" is `LinearSVC`'s default primal
    (one-vs-rest, 0.5·||W||² + C·Σ_i Σ_k max(0, 1 - y_ik·(W_k·x_i + b_k))², y_ik = ±1); "logistic" is a multinomial
    logistic regression 0.5·||W||² + C·Σ_i CE_i. Both are convex and smooth, solved by full-batch L-BFGS (strong
    Wolfe line search) in float64 from zero weights, so the result is deterministic. Labels may be any integers;
    a test label absent from training counts as an error.

    Args:
        train_feats: (M, D) training features; train_labels: (M,) integer labels.
        test_feats: (T, D) test features; test_labels: (T,) integer labels.
        C: inverse regularisation strength (sklearn's C).
        loss: "squared_hinge" (linear SVM) or "logistic".
        max_iter: L-BFGS iterations.

    Returns:
        Test accuracy in [0, 1].
    """
    x_train = torch.as_tensor(train_feats).detach().cpu().double()  # (M, D)
    x_test = torch.as_tensor(test_feats).detach().cpu().double()  # (T, D)
    y_train = torch.as_tensor(train_labels).detach().cpu().long()  # (M,)
    y_test = torch.as_tensor(test_labels).detach().cpu().long()  # (T,)
    if x_train.dim() != 2 or x_test.dim() != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"linear_probe: features must be (M, D) and (T, D), got {x_train.shape} and {x_test.shape}")
    if y_train.shape != (len(x_train),) or y_test.shape != (len(x_test),):
        raise ValueError("linear_probe: labels must be 1-D with one label per feature row")
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError("linear_probe: empty training or test set")
    if C <= 0 or loss not in ("squared_hinge", "logistic"):
        raise ValueError(f"linear_probe: need C > 0 and loss in ('squared_hinge', 'logistic'), got {C}, {loss!r}")
    classes, target = torch.unique(y_train, return_inverse=True)  # (K,), (M,) in [0, K)
    mean, std = x_train.mean(0), x_train.std(0, correction=0).clamp_min(1e-8)  # (D,)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(x_train.shape[1], len(classes), dtype=torch.float64, requires_grad=True)  # (D, K)
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)  # (K,)
    signs = 2.0 * nn.functional.one_hot(target, len(classes)).double() - 1.0  # (M, K) in {-1, +1}
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        scores = x_train @ weight + bias  # (M, K)
        if loss == "squared_hinge":
            data = (1.0 - signs * scores).clamp_min(0.0).square().sum()
        else:
            data = nn.functional.cross_entropy(scores, target, reduction="sum")
        objective = 0.5 * weight.square().sum() + C * data
        objective.backward()
        return objective

    optimizer.step(closure)
    with torch.no_grad():
        predicted = classes[(x_test @ weight + bias).argmax(dim=1)]  # (T,)
    return float((predicted == y_test).double().mean())


def few_shot_episodes(
    features: ArrayLike,
    labels: ArrayLike,
    n_way: int,
    k_shot: int,
    queries: int = 20,
    episodes: int = 10,
    seed: int = 0,
    C: float = 1.0,
) -> list[float]:
    """Per-episode accuracies of N-way K-shot linear probes on frozen features (see `few_shot`)."""
    x = torch.as_tensor(features).detach().cpu()  # (M, D)
    y = torch.as_tensor(labels).detach().cpu().long()  # (M,)
    if x.dim() != 2 or y.shape != (len(x),):
        raise ValueError(f"few_shot: features must be (M, D) with (M,) labels, got {tuple(x.shape)}, {tuple(y.shape)}")
    if n_way < 2 or k_shot < 1 or queries < 1 or episodes < 1:
        raise ValueError(
            f"few_shot: need n_way >= 2, k_shot, queries, episodes >= 1; got {n_way}, {k_shot}, {queries}, {episodes}"
        )
    classes, counts = torch.unique(y, return_counts=True)  # (K,), (K,)
    eligible = classes[counts >= k_shot + queries].tolist()
    if len(eligible) < n_way:
        raise ValueError(
            f"few_shot: {n_way}-way {k_shot}-shot with {queries} queries needs {n_way} classes with >= "
            f"{k_shot + queries} samples; only {len(eligible)} have them"
        )
    rng = np.random.default_rng(seed)
    accuracies = []
    for _ in range(episodes):
        support, query = [], []
        for label in rng.choice(eligible, size=n_way, replace=False):
            members = torch.nonzero(y == int(label)).flatten().numpy()
            chosen = rng.choice(members, size=k_shot + queries, replace=False)
            support.append(chosen[:k_shot])
            query.append(chosen[k_shot:])
        s, q = torch.from_numpy(np.concatenate(support)), torch.from_numpy(np.concatenate(query))  # (N·K,), (N·Q,)
        accuracies.append(linear_probe(x[s], y[s], x[q], y[q], C=C))
    return accuracies


def few_shot(
    features: ArrayLike,
    labels: ArrayLike,
    n_way: int,
    k_shot: int,
    queries: int = 20,
    episodes: int = 10,
    seed: int = 0,
    C: float = 1.0,
) -> tuple[float, float]:
    """N-way K-shot few-shot accuracy on frozen features: mean and std over seeded episodes.

    Each episode draws `n_way` classes (among those with at least k_shot + queries samples), then `k_shot` support
    and `queries` query samples per class without overlap; a `linear_probe` fitted on the support set is scored on
    the queries. Point-MAE's protocol (10 folds of 5/10-way 10/20-shot on ModelNet40, 20 queries per class)
    fine-tunes the whole network per episode; this frozen-feature variant is far cheaper and measures the
    pretrained representation alone, so its numbers are not comparable to the paper's.

    Args:
        features: (M, D) features; labels: (M,) integer labels.
        n_way: classes per episode; k_shot: support samples per class; queries: query samples per class.
        episodes: number of episodes; seed: seeds the episode draws.
        C: the probe's inverse regularisation strength.

    Returns:
        (mean accuracy, population std of the per-episode accuracies).
    """
    accuracies = np.asarray(few_shot_episodes(features, labels, n_way, k_shot, queries, episodes, seed, C))
    return float(accuracies.mean()), float(accuracies.std())
