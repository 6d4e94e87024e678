"""Pretraining objectives (MAE, BERT-style, causal) on a tiny PatchTST model: predictions, named loss terms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.contracts.masking import Mask, mask_from_noise
from mmsdk.layers.transformer_config import TransformerConfig
from mmsdk.models import build_model
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives import CausalModel, MaskedAutoencoder, MaskedTokenModel, Objective

B, C, L, P = 3, 2, 32, 8
TINY_ADAPTER: dict[str, Any] = {"context_length": L, "num_channels": C, "patch_len": P, "stride": P}
N_END = L // P + 1  # padding_patch="end" adds one patch
N_NONE = L // P


def _model(objective: str, **adapter: Any) -> Objective:
    config = ModelConfig(
        adapter="patchtst",
        adapter_config={**TINY_ADAPTER, **adapter},
        encoder=TransformerConfig(dim=16, depth=2, heads=2),
        objective=objective,  # type: ignore[arg-type]
    )
    return build_model(config)


def _hide(patches: list[int], n: int) -> Mask:
    """A deterministic mask over B·C sequences of n tokens that hides exactly `patches`."""
    noise = torch.zeros(B * C, n)
    noise[:, patches] = 1.0
    return mask_from_noise(noise, n - len(patches))


@pytest.mark.parametrize(
    ("objective", "cls"), [("mae", MaskedAutoencoder), ("bert", MaskedTokenModel), ("causal", CausalModel)]
)
def test_forward_shapes_named_loss_terms_and_backward(objective: str, cls: type[Objective]) -> None:
    model = _model(objective)
    assert isinstance(model, cls)
    x = model.adapter.example_input(B, torch.Generator().manual_seed(0))
    batch = model.tokenize(x)
    mask = random_mask(B * C, N_END, 0.4, generator=torch.Generator().manual_seed(1))
    out = model(batch, mask)
    assert list(out.preds) == ["patchtst"] and out.pred.shape == (B * C, N_END, P)
    terms = model.loss(batch, out, mask)
    assert list(terms) == ["mse"]  # the adapter's own term name
    loss = terms["mse"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    encoder_grads = [p.grad for p in model.backbone.encoder.parameters()]
    assert all(g is not None for g in encoder_grads)
    assert any(float(g.abs().sum()) > 0 for g in encoder_grads)  # type: ignore[union-attr]
    embedding = model.backbone.adapter.value_embedding.weight.grad
    assert embedding is not None and float(embedding.abs().sum()) > 0


@pytest.mark.parametrize("objective", ["mae", "bert", "causal"])
def test_step_draws_the_mask_and_sums_the_terms(objective: str) -> None:
    from mmsdk.contracts.mask_strategies import MaskingConfig

    model = _model(objective)
    x = model.adapter.example_input(B, torch.Generator().manual_seed(0))
    out = model.step(x, MaskingConfig(ratio=0.5), torch.Generator().manual_seed(2))
    again = model.step(x, MaskingConfig(ratio=0.5), torch.Generator().manual_seed(2))
    assert (out.mask is None) == (objective == "causal")
    if out.mask is not None:
        assert torch.equal(out.mask.hidden, again.mask.hidden)  # a pure function of the generator's seed
        assert torch.equal(out.mask.target, out.mask.hidden)
    torch.testing.assert_close(out.loss, sum(out.terms.values()))


def test_loss_scores_only_target_tokens() -> None:
    """A mask may hide tokens without predicting them (inputs and targets disjoint, not complementary)."""
    model = _model("bert").eval()
    batch = model.tokenize(model.adapter.example_input(B))
    hidden = torch.zeros(B * C, N_END, dtype=torch.bool)
    hidden[:, [1, 3]] = True
    target = torch.zeros_like(hidden)
    target[:, 1] = True  # token 3 is hidden but not scored
    mask = Mask.from_hidden(hidden, target)
    with torch.no_grad():
        prediction = model(batch, mask)
        loss = model.loss(batch, prediction, mask)["mse"]
        wrong = prediction.pred.clone()
        wrong[:, 3] += 100.0  # a terrible prediction of the unscored token changes nothing
        assert float(model.loss(batch, type(prediction)({"patchtst": wrong}), mask)["mse"]) == pytest.approx(
            float(loss)
        )


def test_mae_encoder_sees_only_visible_tokens() -> None:
    model = _model("mae")
    seen: list[tuple[int, ...]] = []

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        seen.append(tuple(args[0].shape))

    handle = model.backbone.encoder.register_forward_hook(hook)
    try:
        batch = model.tokenize(model.adapter.example_input(B))
        mask = random_mask(B * C, N_END, 0.6)
        out = model(batch, mask)
    finally:
        handle.remove()
    assert mask.num_keep == 2
    assert seen == [(B * C, mask.num_keep, 16)]
    assert out.pred.shape == (B * C, N_END, P)  # the decoder fills every position back in


def test_mae_default_decoder_is_narrower() -> None:
    model = _model("mae")
    assert isinstance(model, MaskedAutoencoder)
    assert model.config.decoder is not None and model.config.decoder.dim == 8
    assert model.decoder.config.dim == 8


@pytest.mark.parametrize("objective", ["bert", "mae"])
def test_hidden_patch_content_does_not_reach_predictions(objective: str) -> None:
    """The hidden token's content is replaced (BERT) or dropped (MAE), so perturbing raw values inside a hidden
    patch changes nothing; RevIN is off because its statistics would carry the change into every token."""
    model = _model(objective, revin=False, padding_patch="none").eval()
    x = model.adapter.example_input(B)
    mask = _hide([1, 3], N_NONE)
    hidden_patch = x.clone()
    hidden_patch[:, P : 2 * P] += 5 * torch.randn(B, P, C)  # patch 1 of every channel
    visible_patch = x.clone()
    visible_patch[:, 2 * P : 3 * P] += 5 * torch.randn(B, P, C)  # patch 2 (visible)
    with torch.no_grad():
        pred = model(model.tokenize(x), mask).pred
        pred_hidden = model(model.tokenize(hidden_patch), mask).pred
        pred_visible = model(model.tokenize(visible_patch), mask).pred
    torch.testing.assert_close(pred_hidden, pred, atol=1e-6, rtol=0)
    assert not torch.allclose(pred_visible, pred, atol=1e-4)


def test_bert_hidden_tokens_equal_mask_token_in_encoder_input() -> None:
    model = _model("bert", revin=False)
    assert isinstance(model, MaskedTokenModel)
    inputs: list[Tensor] = []
    handle = model.backbone.encoder.register_forward_hook(lambda m, a, o: inputs.append(a[0]))
    try:
        batch = model.tokenize(model.adapter.example_input(B))
        mask = random_mask(B * C, N_END, 0.4)
        model(batch, mask)
    finally:
        handle.remove()
    encoder_input = inputs[0]  # tokens + positions
    positions = model.backbone.positions["patchtst"](batch.positions)
    content = encoder_input - positions
    hidden = mask.hidden
    token = model.mask_tokens["patchtst"].detach()
    torch.testing.assert_close(content[hidden], token.expand(int(hidden.sum()), 16))
    torch.testing.assert_close(content[~hidden], batch.tokens[~hidden])


@pytest.mark.parametrize("t", [0, 2])
def test_causal_prediction_ignores_later_patches(t: int) -> None:
    model = _model("causal", revin=False, padding_patch="none").eval()
    x = model.adapter.example_input(B)
    later = x.clone()
    later[:, (t + 1) * P :] += 3 * torch.randn(B, L - (t + 1) * P, C)
    with torch.no_grad():
        pred = model(model.tokenize(x)).pred
        pred_later = model(model.tokenize(later)).pred
    torch.testing.assert_close(pred_later[:, : t + 1], pred[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(pred_later[:, t + 1 :], pred[:, t + 1 :], atol=1e-4)


def test_causal_loss_compares_with_the_next_token() -> None:
    model = _model("causal")
    batch = model.tokenize(model.adapter.example_input(B))
    assert batch.targets is not None
    perfect = torch.zeros_like(batch.targets)
    perfect[:, :-1] = batch.targets[:, 1:]  # prediction at t is the target of t + 1
    assert float(model.adapter.next_token_loss(perfect, batch)["mse"]) < 1e-10
    assert float(model.adapter.next_token_loss(batch.targets, batch)["mse"]) > 1e-3


def test_embed_has_no_grad_and_right_shape() -> None:
    model = _model("bert")
    features = model.embed(model.adapter.example_input(B))
    assert features.shape == (B * C, N_END, 16) and not features.requires_grad


def test_eval_forward_is_deterministic() -> None:
    for objective in ("mae", "bert", "causal"):
        model = _model(objective).eval()
        batch = model.tokenize(model.adapter.example_input(B))
        mask = random_mask(B * C, N_END, 0.4)
        with torch.no_grad():
            torch.testing.assert_close(model(batch, mask).pred, model(batch, mask).pred, atol=0, rtol=0)
