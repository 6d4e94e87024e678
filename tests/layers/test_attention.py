"""Attention backends agree with the reference path for every mask kind, and masks mean what they say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mmsdk.layers.attention import PreparedMask
from mmsdk.layers.attention_mask import AttentionMask
from mmsdk.layers.transformer import Transformer
from mmsdk.layers.transformer_config import TransformerConfig

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

B, D, HEADS, DEPTH = 2, 16, 2, 2
VARIATES, STEPS = 3, 4
N = VARIATES * STEPS  # 12 tokens, laid out variate-major: token n = v * STEPS + t


def _variate_ids() -> Tensor:
    return (torch.arange(N) // STEPS).expand(B, N).contiguous()


def _time_ids() -> Tensor:
    return (torch.arange(N) % STEPS).expand(B, N).contiguous()


def _padding(left: bool) -> Tensor:
    """Sequence 0 has 3 padded tokens (at the end, or the start with `left`), sequence 1 has 1."""
    real = torch.ones(B, N, dtype=torch.bool)
    if left:
        real[0, :3], real[1, :1] = False, False
    else:
        real[0, -3:], real[1, -1:] = False, False
    return real


def _sample_ids() -> Tensor:
    """Three packed samples of lengths 5, 4, 3 in sequence 0, and two of 7, 5 in sequence 1."""
    return torch.tensor([[0] * 5 + [1] * 4 + [2] * 3, [0] * 7 + [1] * 5])


@dataclass
class Case:
    """One mask configuration of the parity tests."""

    mask: Callable[[], AttentionMask | None]
    variate_bias: bool = False


CASES: dict[str, Case] = {
    "none": Case(lambda: None),
    "causal": Case(lambda: AttentionMask(causal=True)),
    "padding_right": Case(lambda: AttentionMask(padding_mask=_padding(left=False))),
    "padding_left": Case(lambda: AttentionMask(padding_mask=_padding(left=True))),
    "causal_padding_left": Case(lambda: AttentionMask(causal=True, padding_mask=_padding(left=True))),
    "prefix_lm": Case(lambda: AttentionMask(causal=True, prefix_length=5)),
    "packed": Case(lambda: AttentionMask(sample_ids=_sample_ids())),
    "packed_causal_padding": Case(
        lambda: AttentionMask(causal=True, sample_ids=_sample_ids(), padding_mask=_padding(left=False))
    ),
    "time_causal": Case(lambda: AttentionMask(causal=True, time_ids=_time_ids())),
    "variate_bias": Case(lambda: None, variate_bias=True),
    "variate_bias_time_causal": Case(lambda: AttentionMask(causal=True, time_ids=_time_ids()), variate_bias=True),
    "variate_bias_padding": Case(lambda: AttentionMask(padding_mask=_padding(left=True)), variate_bias=True),
}


def _twins(backends: tuple[str, ...], device: str = "cpu", **overrides: object) -> dict[str, Transformer]:
    """Transformers with identical (randomly perturbed, so biases and norms are non-trivial) weights."""
    kwargs: dict[str, object] = {"dim": D, "depth": DEPTH, "heads": HEADS, **overrides}
    source = Transformer(TransformerConfig(**kwargs, attention="reference"))  # type: ignore[arg-type]
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    models = {}
    for backend in backends:
        model = Transformer(TransformerConfig(**kwargs, attention=backend))  # type: ignore[arg-type]
        model.load_state_dict(source.state_dict())
        models[backend] = model.to(device).eval()
    return models


def _run(model: Transformer, x: Tensor, case: Case) -> Tensor:
    return model(x, case.mask(), variate_ids=_variate_ids() if case.variate_bias else None)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_parity_with_reference(name: str) -> None:
    case = CASES[name]
    models = _twins(("reference", "sdpa", "flex", "auto"), variate_bias=case.variate_bias)
    if case.variate_bias:  # make sure the bias is not the zero initialization, so it matters
        assert models["reference"].blocks[0].attn.variate_bias.abs().sum() > 0
    x = torch.randn(B, N, D)
    with torch.no_grad():  # FlexAttention on CPU runs forward only
        outputs = {backend: _run(model, x, case) for backend, model in models.items()}
    expected = outputs.pop("reference")
    assert torch.isfinite(expected).all()
    for backend, out in outputs.items():
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=lambda m, b=backend: f"{b}: {m}")


@pytest.mark.parametrize("name", list(CASES))
def test_the_additive_mask_of_onnx_export_matches_the_boolean_one(name: str) -> None:
    """While exporting, SDPA takes the dense mask as a float additive mask (one Add per layer in the graph)."""
    case = CASES[name]
    model = _twins(("sdpa",), variate_bias=case.variate_bias)["sdpa"]
    x = torch.randn(B, N, D)
    with torch.no_grad():
        expected = _run(model, x, case)
        with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
            exported = _run(model, x, case)
            prepared = PreparedMask.build(case.mask(), "sdpa", B, N, torch.device("cpu"))
    if prepared.dense is not None:
        assert prepared.additive is not None and prepared.additive.dtype == torch.float32
        assert torch.equal(prepared.additive == 0, prepared.dense)
    torch.testing.assert_close(exported, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_sdpa_gradient_parity_with_reference(name: str) -> None:
    case = CASES[name]
    models = _twins(("reference", "sdpa"), variate_bias=case.variate_bias)
    x0, weight = torch.randn(B, N, D), torch.randn(B, N, D)
    grads: dict[str, dict[str, Tensor]] = {}
    for backend, model in models.items():
        x = x0.clone().requires_grad_(True)
        (_run(model, x, case) * weight).sum().backward()
        grads[backend] = {"input": x.grad, **{k: p.grad for k, p in model.named_parameters()}}
    for key, expected in grads["reference"].items():
        assert expected is not None, key
        torch.testing.assert_close(grads["sdpa"][key], expected, atol=1e-5, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")
    if case.variate_bias:
        assert grads["reference"]["blocks.0.attn.variate_bias"].abs().sum() > 0


def _on(device: str, mask: AttentionMask | None) -> AttentionMask | None:
    """The same mask with its tensors moved to `device`."""
    if mask is None:
        return None
    for field in ("padding_mask", "sample_ids", "time_ids"):
        value = getattr(mask, field)
        if value is not None:
            setattr(mask, field, value.to(device))
    return mask


def _assert_relative_close(got: Tensor, expected: Tensor, tol: float, what: str) -> None:
    """Relative error in norm: robust for low-precision outputs and gradients of any magnitude."""
    assert torch.isfinite(got).all(), what
    error = float((got.float() - expected.float()).norm() / expected.float().norm().clamp_min(1e-12))
    assert error < tol, f"{what}: relative error {error:.2e} >= {tol:.0e}"


def _fused_vs_reference(name: str, backends: tuple[str, ...], device: str, dtype: torch.dtype) -> None:
    """Forward and backward of `backends` in `dtype` against the reference path (same weights and dtype)."""
    case = CASES[name]
    width, heads = 64, 4  # head_dim 16: the smallest width the fused GPU kernels are built for
    models = _twins(("reference", *backends), device=device, dim=width, heads=heads, variate_bias=case.variate_bias)
    x0 = torch.randn(B, N, width, device=device)
    weight = torch.randn(B, N, width, device=device)
    ids = _variate_ids().to(device) if case.variate_bias else None
    results: dict[str, dict[str, Tensor]] = {}
    for backend, model in models.items():
        model.to(dtype)
        x = x0.to(dtype).requires_grad_(True)
        out = model(x, _on(device, case.mask()), variate_ids=ids)
        (out.float() * weight).sum().backward()
        grads = {k: p.grad for k, p in model.named_parameters() if k.startswith("blocks.0.attn.")}
        assert x.grad is not None and all(g is not None for g in grads.values())
        results[backend] = {"output": out.detach(), "input grad": x.grad, **grads}  # type: ignore[dict-item]
    for backend in backends:
        for key, expected in results["reference"].items():
            # bf16 gradients of these deliberately perturbed weights are ~5-10% off float32 for every backend
            tol = 1e-4 if dtype == torch.float32 else 3e-2 if key == "output" else 1e-1
            _assert_relative_close(results[backend][key], expected, tol, f"{backend} {dtype} {key}")


LOW_PRECISION_CASES = ["causal", "padding_left", "packed_causal_padding", "variate_bias_time_causal"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", LOW_PRECISION_CASES)
def test_cpu_sdpa_matches_reference_in_low_precision(name: str, dtype: torch.dtype) -> None:
    _fused_vs_reference(name, ("sdpa",), "cpu", dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", LOW_PRECISION_CASES)
def test_cuda_flex_and_sdpa_match_reference(name: str, dtype: torch.dtype) -> None:
    """Compiled FlexAttention and SDPA on CUDA, forward and backward, against the reference path."""
    _fused_vs_reference(name, ("sdpa", "flex"), "cuda", dtype)


# --- what the masks mean, independent of the backend -------------------------------------------------------------


@pytest.fixture(params=["reference", "sdpa"])
def model(request: pytest.FixtureRequest) -> Transformer:
    return _twins((request.param,))[request.param]


@pytest.mark.parametrize("t", [0, 4, 10])
def test_index_causal_ignores_the_future(model: Transformer, t: int) -> None:
    x = torch.randn(B, N, D)
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn(B, N - t - 1, D)
    with torch.no_grad():
        out, out2 = model(x, AttentionMask(causal=True)), model(changed, AttentionMask(causal=True))
    torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :], atol=1e-3)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_time_causal_sees_every_variates_past_only(model: Transformer, t: int) -> None:
    mask = AttentionMask(causal=True, time_ids=_time_ids())
    times = _time_ids()[0]
    x = torch.randn(B, N, D)
    future = x.clone()
    future[:, times > t] = torch.randn(B, int((times > t).sum()), D)
    with torch.no_grad():
        out, out_future = model(x, mask), model(future, mask)
    torch.testing.assert_close(out_future[:, times <= t], out[:, times <= t], atol=1e-6, rtol=0)
    assert not torch.allclose(out_future[:, times > t], out[:, times > t], atol=1e-3)

    # changing variate 0 at time t reaches the other variates at time t but not at earlier times
    present = x.clone()
    present[:, t] = torch.randn(B, D)  # token (v=0, t)
    with torch.no_grad():
        out_present = model(present, mask)
    other_now = [v * STEPS + t for v in range(1, VARIATES)]
    assert not torch.allclose(out_present[:, other_now], out[:, other_now], atol=1e-3)
    torch.testing.assert_close(out_present[:, times < t], out[:, times < t], atol=1e-6, rtol=0)


def test_time_causal_differs_from_index_causal(model: Transformer) -> None:
    x = torch.randn(B, N, D)
    with torch.no_grad():
        by_time = model(x, AttentionMask(causal=True, time_ids=_time_ids()))
        by_index = model(x, AttentionMask(causal=True))
    assert not torch.allclose(by_time, by_index, atol=1e-3)


@pytest.mark.parametrize("left", [False, True])
def test_padded_keys_do_not_influence_real_tokens(model: Transformer, left: bool) -> None:
    real = _padding(left)
    x = torch.randn(B, N, D)
    changed = torch.where(real.unsqueeze(-1), x, 100 * torch.randn(B, N, D))
    with torch.no_grad():
        out = model(x, AttentionMask(padding_mask=real))
        out2 = model(changed, AttentionMask(padding_mask=real))
        unmasked = model(changed)
    torch.testing.assert_close(out2[real], out[real], atol=1e-6, rtol=0)
    assert not torch.allclose(unmasked[real], out[real], atol=1e-3)  # without the mask they would


def test_packed_samples_do_not_see_each_other(model: Transformer) -> None:
    ids = _sample_ids()
    mask = AttentionMask(sample_ids=ids)
    x = torch.randn(B, N, D)
    changed = torch.where((ids == 1).unsqueeze(-1), torch.randn(B, N, D), x)
    with torch.no_grad():
        out, out2 = model(x, mask), model(changed, mask)
        alone = model(x[:1, :5])  # sample 0 of sequence 0 on its own
    others = ids != 1
    torch.testing.assert_close(out2[others], out[others], atol=1e-6, rtol=0)
    assert not torch.allclose(out2[ids == 1], out[ids == 1], atol=1e-3)
    torch.testing.assert_close(out[:1, :5], alone, atol=1e-5, rtol=1e-5)


def test_prefix_lm_prefix_is_bidirectional_and_rest_causal(model: Transformer) -> None:
    prefix = 5
    mask = AttentionMask(causal=True, prefix_length=prefix)
    x = torch.randn(B, N, D)
    in_prefix = x.clone()
    in_prefix[:, prefix - 1] = torch.randn(B, D)
    after = x.clone()
    after[:, prefix + 2 :] = torch.randn(B, N - prefix - 2, D)
    with torch.no_grad():
        out, out_prefix, out_after = model(x, mask), model(in_prefix, mask), model(after, mask)
    assert not torch.allclose(out_prefix[:, 0], out[:, 0], atol=1e-3)  # token 0 sees the end of the prefix
    torch.testing.assert_close(out_after[:, : prefix + 2], out[:, : prefix + 2], atol=1e-6, rtol=0)


def test_variate_bias_changes_output_only_with_ids() -> None:
    model = _twins(("reference",), variate_bias=True)["reference"]
    x = torch.randn(B, N, D)
    shuffled_ids = _variate_ids()[:, torch.randperm(N)]
    with torch.no_grad():
        with_ids = model(x, variate_ids=_variate_ids())
        other_ids = model(x, variate_ids=shuffled_ids)
        without = model(x)
    assert not torch.allclose(with_ids, without, atol=1e-3)
    assert not torch.allclose(with_ids, other_ids, atol=1e-3)  # which tokens share a variate matters


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_rope_runs_and_is_position_sensitive(backend: str) -> None:
    model = _twins((backend,), rope="1d")[backend]
    x = torch.randn(B, N, D)
    index = torch.arange(N).expand(B, N)
    with torch.no_grad():
        default = model(x)
        explicit = model(x, positions=index)
        shifted = model(x, positions=index + 7)
        shuffled = model(x, positions=index.flip(-1))
        causal = model(x, AttentionMask(causal=True), positions=_time_ids())
    assert default.shape == (B, N, D) and torch.isfinite(causal).all()
    torch.testing.assert_close(explicit, default)
    torch.testing.assert_close(shifted, default, atol=1e-4, rtol=1e-4)  # rotary: only offsets matter
    assert not torch.allclose(shuffled, default, atol=1e-3)


def test_rope_parity_with_reference() -> None:
    models = _twins(("reference", "sdpa", "flex"), rope="1d")
    x, positions = torch.randn(B, N, D), _time_ids()
    mask = AttentionMask(causal=True, time_ids=positions)
    with torch.no_grad():
        outs = {b: m(x, mask, positions=positions) for b, m in models.items()}
    torch.testing.assert_close(outs["sdpa"], outs["reference"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs["flex"], outs["reference"], atol=1e-5, rtol=1e-5)


def test_without_rope_the_stack_is_permutation_equivariant(model: Transformer) -> None:
    x = torch.randn(B, N, D)
    perm = torch.randperm(N)
    with torch.no_grad():
        out, out_perm = model(x), model(x[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)


def test_wrong_width_raises(model: Transformer) -> None:
    with pytest.raises(ValueError, match="token width"):
        model(torch.randn(B, N, D + 1))


# --- the mask description itself ---------------------------------------------------------------------------------


def test_dense_mask_rules() -> None:
    causal_prefix = AttentionMask(causal=True, prefix_length=2).dense(1, 4, torch.device("cpu"))
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(causal_prefix[0, 0], expected)

    padded = AttentionMask(padding_mask=torch.tensor([[True, False, True]])).dense(1, 3, torch.device("cpu"))
    expected = torch.tensor([[1, 0, 1], [1, 1, 1], [1, 0, 1]], dtype=torch.bool)  # a padded query sees itself
    torch.testing.assert_close(padded[0, 0], expected)

    times = AttentionMask(causal=True, time_ids=torch.tensor([[0, 1, 0, 1]])).dense(1, 4, torch.device("cpu"))
    expected = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(times[0, 0], expected)

    assert AttentionMask().dense(2, 4, torch.device("cpu")) is None


@pytest.mark.parametrize("name", [n for n in CASES if n != "none"])
def test_no_row_is_fully_masked(name: str) -> None:
    mask = CASES[name].mask()
    if mask is None:
        return
    dense = mask.dense(B, N, torch.device("cpu"))
    assert dense is not None
    dense = dense.expand(B, 1, N, N)  # batch-independent masks broadcast over B
    assert bool(dense.any(dim=-1).all())
    assert bool(dense.diagonal(dim1=-2, dim2=-1).all())


def test_flex_backward_on_cpu_raises_a_clear_error() -> None:
    model = Transformer(TransformerConfig(dim=16, depth=1, heads=2, attention="flex"))
    x = torch.randn(2, 8, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="no backward pass on CPU"):
        model(x, AttentionMask(causal=True))


def test_flex_with_attention_dropout_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"TransformerConfig\.attention"):
        TransformerConfig(dim=16, heads=2, attention="flex", attention_dropout=0.1)


def test_reference_attention_dropout_drops_probabilities_like_sdpa() -> None:
    # with every probability dropped the output is exactly zero on both paths (dropout on weights, not outputs)
    from mmsdk.layers.attention import reference_attention

    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    assert torch.equal(reference_attention(q, k, v, None, None, dropout=0.999999), torch.zeros(1, 2, 5, 4))
    assert not torch.equal(
        reference_attention(q, k, v, None, None, dropout=0.5), reference_attention(q, k, v, None, None)
    )


@pytest.mark.slow
@pytest.mark.parametrize("rope", ["none", "1d"])
def test_flex_inside_a_compiled_model_matches_the_reference(rope: str) -> None:
    """Inductor lowers FlexAttention on CPU once keys and values are separate buffers (the fused key/value
    projection used to fail with "query, key, value are the same buffer"), and rotary keys no longer deviate
    (~1e-2 before)."""
    import torch._dynamo

    torch._dynamo.reset()
    b, c, t, d = 2, 3, 8, 32
    x = torch.randn(b, c * t, d)
    time_ids = torch.arange(t).repeat(c).expand(b, -1)
    variates = torch.arange(c).repeat_interleave(t).expand(b, -1)
    config = {"dim": d, "depth": 2, "heads": 4, "rope": rope, "variate_bias": True}
    reference = Transformer(TransformerConfig(**config, attention="reference")).eval()
    with torch.no_grad():
        for block in reference.blocks:
            block.attn.variate_bias.normal_()
    flex = Transformer(TransformerConfig(**config, attention="flex")).eval()
    flex.load_state_dict(reference.state_dict())
    mask = AttentionMask(causal=True, time_ids=time_ids)
    with torch.no_grad():
        expected = reference(x, mask, positions=time_ids, variate_ids=variates)
        got = torch.compile(flex, fullgraph=True)(x, mask, positions=time_ids, variate_ids=variates)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_compiled_models_use_sdpa_for_flex_on_cpus_whose_flex_kernel_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsdk.layers import attention
    from mmsdk.layers.attention import PreparedMask

    mask = AttentionMask(causal=True, time_ids=torch.arange(4).repeat(2).expand(2, -1))
    cpu = torch.device("cpu")
    assert PreparedMask.build(mask, "flex", 2, 8, cpu).backend == "flex"  # eager flex on CPU is correct
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for trusted, backend in ((True, "flex"), (False, "sdpa")):
        monkeypatch.setattr(attention, "cpu_flex_lowers_correctly", lambda trusted=trusted: trusted)
        prepared = PreparedMask.build(mask, "flex", 2, 8, cpu)
        assert prepared.backend == backend
    assert prepared.dense is not None and torch.equal(prepared.dense, mask.dense(2, 8, cpu))


@pytest.mark.slow
def test_compiled_flex_kernel_recompiles_at_most_once_for_new_lengths() -> None:
    import torch._dynamo
    from torch._dynamo.utils import counters
    from torch.nn.attention.flex_attention import create_block_mask

    from mmsdk.layers import attention

    torch._dynamo.reset()
    counters.clear()
    attention._compiled_flex = None
    kernel = attention.compiled_flex_attention()
    for n in (16, 24, 40):
        q, k, v = (torch.randn(1, 2, n, 8) for _ in range(3))
        block = create_block_mask(lambda b, h, qi, ki: ki <= qi, B=None, H=None, Q_LEN=n, KV_LEN=n, device="cpu")
        out = kernel(q, k, v, block_mask=block)
        if attention.cpu_flex_lowers_correctly():  # the AVX2 build of the CPU kernel is wrong at some lengths
            expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] <= 2  # the first length, then one kernel for every other length
    attention._compiled_flex = None
