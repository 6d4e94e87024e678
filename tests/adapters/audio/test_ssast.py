"""SSAST's joint loss against a per-clip reference, cluster masking, AudioMAE's defaults, pretraining that learns,
and the reconstruction picture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmsdk.adapters.audio.audiomae import AudioMAEAdapter
from mmsdk.adapters.audio.masking import cluster_strategy
from mmsdk.adapters.audio.ssast import SSASTAdapter, info_nce
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models.config import ModelConfig
from mmsdk.models.objectives import MaskedTokenModel

SMALL = {"fbank": {"num_mel_bins": 32}, "patch_freq": 8, "patch_time": 8, "max_frames": 64}


def _reference_info_nce(pred: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """SSAST's formulation clip by clip: masked predictions against the clip's masked patches, diagonal = own."""
    losses = []
    for b in range(pred.shape[0]):
        p, t = pred[b][scored[b]], targets[b][scored[b]]  # (K, P)
        losses.append(-torch.diag(F.log_softmax(p @ t.T, dim=-1)))
    return torch.cat(losses).mean()


def test_info_nce_matches_the_per_clip_reference() -> None:
    g = torch.Generator().manual_seed(0)
    pred, targets = torch.randn(3, 10, 6, generator=g), torch.randn(3, 10, 6, generator=g)
    scored = torch.rand(3, 10, generator=g) < 0.5
    scored[:, 0] = True
    loss, accuracy = info_nce(pred, targets, scored)
    torch.testing.assert_close(loss, _reference_info_nce(pred, targets, scored))
    distinct = torch.eye(10).expand(3, 10, 10)  # orthogonal patches: each prediction matches only its own
    perfect, perfect_accuracy = info_nce(distinct * 50, distinct, scored)
    assert float(perfect) < 1e-3 and float(perfect_accuracy) == 1.0
    assert 0.0 <= float(accuracy) < 1.0


def test_joint_loss_is_infonce_plus_weighted_mse_on_masked_real_tokens() -> None:
    adapter = SSASTAdapter(SSASTAdapter.config_class.from_dict({**SMALL, "mse_weight": 10.0}), dim=16)
    batch = adapter.tokenize(adapter.example_input(2))
    p = adapter.target_dim
    pred = torch.randn(2, batch.num_tokens, 2 * p)
    target = torch.zeros(2, batch.num_tokens, dtype=torch.bool)
    target[:, ::2] = True
    terms = adapter.reconstruction_loss(pred, batch, target)
    assert set(terms) == {"infonce", "mse"}
    expected_mse = (pred[..., p:] - batch.targets)[target].square().mean()
    torch.testing.assert_close(terms["mse"], 10 * expected_mse)
    torch.testing.assert_close(terms["infonce"], _reference_info_nce(pred[..., :p], batch.targets, target))
    padded = batch.replace(padding_mask=torch.ones_like(target))
    padded.padding_mask[:, 2] = False  # a padding token is never scored, even when hidden
    scored = target & padded.padding_mask
    torch.testing.assert_close(
        adapter.reconstruction_loss(pred, padded, target)["infonce"],
        _reference_info_nce(pred[..., :p], batch.targets, scored),
    )


def _grid_batch(nf: int, nt: int, padded_steps: int = 0) -> TokenBatch:
    t, f = torch.meshgrid(torch.arange(nt), torch.arange(nf), indexing="ij")
    positions = torch.stack([f, t], dim=-1).reshape(1, -1, 2).float().expand(2, -1, -1)
    padding = (positions[..., 1] < nt - padded_steps) if padded_steps else None
    return TokenBatch(tokens=torch.zeros(2, nf * nt, 4), positions=positions, padding_mask=padding)


def test_cluster_masking_hides_the_ratio_in_contiguous_clusters_padding_first() -> None:
    batch = _grid_batch(8, 12, padded_steps=2)
    config = MaskingConfig(strategy="cluster", ratio=0.5, options={"cluster_min": 3, "cluster_max": 3})
    mask = cluster_strategy(batch, config, 0.5, torch.Generator().manual_seed(0))
    assert (mask.hidden.sum(1) == 48).all()
    assert mask.hidden[~batch.padding_mask].all()  # padding is hidden first
    hidden = mask.hidden[0].reshape(12, 8).float()
    neighbours = F.conv2d(hidden[None, None], torch.ones(1, 1, 3, 3), padding=1)[0, 0] - hidden
    random = torch.zeros(96)
    random[torch.randperm(96, generator=torch.Generator().manual_seed(0))[:48]] = 1
    random_neighbours = F.conv2d(random.reshape(1, 1, 12, 8), torch.ones(1, 1, 3, 3), padding=1)[0, 0] - random.reshape(
        12, 8
    )
    assert neighbours[hidden.bool()].mean() > random_neighbours[random.reshape(12, 8).bool()].mean() + 1.0
    again = cluster_strategy(batch, config, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again.hidden, mask.hidden)  # a pure function of the generator


def test_cluster_masking_needs_grid_positions() -> None:
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        cluster_strategy(TokenBatch(tokens=torch.zeros(1, 4, 2)), MaskingConfig(strategy="cluster"), 0.5, None)
    with pytest.raises(ValueError, match="cluster_min"):
        config = MaskingConfig(strategy="cluster", options={"cluster_min": 4, "cluster_max": 2})
        cluster_strategy(_grid_batch(4, 4), config, 0.5, None)


def test_audiomae_defaults_to_fixed_sincos_positions() -> None:
    adapter = AudioMAEAdapter(AudioMAEAdapter.config_class.from_dict(SMALL), dim=16)
    positions = adapter.build_positions(16)
    assert not list(positions.parameters())
    assert adapter.config.positions == "sincos"


def test_ssast_pretraining_reduces_both_loss_terms_and_draws_the_picture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig.from_dict(
        {
            "adapter": "ssast",
            "adapter_config": SMALL,
            "encoder": {"dim": 32, "depth": 2, "heads": 2},
            "objective": "bert",
        }
    )
    model = MaskedTokenModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    waves = model.adapter.example_input(8, torch.Generator().manual_seed(0))
    masking = MaskingConfig(strategy="cluster", ratio=0.5)
    first = last = None
    for step in range(40):
        out = model.step(waves, masking, torch.Generator().manual_seed(step % 4))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        terms = {k: float(v.detach()) for k, v in out.terms.items()}
        first = first or terms
        last = terms
    assert last["infonce"] < 0.7 * first["infonce"] and last["mse"] < 0.7 * first["mse"]
    path = model.adapter.plot_reconstruction(
        out.batch, out.prediction.pred.detach(), out.mask.target, tmp_path / "r.png"
    )
    assert path is not None and path.stat().st_size > 10_000


def test_frame_tokens_cover_every_mel_bin_and_pretrain_with_random_masking() -> None:
    config = ModelConfig.from_dict(
        {
            "adapter": "ssast",
            "adapter_config": {"fbank": {"num_mel_bins": 32}, "tokens": "frame", "max_frames": 64},
            "encoder": {"dim": 16, "depth": 1, "heads": 2},
            "objective": "bert",
        }
    )
    model = MaskedTokenModel(config)
    wave = model.adapter.example_input(2)
    batch = model.tokenize(wave)
    frames = batch.context["spectrogram"].shape[1]
    assert batch.num_tokens == frames // 2 and batch.targets.shape[-1] == 32 * 2
    assert (batch.positions[..., 0] == 0).all()  # one token per time step: frequency position 0
    out = model.step(wave, MaskingConfig(strategy="random", ratio=0.5), torch.Generator().manual_seed(0))
    assert set(out.terms) == {"infonce", "mse"} and torch.isfinite(out.loss)
