"""Quantile heads (`HeadConfig.quantiles`): PatchTST and Timer-XL learn them with the pinball loss, Moirai reads them
off its mixture at fixed points; every head returns {"forecast", "quantiles"} (the contract suite also compiles,
round-trips and exports each of them)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mmsdk.adapters.timeseries.distributions import Mixture
from mmsdk.adapters.timeseries.mixture_quantiles import QuantilePoints, weighted_quantiles
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.losses import pinball_loss
from mmsdk.contracts.tasks import FORECAST, QUANTILES
from mmsdk.models import TaskModel, build_task_model

logger = logging.getLogger(__name__)

L, C, P, H = 32, 2, 8, 12  # context, channels, patch, horizon (not a whole number of patches)
LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
ENCODER = {"dim": 16, "depth": 2, "heads": 2}
ADAPTERS = ("patchtst", "timerxl", "moirai")


def model_config(adapter: str) -> dict[str, Any]:
    if adapter == "patchtst":
        spec: dict[str, Any] = {"context_length": L, "num_channels": C, "patch_len": P, "stride": P}
        return {"adapter": "patchtst", "adapter_config": spec, "encoder": ENCODER, "objective": "mae"}
    encoder = {**ENCODER, "rope": "1d", "variate_bias": True}
    if adapter == "timerxl":
        spec = {"context_length": L, "num_channels": C, "patch_len": P}
        return {"adapter": "timerxl", "adapter_config": spec, "encoder": encoder, "objective": "causal"}
    spec = {"context_length": L, "num_channels": C, "patch_sizes": [P], "patch_size": P, "max_variates": 4}
    return {"adapter": "moirai", "adapter_config": spec, "encoder": encoder, "objective": "bert"}


def quantile_model(adapter: str, levels: tuple[float, ...] | None = LEVELS, seed: int = 0, **encoder: Any) -> TaskModel:
    torch.manual_seed(seed)
    config = model_config(adapter)
    config["encoder"] = {**config["encoder"], **encoder}
    return build_task_model(config, HeadConfig(task="forecast", num_outputs=H, quantiles=levels)).eval()


def series(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(L, dtype=torch.float32).view(1, -1, 1)
    return torch.sin(2 * math.pi * t / 12 + torch.rand(batch, 1, C, generator=g) * 6.28) + 0.1 * torch.randn(
        batch, L, C, generator=g
    )


# --- the config and the loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"task": "classification", "num_outputs": 3, "quantiles": (0.5,)}, "no quantile outputs"),
        ({"quantiles": ()}, "at least one level"),
        ({"quantiles": (0.0, 0.5)}, r"lie in \(0, 1\)"),
        ({"quantiles": (0.5, 1.2)}, r"lie in \(0, 1\)"),
        ({"quantiles": (0.9, 0.1)}, "strictly increasing"),
        ({"quantiles": (0.5, 0.5)}, "strictly increasing"),
    ],
)
def test_bad_quantile_levels_name_the_field(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=f"quantiles.*{match}"):
        HeadConfig(**{"task": "forecast", "num_outputs": H, **changes})


def test_quantile_levels_round_trip_as_floats() -> None:
    head = HeadConfig(task="forecast", num_outputs=H, quantiles=[0.1, 0.5, 0.9])  # type: ignore[arg-type]
    assert head.quantiles == (0.1, 0.5, 0.9)
    assert HeadConfig.from_dict(head.to_dict()) == head


def test_pinball_loss_by_hand_and_missing_targets() -> None:
    target = torch.tensor([[1.0, float("nan")]])  # (1, 2), one missing
    quantiles = torch.tensor([[[0.0, 2.0], [5.0, 5.0]]])  # (1, 2, Q=2) at levels 0.1, 0.9
    # observed target 1: level 0.1 under-predicts by 1 → 0.1; level 0.9 over-predicts by 1 → 0.1; mean 0.1
    assert float(pinball_loss(quantiles, target, (0.1, 0.9))) == pytest.approx(0.1)
    nothing = pinball_loss(quantiles.requires_grad_(), torch.full((1, 2), float("nan")), (0.1, 0.9))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad
    with pytest.raises(ValueError, match=r"\(\*target.shape, Q\)"):
        pinball_loss(quantiles, target, (0.1, 0.5, 0.9))


def test_pinball_loss_is_lowest_at_the_true_quantile() -> None:
    y = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    exact = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.9))
    losses = {shift: float(pinball_loss((exact + shift).expand(20000, 1), y, (0.9,))) for shift in (-0.3, 0.0, 0.3)}
    assert losses[0.0] < losses[-0.3] and losses[0.0] < losses[0.3]


# --- every forecasting adapter --------------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_heads_return_the_forecast_and_sorted_quantiles(adapter: str) -> None:
    model = quantile_model(adapter)
    x = series()
    with torch.no_grad():
        out = model(x)
        out_scaled = model(10.0 * x + 3.0)
    assert list(out) == [FORECAST, QUANTILES]
    assert out[FORECAST].shape == (3, H, C) and out[QUANTILES].shape == (3, H, C, len(LEVELS))
    assert torch.isfinite(out[QUANTILES]).all()
    assert bool((out[QUANTILES].diff(dim=-1) >= 0).all())  # never crossing
    # in data units: the quantiles follow the input's scale and level, like the point forecast
    torch.testing.assert_close(out_scaled[QUANTILES], 10.0 * out[QUANTILES] + 3.0, atol=2e-3, rtol=2e-3)
    loss, metrics = model.task.evaluate(out, torch.randn(3, H, C))
    assert {"mse", "mae", "pinball", "coverage"} <= set(metrics)
    torch.testing.assert_close(loss, metrics["mse"] + metrics["pinball"])


def test_moirai_quantiles_leave_the_mean_and_the_saved_weights_unchanged() -> None:
    plain, with_quantiles = quantile_model("moirai", levels=None), quantile_model("moirai")
    assert plain.state_dict().keys() == with_quantiles.state_dict().keys()  # the fixed points are not saved
    with_quantiles.load_state_dict(plain.state_dict())
    x = series()
    with torch.no_grad():
        torch.testing.assert_close(with_quantiles(x)[FORECAST], plain(x))


def test_a_head_without_quantiles_still_returns_one_tensor() -> None:
    model = quantile_model("patchtst", levels=None)
    with torch.no_grad():
        assert isinstance(model(series()), torch.Tensor)
    with pytest.raises(ValueError, match="must return"):
        quantile_model("patchtst").task.evaluate(torch.zeros(3, H, C), torch.zeros(3, H, C))


def _noisy_sines(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Sines of random phase plus Gaussian noise of std 0.3: the 10 %–90 % interval of the truth is ±0.38."""
    t = torch.arange(L + H, dtype=torch.float32).view(1, -1, 1)
    phase = torch.rand(batch, 1, C, generator=generator) * 2 * math.pi
    return torch.sin(2 * math.pi * t / 12 + phase) + 0.3 * torch.randn(batch, L + H, C, generator=generator)


