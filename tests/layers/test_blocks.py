"""Transformer building blocks: stochastic depth, MLP and norm options, cross-attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmsdk.layers.attention import PreparedMask
from mmsdk.layers.block import Block
from mmsdk.layers.drop_path import DropPath
from mmsdk.layers.mlp import GeluMlp, SwiGluMlp, build_mlp
from mmsdk.layers.norms import BatchNorm, build_norm
from mmsdk.layers.transformer import Transformer
from mmsdk.layers.transformer_config import TransformerConfig

B, N, M, D = 3, 6, 5, 16


def test_drop_path_is_identity_in_eval_and_at_zero() -> None:
    x = torch.randn(8, 4, D)
    drop = DropPath(0.9).eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_drop_path_drops_whole_samples_in_train() -> None:
    p = 0.95
    drop = DropPath(p).train()
    x = torch.randn(64, 4, D) + 3.0  # no exact zeros in the input
    out = drop(x)
    zeroed = (out == 0).flatten(1).all(dim=1)
    scaled = torch.isclose(out, x / (1 - p), rtol=1e-5, atol=1e-5).flatten(1).all(dim=1)
    assert bool((zeroed | scaled).all())  # every sample is either dropped entirely or kept and rescaled
    assert int(zeroed.sum()) > 48  # p close to 1: most samples dropped


def test_drop_path_is_unbiased() -> None:
    drop = DropPath(0.3).train()
    x = torch.ones(20000, 1)
    assert abs(float(drop(x).mean()) - 1.0) < 0.05


def test_drop_path_one_zeros_everything() -> None:
    out = DropPath(1.0).train()(torch.randn(4, 3))
    assert torch.equal(out, torch.zeros(4, 3))


@pytest.mark.parametrize(("kind", "cls"), [("gelu", GeluMlp), ("swiglu", SwiGluMlp)])
def test_mlp_kinds(kind: str, cls: type[nn.Module]) -> None:
    mlp = build_mlp(kind, D, 4 * D)  # type: ignore[arg-type]
    assert isinstance(mlp, cls)
    x = torch.randn(B, N, D)
    out = mlp(x)
    assert out.shape == (B, N, D) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in mlp.parameters())


def test_swiglu_keeps_parameter_count_close() -> None:
    gelu = sum(p.numel() for p in GeluMlp(D * 4, D * 16).parameters())
    swiglu = sum(p.numel() for p in SwiGluMlp(D * 4, D * 16).parameters())
    assert abs(swiglu - gelu) / gelu < 0.05


@pytest.mark.parametrize(("kind", "cls"), [("layernorm", nn.LayerNorm), ("rmsnorm", nn.RMSNorm)])
def test_norm_kinds(kind: str, cls: type[nn.Module]) -> None:
    norm = build_norm(kind, D)  # type: ignore[arg-type]
    assert isinstance(norm, cls)
    out = norm(torch.randn(B, N, D) * 5 + 2)
    if kind == "layernorm":
        torch.testing.assert_close(out.mean(-1), torch.zeros(B, N), atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(B, N), atol=1e-3, rtol=0)


def test_batchnorm_normalizes_features_over_batch_and_tokens() -> None:
    norm = build_norm("batchnorm", D, eps=1e-5)
    assert isinstance(norm, BatchNorm) and norm.batchnorm.eps == 1e-5
    x = torch.randn(B, N, D) * 3 + 1
    reference = nn.BatchNorm1d(D, eps=1e-5)
    reference.load_state_dict(norm.batchnorm.state_dict())
    out = norm.train()(x)  # (B, N, D)
    torch.testing.assert_close(out, reference.train()(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(out.mean(dim=(0, 1)), torch.zeros(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.batchnorm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.batchnorm.running_var, reference.running_var)
    torch.testing.assert_close(norm.eval()(x), reference.eval()(x.transpose(1, 2)).transpose(1, 2))
    grad = torch.randn(B, N, D)  # the same gradients through the (B·N, D) rows as through (B, D, N)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    (norm.train()(a) * grad).sum().backward()
    (reference.train()(b.transpose(1, 2)).transpose(1, 2) * grad).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(norm.batchnorm.weight.grad, reference.weight.grad)


def test_mlp_hidden_dropout_is_separate() -> None:
    mlp = build_mlp("gelu", D, 2 * D, dropout=0.1, hidden_dropout=0.3)
    assert mlp.dropout.p == 0.1 and mlp.hidden_dropout.p == 0.3
    assert build_mlp("swiglu", D, 2 * D, dropout=0.2).hidden_dropout.p == 0.2  # None follows `dropout`
    block = Transformer(TransformerConfig(dim=D, depth=1, heads=2, dropout=0.1, mlp_dropout=0.0)).blocks[0]
    assert block.mlp.dropout.p == 0.1 and block.mlp.hidden_dropout.p == 0.0
    with pytest.raises(ValueError, match="mlp_dropout"):
        TransformerConfig(mlp_dropout=1.5)


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm"])
def test_post_norm_block_normalizes_the_residual_sum(norm: str) -> None:
    block = Block(TransformerConfig(dim=D, heads=2, norm=norm, norm_position="post")).eval()  # type: ignore[arg-type]
    for module in block.modules():
        if isinstance(module, nn.BatchNorm1d):  # running statistics away from the identity
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(B, N, D)
    mask = PreparedMask("sdpa")
    h = block.norm1(x + block.attn(x, mask))
    expected = block.norm2(h + block.mlp(h))
    torch.testing.assert_close(block(x, mask), expected)
    pre = Block(TransformerConfig(dim=D, heads=2, norm=norm)).eval()  # type: ignore[arg-type]
    pre.load_state_dict(block.state_dict())  # same weights, other placement
    assert not torch.allclose(pre(x, mask), expected, atol=1e-4)
    with pytest.raises(ValueError, match="norm_position"):
        TransformerConfig(dim=D, heads=2, norm_position="middle")  # type: ignore[arg-type]


def test_post_norm_cross_attention_block() -> None:
    block = Block(TransformerConfig(dim=D, heads=2, cross_attention=True, norm_position="post")).eval()
    x, memory = torch.randn(B, N, D), torch.randn(B, M, D)
    mask = PreparedMask("sdpa")
    h = block.norm1(x + block.attn(x, mask))
    h = block.cross_norm(h + block.cross_attn(h, mask, memory=memory))
    torch.testing.assert_close(block(x, mask, memory=memory), block.norm2(h + block.mlp(h)))


def test_final_norm_option_and_defaults() -> None:
    default = TransformerConfig()
    assert default.norm_position == "pre" and default.final_norm is True and default.mlp_dropout is None
    model = Transformer(TransformerConfig(dim=D, depth=2, heads=2, final_norm=False)).eval()
    assert isinstance(model.norm, nn.Identity) and not any(k.startswith("norm.") for k in model.state_dict())
    x = torch.randn(B, N, D)
    mask = PreparedMask("sdpa")
    torch.testing.assert_close(model(x), model.blocks[1](model.blocks[0](x, mask), mask))
    with pytest.raises(ValueError, match="norm_position"):
        TransformerConfig(norm_position="middle")  # type: ignore[arg-type]


def test_unknown_kinds_raise() -> None:
    with pytest.raises(ValueError, match="unknown norm"):
        build_norm("groupnorm", D)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mlp"):
        build_mlp("relu", D, D)  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_transformer_options_build_and_run(norm: str, mlp: str) -> None:
    config = TransformerConfig(dim=D, depth=2, heads=2, norm=norm, mlp=mlp, qk_norm=True, drop_path=0.2)  # type: ignore[arg-type]
    model = Transformer(config)
    norm_cls = nn.LayerNorm if norm == "layernorm" else nn.RMSNorm
    mlp_cls = GeluMlp if mlp == "gelu" else SwiGluMlp
    assert isinstance(model.norm, norm_cls) and isinstance(model.blocks[0].norm1, norm_cls)
    assert isinstance(model.blocks[1].mlp, mlp_cls)
    assert model.blocks[0].drop_path.p == 0.0 and model.blocks[-1].drop_path.p == pytest.approx(0.2)
    x = torch.randn(B, N, D, requires_grad=True)
    out = model.train()(x)
    assert out.shape == (B, N, D) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_block_without_cross_attention_ignores_memory_args() -> None:
    block = Block(TransformerConfig(dim=D, heads=2)).eval()
    x = torch.randn(B, N, D)
    out = block(x, PreparedMask("sdpa"))
    assert out.shape == (B, N, D)


def test_cross_attention_block_requires_memory() -> None:
    block = Block(TransformerConfig(dim=D, heads=2, cross_attention=True))
    with pytest.raises(ValueError, match="memory"):
        block(torch.randn(B, N, D), PreparedMask("sdpa"))


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_cross_attention_uses_memory_and_respects_its_padding(backend: str) -> None:
    model = Transformer(TransformerConfig(dim=D, depth=2, heads=2, cross_attention=True, attention=backend)).eval()  # type: ignore[arg-type]
    x, memory = torch.randn(B, N, D), torch.randn(B, M, D)
    real = torch.ones(B, M, dtype=torch.bool)
    real[0, -2:] = False
    real[1, :1] = False
    changed = torch.where(real.unsqueeze(-1), memory, 50 * torch.randn(B, M, D))
    with torch.no_grad():
        out = model(x, memory=memory, memory_padding=real)
        out_changed = model(x, memory=changed, memory_padding=real)
        out_other = model(x, memory=torch.randn(B, M, D), memory_padding=real)
        out_unmasked = model(x, memory=changed)
    assert out.shape == (B, N, D)
    torch.testing.assert_close(out_changed, out, atol=1e-6, rtol=0)
    assert not torch.allclose(out_other, out, atol=1e-3)  # the memory matters
    assert not torch.allclose(out_unmasked[:2], out[:2], atol=1e-3)  # without the padding mask it would leak


def test_cross_attention_backends_agree() -> None:
    source = Transformer(TransformerConfig(dim=D, depth=1, heads=2, cross_attention=True, attention="reference"))
    twin = Transformer(TransformerConfig(dim=D, depth=1, heads=2, cross_attention=True, attention="sdpa"))
    twin.load_state_dict(source.state_dict())
    x, memory = torch.randn(B, N, D), torch.randn(B, M, D)
    real = torch.ones(B, M, dtype=torch.bool)
    real[2, 1:] = False
    torch.testing.assert_close(
        twin(x, memory=memory, memory_padding=real), source(x, memory=memory, memory_padding=real), atol=1e-5, rtol=1e-5
    )
