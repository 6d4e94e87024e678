"""Moirai adapter: any-variate tokenization, variate equivariance, packing, leak-free tail masking, NLL, zero-shot."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from mmsdk.adapters.timeseries.distributions import MixtureHead, mixture_from_parameters, mixture_parameters
from mmsdk.adapters.timeseries.moirai import MoiraiAdapter, MoiraiConfig, patch_size_for_freq
from mmsdk.contracts.mask_strategies import MaskingConfig, apply_strategy
from mmsdk.models import build_model, build_task_model
from mmsdk.models.config import ModelConfig

P = 8
ENCODER = {"dim": 16, "depth": 2, "heads": 2, "rope": "1d", "variate_bias": True, "attention": "reference"}


def _config(objective: str = "bert", **adapter: object) -> ModelConfig:
    adapter_config = {"context_length": 4 * P, "patch_sizes": [4, P], "patch_size": P, "max_variates": 8, **adapter}
    return ModelConfig.from_dict(
        {"adapter": "moirai", "adapter_config": adapter_config, "encoder": ENCODER, "objective": objective}
    )


def _forecaster(horizon: int = 12, **adapter: object):
    torch.manual_seed(0)
    return build_task_model(_config(**adapter), {"task": "forecast", "num_outputs": horizon}).eval()


def _sines(n: int, length: int, c: int, seed: int) -> torch.Tensor:
    """Mixtures of two sines with random periods, amplitudes, phases and offsets, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32).view(1, -1, 1)
    out = 3 * torch.randn(n, 1, c, generator=g) + 0.05 * torch.randn(n, length, c, generator=g)
    for _ in range(2):
        period = 10 + 20 * torch.rand(n, 1, c, generator=g)
        amplitude = 0.5 + 1.5 * torch.rand(n, 1, c, generator=g)
        out = out + amplitude * torch.sin(2 * math.pi * t / period + 6.28 * torch.rand(n, 1, c, generator=g))
    return out


def test_patch_size_for_freq() -> None:
    assert patch_size_for_freq("H") == 32 and patch_size_for_freq("15min") == 32 and patch_size_for_freq("T") == 32
    assert patch_size_for_freq("D") == 16 and patch_size_for_freq("W-SUN") == 16
    assert patch_size_for_freq("MS") == 8 and patch_size_for_freq("Q") == 8 and patch_size_for_freq("ms") == 32
    assert patch_size_for_freq("S", (8, 16, 32, 64, 128)) == 64
    assert patch_size_for_freq("M", (16, 32)) == 16  # nothing small enough: the smallest
    with pytest.raises(ValueError, match="unknown frequency"):
        patch_size_for_freq("fortnightly-ish!")


def test_variate_permutation_equivariance() -> None:
    model = _forecaster()
    x = _sines(2, 4 * P, 5, seed=1)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out, out_perm = model(x), model(x[..., perm])
        hidden, batch = model.encode(x)
        hidden_perm, _ = model.encode(x[..., perm])
    torch.testing.assert_close(out_perm, out[..., perm], atol=1e-5, rtol=1e-5)
    d = hidden.shape[-1]
    tokens = hidden.reshape(2, 5, -1, d)[:, perm]  # (B, C, N, D) in the permuted variate order
    torch.testing.assert_close(hidden_perm.reshape(2, 5, -1, d), tokens, atol=1e-5, rtol=1e-5)
    assert batch.variate_ids is not None and batch.time_ids is not None
    assert batch.variate_ids[0].tolist() == [c for c in range(5) for _ in range(4)]
    assert batch.time_ids[0].tolist() == list(range(4)) * 5


def test_one_model_serves_any_number_of_variates() -> None:
    model = _forecaster(horizon=12)
    for c in (1, 5, 8):
        x = _sines(3, 4 * P, c, seed=c)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (3, 12, c) and torch.isfinite(out).all()
    with torch.no_grad():  # another context length, same model
        assert model(_sines(2, 7 * P, 2, seed=0)).shape == (2, 12, 2)