@pytest.mark.parametrize("adapter", ["patchtst", "timerxl"])
def test_pinball_training_calibrates_the_interval(adapter: str) -> None:
    model = quantile_model(adapter, levels=(0.1, 0.5, 0.9), dim=32).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(250):
        window = _noisy_sines(64, generator)
        loss, _ = model.task.evaluate(model(window[:, :L]), window[:, L:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = _noisy_sines(512, torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, metrics = model.eval().task.evaluate(model(test[:, :L]), test[:, L:])
    logger.info("%s: coverage of the 10-90 interval %.3f, pinball %.4f", adapter, metrics["coverage"],
                metrics["pinball"])  # fmt: skip
    assert 0.7 < float(metrics["coverage"]) < 0.9  # 0.8 when calibrated
    # the best possible pinball loss over (0.1, 0.5, 0.9) for N(·, 0.3²) noise is 0.3 · 0.456 ≈ 0.137
    assert float(metrics["pinball"]) < 0.2


def test_the_runtime_serves_both_outputs_and_reads_the_levels(tmp_path: Path) -> None:
    """Moirai's fixed-point quantiles in ONNX Runtime (every forecaster's export is in the contract suite)."""
    pytest.importorskip("onnxruntime")
    from mmsdk.export.onnx import to_onnx
    from mmsdk.export.runtime import OnnxModel

    model = quantile_model("moirai")
    assert to_onnx(model, tmp_path / "moirai.onnx", dynamic_batch=True).verified
    served = OnnxModel(tmp_path / "moirai.onnx")
    assert served.output_names == [FORECAST, QUANTILES]
    assert served.quantile_levels == list(LEVELS)
    x = series(batch=2, seed=3)
    outputs = served.run({served.input_name: x.numpy()})
    with torch.no_grad():
        eager = model(x)
    for name in (FORECAST, QUANTILES):
        torch.testing.assert_close(torch.from_numpy(outputs[name]), eager[name], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(torch.from_numpy(served(x.numpy())), eager[FORECAST], atol=1e-3, rtol=1e-3)


# --- Moirai's fixed-point quantiles of a mixture --------------------------------------------------------------------


def _one(name: str, batch: int = 200, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    loc, scale = torch.randn(batch, generator=g), 0.2 + torch.rand(batch, generator=g)
    if name == "student_t":
        return {"loc": loc, "scale": scale, "df": 3.0 + 10 * torch.rand(batch, generator=g)}
    return {"loc": loc, "scale": scale}


@pytest.mark.parametrize("name", ["normal", "log_normal"])
def test_fixed_point_quantiles_of_one_component_match_the_exact_ones(name: str) -> None:
    params = _one(name)
    mixture = Mixture([name], [params], torch.zeros(200, 1))
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    estimate = QuantilePoints()(mixture, levels)  # (Q, 200)
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(levels)).view(-1, 1)
    exact = params["loc"] + params["scale"] * z  # (Q, 200) of the normal (of the log for log-normal)
    if name == "log_normal":
        estimate = estimate.log()
    error = ((estimate - exact) / params["scale"]).abs()  # in standard deviations
    assert float(error.max()) < 0.02


def test_fixed_point_quantiles_of_a_mixed_family_mixture_match_monte_carlo() -> None:
    names = ["normal", "student_t", "log_normal"]
    params = [_one(name, batch=50, seed=i) for i, name in enumerate(names)]
    logits = torch.randn(50, 3, generator=torch.Generator().manual_seed(9))
    mixture = Mixture(names, params, logits)
    levels = [0.1, 0.5, 0.9]
    estimate = QuantilePoints()(mixture, levels)  # (Q, 50)
    samples = mixture.sample(100_000, torch.Generator().manual_seed(0))  # (S, 50)
    reference = torch.quantile(samples, torch.tensor(levels), dim=0)  # (Q, 50)
    spread = samples.std(dim=0)
    error = ((estimate - reference) / spread).abs()
    assert float(error.mean()) < 0.02 and float(error.max()) < 0.15


def test_weighted_quantiles_of_equal_points_interpolate_the_midpoint_cdf() -> None:
    values = torch.tensor([3.0, 1.0, 2.0, 4.0]).view(4, 1)  # unsorted; midpoints at CDF 1/8, 3/8, 5/8, 7/8
    weights = torch.full((4, 1), 0.25)
    out = weighted_quantiles(values, weights, [0.125, 0.5, 0.05, 0.95]).squeeze(-1)
    torch.testing.assert_close(out, torch.tensor([1.0, 2.5, 1.0, 4.0]))  # flat beyond the outer midpoints


def test_evaluate_probabilistic_scores_a_quantile_head_on_its_own_outputs() -> None:
    from mmsdk.adapters.timeseries.evaluation import evaluate_probabilistic

    model = quantile_model("patchtst", levels=(0.1, 0.5, 0.9))
    windows = _noisy_sines(8, torch.Generator().manual_seed(2))
    dataset = list(zip(windows[:, :L], windows[:, L:]))
    metrics = evaluate_probabilistic(model, dataset, levels=(0.25, 0.75), period=12)  # the head's levels win
    assert set(metrics) == {"mse", "mae", "mase", "wql", "crps", "coverage_80"}
    with torch.no_grad():
        out = model(windows[:, :L])
    assert metrics["mse"] == pytest.approx(float(((out[FORECAST] - windows[:, L:]) ** 2).mean()), rel=1e-5)
