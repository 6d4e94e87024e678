"""Recalibrating quantiles on held-out windows (`calibrate_quantiles`): the fitted factors bring a miscalibrated
interval back to its nominal coverage on fresh data, and they travel with the model (save/load, compile, ONNX)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import mmsdk
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tasks import FORECAST, QUANTILES
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import TaskModel, build_task_model
from mmsdk.models.quantile_calibration import fit_quantile_scales, scale_quantiles

L, C, H = 32, 2, 12
LEVELS = (0.1, 0.5, 0.9)
CONFIG: dict[str, Any] = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": L, "num_channels": C, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 32, "depth": 2, "heads": 2},
    "objective": "mae",
}


def noisy_sines(batch: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(context (B, L, C), horizon (B, H, C)) of sines of random phase plus Gaussian noise of std `noise`."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(L + H, dtype=torch.float32).view(1, -1, 1)
    phase = torch.rand(batch, 1, C, generator=g) * 2 * math.pi
    window = torch.sin(2 * math.pi * t / 12 + phase) + noise * torch.randn(batch, L + H, C, generator=g)
    return window[:, :L], window[:, L:]


@pytest.fixture(scope="module")
def trained() -> TaskModel:
    """A PatchTST quantile forecaster trained by the pinball loss on noise of std 0.3."""
    torch.manual_seed(0)
    model = build_task_model(CONFIG, HeadConfig(task="forecast", num_outputs=H, quantiles=LEVELS)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(200):
        x, y = noisy_sines(64, 0.3, seed=step)
        loss, _ = model.task.evaluate(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def coverage(model: TaskModel, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        q = model(x)[QUANTILES]
    return float(((y >= q[..., 0]) & (y <= q[..., -1])).float().mean())


def test_the_fit_recovers_the_factor_of_a_too_narrow_normal() -> None:
    g = torch.Generator().manual_seed(0)
    y = 2.0 * torch.randn(20000, generator=g)  # the truth: N(0, 2²)
    normal = torch.distributions.Normal(0.0, 1.0)
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    quantiles = normal.icdf(torch.tensor(levels)).expand(20000, -1)  # N(0, 1)'s quantiles: half as wide
    scales = fit_quantile_scales(torch.zeros(20000), quantiles, y, levels)
    assert scales[2] == 1.0  # the median sits on the forecast: nothing to scale
    for level, scale in zip(levels, scales):
        if level != 0.5:
            assert scale == pytest.approx(2.0, rel=0.06), (level, scale)


def test_scaling_keeps_the_forecast_and_sorts_the_quantiles() -> None:
    point = torch.zeros(2, 3)
    quantiles = torch.tensor([-1.0, 0.2, 1.0]).expand(2, 3, 3)
    out = scale_quantiles({FORECAST: point, QUANTILES: quantiles}, (2.0, -1.0 + 2.0, 0.5))
    torch.testing.assert_close(out[QUANTILES][0, 0], torch.tensor([-2.0, 0.2, 0.5]))
    assert out[FORECAST] is point
    with pytest.raises(ValueError, match="need a head with quantiles"):
        scale_quantiles(point, (1.0,))


def test_calibration_on_shifted_windows_restores_the_coverage_of_fresh_ones(trained: TaskModel) -> None:
    """Trained on noise 0.3, served on noise 0.6: the 10-90 % interval is too narrow until it is recalibrated on
    held-out windows of the new data."""
    x_new, y_new = noisy_sines(512, 0.6, seed=1000)
    before = coverage(trained, x_new, y_new)
    model = build_task_model(CONFIG, trained.head_config)
    model.load_state_dict(trained.state_dict())
    scales = mmsdk.calibrate_quantiles(model.eval(), noisy_sines(512, 0.6, seed=2000))
    after = coverage(model, x_new, y_new)
    assert before < 0.6 and abs(after - 0.8) < 0.07, (before, after, scales)  # measured 0.52 -> 0.76
    assert scales[0] > 1.2 and scales[2] > 1.2 and model.head_config.quantile_scales == scales
    with torch.no_grad():
        torch.testing.assert_close(model(x_new)[FORECAST], trained(x_new)[FORECAST])  # the point forecast stays


def test_the_factors_are_saved_loaded_and_exported(trained: TaskModel, tmp_path: Path) -> None:
    head = HeadConfig(task="forecast", num_outputs=H, quantiles=LEVELS, quantile_scales=(1.5, 1.0, 2.0))
    model = build_task_model(CONFIG, head).eval()
    model.load_state_dict(trained.state_dict())
    x, _ = noisy_sines(4, 0.3, seed=5)
    loaded = mmsdk.from_pretrained(mmsdk.save_pretrained(model, tmp_path / "model"))
    assert loaded.head_config.quantile_scales == (1.5, 1.0, 2.0)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(loaded(x)[QUANTILES], want[QUANTILES], atol=0, rtol=0)
        assert not torch.allclose(want[QUANTILES], trained(x)[QUANTILES])
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
        torch.testing.assert_close(compiled[QUANTILES], want[QUANTILES], atol=1e-5, rtol=0)
    result = to_onnx(model, tmp_path / "calibrated.onnx")  # verified against eager, which applies the factors
    runtime = OnnxModel(result.path)
    assert runtime.metadata["head"]["quantile_scales"] == [1.5, 1.0, 2.0]
    got = runtime.run({runtime.input_name: x.numpy()})[QUANTILES]
    torch.testing.assert_close(torch.from_numpy(got), want[QUANTILES], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"quantile_scales": (1.0,)}, "needs quantiles"),
        ({"quantiles": LEVELS, "quantile_scales": (1.0, 1.0)}, "one per level"),
        ({"quantiles": LEVELS, "quantile_scales": (1.0, 0.0, 1.0)}, "must be > 0"),
    ],
)
def test_bad_factors_name_the_field(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=f"quantile_scales.*{match}"):
        HeadConfig(task="forecast", num_outputs=H, **changes)


def test_a_model_without_quantiles_cannot_be_calibrated() -> None:
    model = build_task_model(CONFIG, {"task": "forecast", "num_outputs": H})
    with pytest.raises(ValueError, match="needs a forecaster whose head has quantiles"):
        mmsdk.calibrate_quantiles(model, noisy_sines(8, 0.3, seed=0))


def test_the_fit_names_mismatched_shapes_and_an_empty_calibration_set() -> None:
    with pytest.raises(ValueError, match=r"quantiles \(4, 2\) add the 3 levels"):
        fit_quantile_scales(torch.zeros(4), torch.zeros(4, 2), torch.zeros(4), LEVELS)
    with pytest.raises(ValueError, match="no observed target"):
        fit_quantile_scales(torch.zeros(4), torch.zeros(4, 3), torch.full((4,), float("nan")), LEVELS)
    with pytest.raises(ValueError, match="must be a Dataset"):
        mmsdk.calibrate_quantiles(
            build_task_model(CONFIG, HeadConfig(task="forecast", num_outputs=H, quantiles=LEVELS)), [1, 2]
        )