def test_packing_matches_separate_runs() -> None:
    model = build_model(_config()).eval()
    adapter: MoiraiAdapter = model.adapter
    series = [_sines(1, 4 * P, 1, 0)[0], _sines(1, 2 * P, 3, 1)[0], _sines(1, 6 * P, 2, 2)[0]]  # 4, 6, 12 tokens
    series[2][3:11, 1] = float("nan")
    packed = adapter.pack(series, max_tokens=16)
    assert packed.batch.tokens.shape[:2] == (2, 16)
    assert [(s.row, s.start, s.stop) for s in packed.spans] == [(0, 0, 4), (0, 4, 10), (1, 0, 12)]
    with torch.no_grad():
        features = model.backbone(packed.batch)  # (2, 16, D)
        for s, span in zip(series, packed.spans):
            alone = model.backbone(adapter.tokenize(s.unsqueeze(0)))[0]
            torch.testing.assert_close(features[span.row, span.start : span.stop], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_tokens"):
        adapter.pack(series, max_tokens=8)


def test_nll_is_finite_and_ignores_unobserved_values() -> None:
    model = build_model(_config())
    adapter: MoiraiAdapter = model.adapter
    x = _sines(2, 4 * P, 3, seed=3)
    x[0, 5:20, 1] = float("nan")
    x[1, -P:, 2] = float("nan")  # a whole hidden patch missing
    batch = model.tokenize(x)
    assert batch.targets is not None and batch.target_mask is not None
    mask = apply_strategy(MaskingConfig(strategy="tail", ratio=0.5), batch)
    out = model(batch, mask)
    assert out.pred.shape[:2] == (2, batch.num_tokens)
    loss = adapter.reconstruction_loss(out.pred, batch, mask.target)["nll"]
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert adapter.distribution_head.logits.weight.grad is not None  # the shared head is trained
    scrambled = torch.where(batch.target_mask, batch.targets, torch.full_like(batch.targets, 1e6))
    again = adapter.reconstruction_loss(out.pred.detach(), batch.replace(targets=scrambled), mask.target)["nll"]
    torch.testing.assert_close(again, loss.detach())
    causal = build_model(_config("causal"))
    assert torch.isfinite(causal.adapter.next_token_loss(causal(causal.tokenize(x)).pred, causal.tokenize(x))["nll"])


def test_mixture_parameters_round_trip() -> None:
    head = MixtureHead(16, P)
    features = torch.randn(2, 5, 16)
    rebuilt = mixture_from_parameters(mixture_parameters(head, features), head.components, P)
    torch.testing.assert_close(rebuilt.mean, head(features).mean)
    model = build_model(_config())
    assert model.heads["moirai"].mixture is model.adapter.distribution_head  # shared: load_backbone carries it


@pytest.mark.parametrize(("stat_ratio", "leaks"), [(0.5, False), (1.0, True)])
def test_hidden_tail_values_do_not_leak(stat_ratio: float, leaks: bool) -> None:
    model = build_model(_config(stat_ratio=stat_ratio, context_length=8 * P)).eval()
    x = _sines(2, 8 * P, 3, seed=4)
    batch = model.tokenize(x)
    mask = apply_strategy(MaskingConfig(strategy="tail", ratio=0.5), batch)
    changed = x.clone()
    changed[:, -4 * P :] = 10 * changed[:, -4 * P :] + 5  # only the masked tail (4 of 8 patches)
    changed[0, -3, 1] = float("nan")
    assert batch.time_ids is not None and bool((mask.hidden == (batch.time_ids >= 4)).all())
    with torch.no_grad():
        first, second = model(batch, mask).pred, model(model.tokenize(changed), mask).pred
    assert torch.allclose(first, second, atol=1e-6) != leaks  # stat_ratio = 1 leaks through the statistics


def test_a_left_padded_short_series_is_normalized_by_its_own_values() -> None:
    """A series shorter than the window (leading NaN patches) takes its statistics from its first observed
    patches, as the same series in a window of its own length would, instead of keeping its raw scale."""
    adapter = build_model(_config(context_length=8 * P)).adapter
    short = 1000.0 + 50.0 * _sines(2, 4 * P, 2, seed=6)  # (B, 4P, C) far from unit scale
    padded = torch.cat([torch.full((2, 4 * P, 2), float("nan")), short], dim=1)  # 4 empty patches, then the series
    z_short, _, loc_short, scale_short = adapter.normalize(short)
    z_padded, _, loc_padded, scale_padded = adapter.normalize(padded)
    torch.testing.assert_close(loc_padded, loc_short)
    torch.testing.assert_close(scale_padded, scale_short)
    torch.testing.assert_close(z_padded[:, 4 * P :], z_short)
    stat_tokens = adapter.tokenize(padded).context["stat_tokens"].view(2, 2, 8)  # (B, C, N)
    assert bool((stat_tokens == (torch.arange(8) < 4 + 2)).all())  # the 4 empty patches + S = 2 of 4 observed ones


def test_forecast_distribution_and_monotone_quantiles() -> None:
    model = _forecaster(horizon=12)
    x = _sines(3, 4 * P, 2, seed=5)
    dist = model.adapter.forecast_distribution(
        model, x, num_samples=200, quantiles=(0.1, 0.5, 0.9), generator=torch.Generator().manual_seed(0)
    )
    assert dist.samples.shape == (200, 3, 12, 2) and dist.quantiles.shape == (3, 3, 12, 2)
    assert bool((dist.quantiles[1:] >= dist.quantiles[:-1]).all())
    with torch.no_grad():
        torch.testing.assert_close(dist.mean, model(x))
    with pytest.raises(ValueError, match="Moirai forecast TaskModel"):
        model.adapter.forecast_distribution(build_model(_config()), x)


def test_forecast_encodes_once() -> None:
    """The forecaster encodes the context extended by its forecast slots only, never the plain context too."""
    model = _forecaster(horizon=12)
    calls = []
    handle = model.backbone.encoder.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    try:
        with torch.no_grad():
            model(_sines(2, 4 * P, 3, seed=1))
    finally:
        handle.remove()
    assert calls == [(2, 3 * (4 + 2), ENCODER["dim"])]  # 4 context + ceil(12 / 8) forecast patches per variate


def test_linear_probe_trains_the_shared_mixture_head_only() -> None:
    model = _forecaster(horizon=12)
    model.freeze_backbone()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable and trainable == {id(p) for p in model.head.mixture.parameters()}  # the shared mixture head
    assert not any(p.requires_grad for p in model.backbone.encoder.parameters())
    model.freeze_backbone(False)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_inputs_are_rejected() -> None:
    model = _forecaster()
    for bad, match in [
        (torch.zeros(2, 4 * P), "shape"),
        (torch.zeros(2, 4 * P + 3, 1), "multiple of patch_size"),
        (torch.zeros(2, 4 * P, 9), "max_variates"),
        (torch.zeros(2, 4 * P, 1, dtype=torch.long), "floating-point"),
        (torch.full((2, 4 * P, 1), float("inf")), "Inf"),
        (torch.zeros(0, 4 * P, 1), "empty"),
    ]:
        with pytest.raises(ValueError, match=match):
            model(bad)
    with pytest.raises(ValueError, match="patch_size"):
        MoiraiConfig(patch_sizes=(8, 16), patch_size=32)
    with pytest.raises(ValueError, match="stat_ratio"):
        MoiraiConfig(stat_ratio=0.0)
    with pytest.raises(ValueError, match="components"):
        MoiraiConfig(components=("gamma",))  # type: ignore[arg-type]


def test_onnx_export_of_the_forecaster(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from mmsdk.export.onnx import to_onnx

    result = to_onnx(_forecaster(horizon=12), tmp_path / "moirai.onnx", dynamic_batch=True)
    assert result.verified and set(result.max_abs_error) == {1, 2, 3}


@pytest.mark.slow
def test_zero_shot_forecast_beats_naive_after_tail_masked_pretraining(tmp_path) -> None:
    import mmsdk
    from mmsdk.hub import load_backbone, save_pretrained

    logging.getLogger("lightning").setLevel(logging.ERROR)
    config = _config(context_length=8 * P)
    trainer = {"max_steps": 150, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path / "runs")}
    result = mmsdk.pretrain(
        config,
        _sines(1024, 10 * P, 1, seed=0),
        masking={"strategy": "tail", "ratio": 0.3},
        optim={"lr": 3e-3},
        trainer=trainer,
        batch_size=16,
    )
    save_pretrained(result.model, tmp_path / "ckpt")
    model = build_task_model(config, {"task": "forecast", "num_outputs": 2 * P}).eval()
    report = load_backbone(model, tmp_path / "ckpt")
    assert not report.missing  # the mixture heads and mask token are backbone weights
    errors = {}
    for c in (1, 3):  # trained on univariate series; the 3-variate case is zero-shot in C as well
        x = _sines(256, 10 * P, c, seed=99)
        context, future = x[:, : 8 * P], x[:, 8 * P :]
        with torch.no_grad():
            forecast = model(context)
        errors[c] = ((forecast - future).abs().mean().item(), (context[:, -1:] - future).abs().mean().item())
    logging.getLogger(__name__).info("zero-shot MAE (model, naive) by variates: %s", errors)
    assert errors[1][0] < 0.8 * errors[1][1], errors
    assert errors[3][0] < errors[3][1], errors
