"""Mixture distribution output: log-probabilities, masked NLL, sampling, quantiles, fitting, extreme targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import LogNormal, NegativeBinomial, Normal, StudentT

from mmsdk.adapters.timeseries.distributions import (
    COMPONENT_NAMES,
    FAMILIES,
    LOG_PROB_FLOOR,
    Mixture,
    MixtureConfig,
    MixtureHead,
)

SHAPE = (3, 5)  # (..., P) batch shape of the test mixtures


def _params(name: str, generator: torch.Generator) -> dict[str, Tensor]:
    """Random constrained parameters of one family, each SHAPE, requiring grad."""
    raw = torch.randn(*SHAPE, len(FAMILIES[name].params), generator=generator)
    return {k: v.detach().requires_grad_(True) for k, v in FAMILIES[name].constrain(raw).items()}


def _reference(name: str, p: dict[str, Tensor]) -> torch.distributions.Distribution:
    if name == "student_t":
        return StudentT(p["df"], p["loc"], p["scale"])
    if name == "normal":
        return Normal(p["loc"], p["scale"])
    if name == "negative_binomial":
        return NegativeBinomial(p["total_count"], logits=p["logits"], validate_args=False)  # real-valued y
    return LogNormal(p["loc"], p["scale"])


def _in_support_targets(name: str, generator: torch.Generator) -> Tensor:
    if name == "negative_binomial":
        return torch.randint(0, 20, SHAPE, generator=generator).float()
    if name == "log_normal":
        return torch.rand(SHAPE, generator=generator) * 5 + 0.01
    return torch.randn(SHAPE, generator=generator) * 3


def _full_mixture(generator: torch.Generator, components: tuple[str, ...] = COMPONENT_NAMES) -> Mixture:
    params = [_params(name, generator) for name in components]
    logits = torch.randn(*SHAPE, len(components), generator=generator).requires_grad_(True)
    return Mixture(components, params, logits)


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_single_component_log_prob_matches_torch_distributions(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    params = _params(name, g)
    y = _in_support_targets(name, g)
    mixture = Mixture((name,), [params], torch.randn(*SHAPE, 1, generator=g))
    torch.testing.assert_close(mixture.log_prob(y), _reference(name, params).log_prob(y))


def test_negative_binomial_matches_closed_form_pmf_and_relaxes_to_reals() -> None:
    r, logit = 2.5, 0.7
    p = 1 / (1 + math.exp(-logit))
    mixture = Mixture(
        ("negative_binomial",),
        [{"total_count": torch.tensor([r, r, r]), "logits": torch.tensor([logit] * 3)}],
        torch.zeros(3, 1),
    )
    y = torch.tensor([0.0, 3.0, 3.5])
    expected = [
        math.lgamma(k + r) - math.lgamma(k + 1) - math.lgamma(r) + r * math.log(1 - p) + k * math.log(p)
        for k in y.tolist()
    ]
    torch.testing.assert_close(mixture.log_prob(y), torch.tensor(expected))
    # The relaxation is continuous between integers.
    assert float(mixture.log_prob(torch.tensor([3.0, 3.0, 3.0 + 1e-3]))[2]) == pytest.approx(expected[1], abs=1e-2)


def test_mixture_log_prob_is_logsumexp_of_weighted_components() -> None:
    g = torch.Generator().manual_seed(2)
    mixture = _full_mixture(g, (*COMPONENT_NAMES, "normal"))
    y = torch.rand(SHAPE, generator=g) * 4 + 0.1  # inside every support
    y[0, 0] = 3.0  # an integer, where the negative binomial is a true PMF
    log_w = mixture.logits.log_softmax(dim=-1)
    by_hand = torch.stack(
        [_reference(name, p).log_prob(y) for name, p in zip(mixture.components, mixture.params)], dim=-1
    )
    torch.testing.assert_close(mixture.log_prob(y), torch.logsumexp(log_w + by_hand, dim=-1))
    torch.testing.assert_close(mixture.weights.sum(-1), torch.ones(SHAPE))


def test_out_of_support_component_gets_no_weight() -> None:
    g = torch.Generator().manual_seed(3)
    mixture = _full_mixture(g)
    y = torch.full(SHAPE, -1.5)  # outside the negative binomial's and the log-normal's support
    log_w = mixture.logits.log_softmax(dim=-1)
    real_line = [i for i, name in enumerate(mixture.components) if name in ("student_t", "normal")]
    by_hand = torch.stack([_reference(mixture.components[i], mixture.params[i]).log_prob(y) for i in real_line], -1)
    torch.testing.assert_close(mixture.log_prob(y), torch.logsumexp(log_w[..., real_line] + by_hand, dim=-1))
    component = mixture.component_log_probs(y)
    assert bool((component[..., 2:] == LOG_PROB_FLOOR).all())
    # Log-normal at exactly 0 is outside too; the negative binomial is inside at 0.
    at_zero = mixture.component_log_probs(torch.zeros(SHAPE))
    assert bool((at_zero[..., 3] == LOG_PROB_FLOOR).all()) and bool((at_zero[..., 2] > LOG_PROB_FLOOR).all())


def _loss_and_grads(mixture: Mixture, y: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
    leaves = [mixture.logits, *(v for comp in mixture.params for v in comp.values())]
    loss = mixture.nll(y, mask)
    return loss.detach(), [g.detach() for g in torch.autograd.grad(loss, leaves, allow_unused=True)]


def test_nll_ignores_unobserved_elements_including_nan() -> None:
    g = torch.Generator().manual_seed(4)
    mixture = _full_mixture(g)
    y = torch.rand(SHAPE, generator=g) * 3
    mask = torch.rand(SHAPE, generator=g) > 0.4
    mask[0, 0], mask[0, 1] = True, False
    base_loss, base_grads = _loss_and_grads(mixture, y, mask)
    expected = -(mixture.log_prob(y)[mask]).mean()
    torch.testing.assert_close(base_loss, expected.detach())
    for fill in (float("nan"), float("inf"), -7.0, 1e6):
        changed = torch.where(mask, y, torch.full_like(y, fill))
        loss, grads = _loss_and_grads(mixture, changed, mask)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, base_loss)
        for got, want in zip(grads, base_grads):
            assert bool(torch.isfinite(got).all())
            torch.testing.assert_close(got, want)
    # Nothing observed: zero, still differentiable.
    empty = mixture.nll(torch.full(SHAPE, float("nan")), torch.zeros(SHAPE, dtype=torch.bool))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


@pytest.mark.parametrize("components", [COMPONENT_NAMES, ("negative_binomial",), ("log_normal",), ("normal",)])
def test_extreme_targets_give_finite_loss_and_gradients(components: tuple[str, ...]) -> None:
    head = MixtureHead(8, 6, MixtureConfig(components=components))
    with torch.no_grad():  # push every softplus parameter to its floor: tiny scales and total counts
        for projection in head.projections:
            projection.bias.fill_(-60.0)
    features = torch.randn(4, 8)
    y = torch.tensor([1e6, -1e6, 0.0, -3.0, 1e-30, 2.5]).expand(4, 6)
    mixture = head(features)
    loss = mixture.nll(y, torch.ones_like(y, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss)
    assert bool(torch.isfinite(mixture.log_prob(y)).all())
    for param in head.parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all())
    samples = mixture.sample(16, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(samples).all()) and bool(torch.isfinite(mixture.mean).all())


def test_huge_parameters_sample_finite_values() -> None:
    mixture = Mixture(
        ("negative_binomial", "log_normal"),
        [
            {"total_count": torch.full((4,), 50.0), "logits": torch.tensor([10.0, 40.0, 80.0, 200.0])},
            {"loc": torch.full((4,), 80.0), "scale": torch.full((4,), 5.0)},
        ],
        torch.zeros(4, 2),
    )
    samples = mixture.sample(200, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(samples).all()) and bool((samples >= 0).all())


def test_sample_shapes_determinism_and_quantile_monotonicity() -> None:
    head = MixtureHead(8, 5)
    mixture = head(torch.randn(2, 3, 8))
    assert mixture.batch_shape == (2, 3, 5)
    samples = mixture.sample(7, torch.Generator().manual_seed(11))
    assert samples.shape == (7, 2, 3, 5) and not samples.requires_grad
    torch.testing.assert_close(samples, mixture.sample(7, torch.Generator().manual_seed(11)))
    assert not torch.equal(samples, mixture.sample(7, torch.Generator().manual_seed(12)))
    nb_samples = Mixture(
        ("negative_binomial",), [{"total_count": torch.ones(4), "logits": torch.zeros(4)}], torch.zeros(4, 1)
    ).sample(50)
    assert torch.equal(nb_samples, nb_samples.round()) and bool((nb_samples >= 0).all())

    levels = [0.9, 0.1, 0.5, 0.0, 1.0, 0.25]
    q = mixture.quantiles(levels, num_samples=301, generator=torch.Generator().manual_seed(3))
    assert q.shape == (len(levels), 2, 3, 5)
    ordered = q[torch.tensor(levels).argsort()]
    assert bool((ordered[1:] >= ordered[:-1]).all())
    drawn = mixture.sample(301, torch.Generator().manual_seed(3))
    torch.testing.assert_close(q[3], drawn.min(0).values)
    torch.testing.assert_close(q[4], drawn.max(0).values)
    torch.testing.assert_close(q[2], drawn.median(0).values)  # odd S: the median is an order statistic
    with pytest.raises(ValueError, match="levels"):
        mixture.quantiles([1.5])
    with pytest.raises(ValueError, match="num_samples"):
        mixture.sample(0)


def test_mean_is_weighted_component_means() -> None:
    g = torch.Generator().manual_seed(5)
    mixture = _full_mixture(g)
    means = torch.stack([_reference(n, p).mean for n, p in zip(mixture.components, mixture.params)], dim=-1)
    torch.testing.assert_close(mixture.mean, (mixture.weights * means).sum(-1))
    big = Mixture(("normal", "student_t"), [_params("normal", g), _params("student_t", g)], torch.zeros(*SHAPE, 2))
    draws = big.sample(40000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), big.mean.detach(), atol=0.15, rtol=0.0)


def test_fitting_a_head_recovers_a_student_t() -> None:
    """Adam on the NLL of Student-t(df=5, loc=2, scale=0.5) draws recovers its mean and quantiles."""
    target = StudentT(torch.tensor(5.0), torch.tensor(2.0), torch.tensor(0.5))
    y = target.sample((4096, 1))  # (N, P=1)
    head = MixtureHead(4, 1)
    features = torch.ones(1, 4)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = head(features).nll(y, torch.ones_like(y, dtype=torch.bool))
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mixture = head(features)
        assert float(mixture.mean) == pytest.approx(2.0, abs=0.06)
        q = mixture.quantiles([0.1, 0.5, 0.9], num_samples=20000, generator=torch.Generator().manual_seed(0))
    t5_90 = 1.475884  # scipy.stats.t.ppf(0.9, df=5)
    expected = torch.tensor([2.0 - 0.5 * t5_90, 2.0, 2.0 + 0.5 * t5_90])
    torch.testing.assert_close(q.flatten(), expected, atol=0.075, rtol=0.0)
    assert float(loss.detach()) == pytest.approx(float(-target.log_prob(y).mean()), abs=0.05)


def test_config_validation_names_the_field() -> None:
    assert MixtureConfig().components == COMPONENT_NAMES
    with pytest.raises(ValueError, match=r"MixtureConfig\.components.*at least one"):
        MixtureConfig(components=())
    with pytest.raises(ValueError, match=r"MixtureConfig\.components.*gamma"):
        MixtureConfig(components=("normal", "gamma"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MixtureHead\.out_dim"):
        MixtureHead(4, 0)
    config = MixtureConfig.from_dict({"components": ["normal", "normal"]})
    assert config.components == ("normal", "normal") and MixtureConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config key"):
        MixtureConfig.from_dict({"component": ["normal"]})


def test_mixture_rejects_mismatched_parameters() -> None:
    with pytest.raises(ValueError, match="logits"):
        Mixture(("normal",), [{"loc": torch.zeros(3), "scale": torch.ones(3)}], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="needs parameters"):
        Mixture(("normal",), [{"loc": torch.zeros(3)}], torch.zeros(3, 1))
    with pytest.raises(ValueError, match="shape"):
        Mixture(("normal",), [{"loc": torch.zeros(3), "scale": torch.ones(4)}], torch.zeros(3, 1))
