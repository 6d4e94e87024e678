"""The fused CPU dropout against the reference (`torch.nn.functional.dropout`): the same drop rate, scaling and
gradients, the same layer surface as `nn.Dropout`, and the reference path where the fused one does not apply."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmsdk.layers.dropout import Dropout, dropout, reference_dropout


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("path", [dropout, reference_dropout])
def test_both_paths_drop_at_rate_p_and_scale_the_rest(p: float, path) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 33, 47) + 0.5  # no zeros of its own; an odd element count (not a multiple of 4)
    out = path(x, p)
    dropped = out == 0
    n = x.numel()
    assert abs(float(dropped.float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 binomial std
    torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p), rtol=1e-4, atol=0)
    assert out.dtype == x.dtype and out.shape == x.shape


def test_the_gradient_uses_the_forward_mask() -> None:
    torch.manual_seed(1)
    x = (torch.rand(8, 16, 32) + 0.5).requires_grad_()
    out = dropout(x, 0.3)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected = torch.where(out == 0, 0.0, grad / (1 - 0.3))  # the gradient of x · keep / (1 − p)
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-6)


def test_the_mask_follows_torch_manual_seed_and_differs_between_calls() -> None:
    x = torch.ones(1000)
    torch.manual_seed(3)
    first, second = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), first) and not torch.equal(first, second)


def test_identity_in_eval_and_at_p_zero_zeros_at_p_one() -> None:
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(torch.empty(0, 3), 0.5).shape == (0, 3)


def test_the_layer_is_an_nn_dropout_with_the_fused_path() -> None:
    layer = Dropout(0.25)
    assert isinstance(layer, nn.Dropout) and layer.p == 0.25 and layer.state_dict() == {}
    x = torch.rand(16, 64) + 0.5
    assert torch.equal(layer.eval()(x), x)
    torch.manual_seed(5)
    fused = layer.train()(x)
    torch.manual_seed(5)
    assert torch.equal(fused, dropout(x, 0.25))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_bf16_inputs_keep_their_dtype() -> None:
    x = torch.rand(32, 32, dtype=torch.bfloat16) + 0.5
    out = dropout(x, 0.5)
    assert out.dtype == torch.bfloat16 and 0.3 < float((out == 0).float().mean()) < 0.7


def test_compiled_code_takes_the_reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmsdk.layers.dropout as module

    def fused_not_allowed(*args):
        raise AssertionError("the fused path ran under torch.compile")

    monkeypatch.setattr(module._ByteMaskDropout, "apply", fused_not_allowed)
    layer = Dropout(0.5).train()
    compiled = torch.compile(lambda x: layer(x), fullgraph=True, backend="eager")
    out = compiled(torch.rand(64, 64) + 0.5)
    assert 0.3 < float((out == 0).float().mean()) < 0.7
    with pytest.raises(AssertionError, match="fused path"):
        layer(torch.rand(4, 4))  # eager CPU takes it
