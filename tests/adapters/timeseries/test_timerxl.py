"""Timer-XL adapter: multivariate causal mask, causal-safe normalization, next-patch loss, rollout, export."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mmsdk.adapters.timeseries.timerxl import TimerXLAdapter, TimerXLConfig
from mmsdk.contracts.adapter import Adapter
from mmsdk.contracts.data import build_data
from mmsdk.contracts.heads import HeadConfig
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models import TaskModel, build_model, build_task_model
from mmsdk.models.objectives import CausalModel

logger = logging.getLogger(__name__)

L, C, P = 32, 3, 8  # N = 4 patches per variate
N = L // P
ENCODER = {"dim": 16, "depth": 2, "heads": 2, "rope": "1d", "variate_bias": True}


def _config(objective: str = "causal", encoder: dict[str, Any] | None = None, **adapter: Any) -> dict[str, Any]:
    return {
        "adapter": "timerxl",
        "adapter_config": {"context_length": L, "num_channels": C, "patch_len": P, **adapter},
        "encoder": {**ENCODER, **(encoder or {})},
        "objective": objective,
    }


def _causal_model(encoder: dict[str, Any] | None = None, **adapter: Any) -> CausalModel:
    torch.manual_seed(0)
    model = build_model(_config(encoder=encoder, **adapter)).eval()
    assert isinstance(model, CausalModel)
    return model


def _predict(model: CausalModel, x: torch.Tensor) -> torch.Tensor:
    """(B, C, N, P) next-patch predictions, indexed by (variate, patch)."""
    with torch.no_grad():
        pred = model(model.tokenize(x)).pred  # (B, C·N, P)
    return pred.view(x.shape[0], C, N, P)


def _series(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return TimerXLAdapter(TimerXLConfig(L, C, P), 16).example_input(batch, torch.Generator().manual_seed(seed))


def test_config_validation_names_fields() -> None:
    with pytest.raises(ValueError, match=r"TimerXLConfig\.context_length.*multiple of patch_len=8"):
        TimerXLConfig(context_length=30, num_channels=2, patch_len=8)
    with pytest.raises(ValueError, match=r"TimerXLConfig\.norm_patches"):
        TimerXLConfig(context_length=32, num_channels=2, patch_len=8, norm_patches=5)
    with pytest.raises(ValueError, match=r"TimerXLConfig\.num_channels"):
        TimerXLConfig(num_channels=0)
    with pytest.raises(ValueError, match=r"TimerXLConfig\.positions"):
        TimerXLConfig(positions="learned")  # type: ignore[arg-type]


def test_tokens_are_flattened_variate_major() -> None:
    adapter = TimerXLAdapter(TimerXLConfig(L, C, P, revin=False), 16)
    x = _series()
    x[0, 3, 1] = float("nan")
    batch = adapter.tokenize(x).validate()
    assert batch.tokens.shape == (2, C * N, 16)
    assert batch.time_ids[0].tolist() == list(range(N)) * C
    assert batch.variate_ids[0].tolist() == [c for c in range(C) for _ in range(N)]
    assert batch.targets is not None and batch.target_mask is not None
    # token c·N + n holds patch n of variate c (no normalization: raw values, 0 at the missing point)
    torch.testing.assert_close(batch.targets[1, 2 * N + 3], x[1, 3 * P : 4 * P, 2])
    assert not batch.target_mask[0, N + 0, 3] and batch.targets[0, N + 0, 3] == 0
    assert int((~batch.target_mask).sum()) == 1


@pytest.mark.parametrize(("encoder", "positions"), [({}, "none"), ({"rope": "none"}, "sincos")], ids=["rope", "sincos"])
def test_multivariate_causal_mask_hides_every_variates_future(encoder: dict[str, Any], positions: str) -> None:
    model = _causal_model(encoder, positions=positions)
    x = _series()
    base = _predict(model, x)
    for n in range(N - 1):
        changed = x.clone()
        changed[:, (n + 1) * P :] += torch.randn_like(changed[:, (n + 1) * P :])  # all variates, after patch n
        pred = _predict(model, changed)
        torch.testing.assert_close(pred[:, :, : n + 1], base[:, :, : n + 1], atol=1e-6, rtol=0)
        assert (pred[:, :, n + 1 :] - base[:, :, n + 1 :]).abs().amax() > 1e-4


def test_information_flows_across_variates_from_the_past_only() -> None:
    model = _causal_model()
    x = _series()
    base = _predict(model, x)
    changed = x.clone()
    changed[:, P : 2 * P, 2] += 5.0  # patch 1 of variate 2 (after the normalization warm-up patch)
    pred = _predict(model, changed)
    torch.testing.assert_close(pred[:, :, :1], base[:, :, :1], atol=1e-6, rtol=0)  # nobody sees it at n = 0
    for other in (0, 1):  # other variates see it from n = 1 on
        assert (pred[:, other, 1:] - base[:, other, 1:]).abs().amax() > 1e-5


@pytest.mark.parametrize("norm_patches", [1, 2])
def test_normalization_is_causal_safe(norm_patches: int) -> None:
    model = _causal_model(norm_patches=norm_patches)
    x = _series()
    changed = x.clone()
    changed[:, -P:] = 10.0 * torch.randn_like(changed[:, -P:])  # only the last patch
    torch.testing.assert_close(_predict(model, changed)[:, :, :-1], _predict(model, x)[:, :, :-1], atol=1e-6, rtol=0)


def test_full_context_statistics_would_leak() -> None:
    """The counterexample the warm-up avoids: statistics over every patch let the last one reach earlier tokens."""
    model = _causal_model(norm_patches=N)
    x = _series()
    changed = x.clone()
    changed[:, -P:] += 5.0
    assert (_predict(model, changed)[:, :, :-1] - _predict(model, x)[:, :, :-1]).abs().amax() > 1e-3


def _batch_with_targets(targets: torch.Tensor, mask: torch.Tensor | None = None) -> TokenBatch:
    b = targets.shape[0]
    return TokenBatch(tokens=torch.zeros(b, C * N, 4), targets=targets.reshape(b, C * N, P), target_mask=mask)


def test_next_token_loss_pairs_each_patch_with_the_next_of_its_own_variate() -> None:
    adapter = TimerXLAdapter(TimerXLConfig(L, C, P), 16)
    targets = torch.randn(2, C, N, P)
    pred = torch.zeros_like(targets)
    pred[:, :, :-1] = targets[:, :, 1:]  # (c, n) → (c, n + 1)
    pred[:, :, -1] = 100.0  # the last patch of a variate has no next patch (not the next variate's first)
    pred, batch = pred.reshape(2, C * N, P), _batch_with_targets(targets)
    assert float(adapter.next_token_loss(pred, batch)["mse"]) == 0.0
    assert float(Adapter.next_token_loss(adapter, pred, batch)["mse"]) > 1.0  # the flat one-token shift would differ


def test_next_token_loss_skips_warmup_and_missing_values() -> None:
    adapter = TimerXLAdapter(TimerXLConfig(L, C, P, norm_patches=2), 16)
    targets = torch.randn(2, C, N, P)
    pred = torch.zeros_like(targets)
    pred[:, :, :-1] = targets[:, :, 1:]
    pred[:, :, 0] = 50.0  # n = 0 precedes the end of the warm-up: not trained
    mask = torch.ones_like(targets, dtype=torch.bool)
    mask[:, 1, 2, :3] = False
    pred[:, 1, 1, :3] = -50.0  # its targets are unobserved
    batch = _batch_with_targets(targets, mask.reshape(2, C * N, P))
    assert float(adapter.next_token_loss(pred.reshape(2, C * N, P), batch)["mse"]) == 0.0
    pred[:, 2, 1] += 1.0
    observed = C * (N - 2) * P - 3  # per series: pairs n = 1 .. N-2 of every variate, minus 3 missing values
    assert float(adapter.next_token_loss(pred.reshape(2, C * N, P), batch)["mse"]) == pytest.approx(P / observed)


def test_next_token_loss_needs_a_pair() -> None:
    adapter = TimerXLAdapter(TimerXLConfig(context_length=P, num_channels=C, patch_len=P), 16)
    batch = adapter.tokenize(torch.randn(2, P, C))
    with pytest.raises(ValueError, match="num_patches > norm_patches"):
        adapter.next_token_loss(torch.zeros(2, C, P), batch)


def _task_model(horizon: int, seed: int = 0, **adapter: Any) -> TaskModel:
    torch.manual_seed(seed)
    return build_task_model(_config(**adapter), HeadConfig(task="forecast", num_outputs=horizon)).eval()


@pytest.mark.parametrize("horizon", [P, 5 * P // 2, 3 * P])
def test_rollout_shape_and_steps(horizon: int) -> None:
    model = _task_model(horizon)
    calls = []
    model.backbone.encoder.register_forward_hook(lambda *_: calls.append(1))  # one encoder pass per step
    with torch.no_grad():
        out = model(_series())
    assert out.shape == (2, horizon, C) and torch.isfinite(out).all()
    assert len(calls) == math.ceil(horizon / P)


def test_rollout_feeds_predictions_back_with_a_sliding_context() -> None:
    x = _series()
    x[0, 2, 0] = float("nan")
    long, short = _task_model(3 * P), _task_model(P)
    short.load_state_dict(long.state_dict())
    with torch.no_grad():
        out = long(x)  # (B, 3P, C)
        torch.testing.assert_close(out[:, :P], short(x))
        shifted = torch.cat([x[:, P:], out[:, :P]], dim=1)  # the oldest patch drops out, length stays L
        torch.testing.assert_close(out[:, P : 2 * P], short(shifted))
        cropped = _task_model(5 * P // 2)
        cropped.load_state_dict(long.state_dict())
        torch.testing.assert_close(cropped(x), out[:, : 5 * P // 2])


def test_forecasts_are_denormalized_with_context_statistics() -> None:
    model = _task_model(P)
    x = _series()
    with torch.no_grad():
        torch.testing.assert_close(model(3.0 * x + 7.0), 3.0 * model(x) + 7.0, atol=1e-4, rtol=1e-4)


def test_finetune_system_uses_the_rollout() -> None:
    from mmsdk.training.systems import FinetuneSystem

    system = FinetuneSystem(_config(), {"task": "forecast", "num_outputs": 2 * P})
    outputs, targets = system._predict(_series(), torch.zeros(2, 2 * P, C))
    assert outputs.shape == targets.shape == (2, 2 * P, C)


def _sine_mixture(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float32).view(1, -1, 1)
    phase = torch.rand(batch, 1, 1, generator=generator) * 2 * math.pi
    amp = 0.5 + torch.rand(batch, 1, C, generator=generator)
    shift = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, C)  # variates are phase-shifted copies (cross-variate signal)
    series = torch.sin(2 * math.pi * t / 24.0 + phase + shift) + 0.5 * torch.sin(2 * math.pi * t / 10.0 + phase)
    return amp * series + 0.05 * torch.randn(batch, length, C, generator=generator)


def test_tiny_model_beats_naive_last_value() -> None:
    horizon = 2 * P
    model = _task_model(horizon, encoder={"dim": 32}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        window = _sine_mixture(32, L + horizon, generator)
        loss = torch.nn.functional.mse_loss(model(window[:, :L]), window[:, L:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = _sine_mixture(256, L + horizon, torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(model(test[:, :L]), test[:, L:]))
    naive = float(torch.nn.functional.mse_loss(test[:, L - 1 : L].expand(-1, horizon, -1), test[:, L:]))
    logger.info("tiny Timer-XL MSE %.4f vs naive last value %.4f", mse, naive)
    assert mse < 0.25 * naive, (mse, naive)


def test_onnx_export_unrolls_the_rollout(tmp_path: Path) -> None:
    from mmsdk.export.onnx import to_onnx

    model = _task_model(5 * P // 2)
    result = to_onnx(model, tmp_path / "timerxl.onnx", dynamic_batch=True)
    assert result.verified and set(result.max_abs_error) == {1, 2, 3}
    assert result.input_name == "series"


def test_data_builder_is_registered() -> None:
    model_config = build_model(_config(context_length=96, num_channels=7)).config
    splits = build_data({"horizon": 16, "batch_size": 4, "stride": 500}, model_config, "finetune")
    x, y = splits.train[0]
    assert x.shape == (96, 7) and y.shape == (16, 7)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(L, C), "shape \\(batch, time, channels\\)"),
        (torch.randn(0, L, C), "empty batch"),
        (torch.randn(2, L - 1, C), "context_length=32"),
        (torch.randn(2, L, C + 1), "num_channels=3"),
        (torch.ones(2, L, C, dtype=torch.long), "floating-point"),
        (torch.full((2, L, C), float("inf")), "Inf"),
    ],
)
def test_bad_inputs_are_rejected(x: torch.Tensor, match: str) -> None:
    model = _task_model(P)
    with pytest.raises(ValueError, match=match):
        model(x)
