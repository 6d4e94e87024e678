"""Packed Moirai pretraining: packed inputs through the data module, tokenize-packs, per-sample tail masks that
hide each sample's tail without leaks across samples or through statistics, and a loss that goes down."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from mmsdk.adapters.timeseries.moirai import MoiraiAdapter
from mmsdk.adapters.timeseries.packing import PackCollate, PackedInputs, SeriesWindows
from mmsdk.contracts.mask_strategies import MaskingConfig, apply_strategy
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models import build_model
from mmsdk.models.config import ModelConfig
from mmsdk.training.data import DataModule, batch_size_of, split_batch

P = 4
ENCODER = {"dim": 16, "depth": 2, "heads": 2, "rope": "1d", "variate_bias": True, "attention": "reference"}


def _config() -> ModelConfig:
    adapter = {"context_length": 8 * P, "patch_sizes": [P], "patch_size": P, "max_variates": 4}
    return ModelConfig.from_dict({"adapter": "moirai", "adapter_config": adapter, "encoder": ENCODER})


def _series(length: int, variates: int, seed: int) -> torch.Tensor:
    """(length, variates): sines with random periods and offsets plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32).view(-1, 1)
    period = 6 + 10 * torch.rand(1, variates, generator=g)
    phase = 6.28 * torch.rand(1, variates, generator=g)
    offset = 3 * torch.randn(1, variates, generator=g)
    return offset + torch.sin(2 * math.pi * t / period + phase) + 0.05 * torch.randn(length, variates, generator=g)


def _mixed() -> list[torch.Tensor]:
    """Series of 3, 8, 5, 2 and 6 patches with 2, 1, 3, 4 and 1 variates (6, 8, 15, 8, 6 tokens)."""
    shapes = [(3, 2), (8, 1), (5, 3), (2, 4), (6, 1)]
    return [_series(n * P, c, seed=k) for k, (n, c) in enumerate(shapes)]


def test_series_windows_collate_into_packed_inputs_through_the_data_module() -> None:
    series = [_series(40 * P, 1, 0).numpy(), _series(12 * P, 3, 1).numpy(), _series(P, 1, 2).numpy()]
    windows = SeriesWindows(series, patch_size=P, max_tokens=16, max_length=8 * P, seed=3)
    again = SeriesWindows(series, patch_size=P, max_tokens=16, max_length=8 * P, seed=3)
    assert windows.index == again.index  # seeded
    lengths = {tuple(windows[i].shape) for i in range(len(windows))}
    assert all(length % P == 0 and 2 * P <= length <= 8 * P for length, _ in lengths)
    assert all(c * length // P <= 16 for length, c in lengths)  # every window fits a row
    assert {c for _, c in lengths} == {1, 3} and len({length for length, _ in lengths}) > 2  # the 1-patch one skipped
    loader = DataModule(windows, batch_size=5).train_dataloader()
    batch = next(iter(loader))
    assert isinstance(batch, PackedInputs) and batch.max_tokens == 16
    inputs, targets = split_batch(batch)
    assert inputs is batch and targets is None
    assert batch_size_of(batch) == 5 and batch.device == torch.device("cpu")
    moved = batch.to(torch.float64)
    assert all(s.dtype == torch.float64 for s in moved.series) and moved.batch_size == 5
    with pytest.raises(ValueError, match="no series yields a window"):
        SeriesWindows(series, patch_size=P, max_tokens=1, max_length=8 * P)


def test_tokenize_of_packed_inputs_equals_unpacked_tokenization() -> None:
    model = build_model(_config()).eval()
    adapter: MoiraiAdapter = model.adapter
    series = _mixed()
    series[2][3:9, 1] = float("nan")
    packed = PackCollate(max_tokens=16)(series)
    batch = model.tokenize(packed)
    reference = adapter.pack(series, 16)
    torch.testing.assert_close(batch.tokens, reference.batch.tokens)
    assert torch.equal(batch.sample_ids, reference.batch.sample_ids)
    with torch.no_grad():
        features = model.backbone(batch)
        for s, span in zip(series, reference.spans):
            alone = adapter.tokenize(s.unsqueeze(0))
            torch.testing.assert_close(batch.targets[span.row, span.start : span.stop], alone.targets[0])
            assert torch.equal(batch.time_ids[span.row, span.start : span.stop], alone.time_ids[0])
            torch.testing.assert_close(
                features[span.row, span.start : span.stop], model.backbone(alone)[0], atol=1e-5, rtol=1e-5
            )
    # statistics tokens: the first floor(N_i / 2) patches of every variate of every sample
    stat = batch.context["stat_tokens"]
    for s, span in zip(series, reference.spans):
        n = s.shape[0] // P
        expected = (torch.arange(n) < max(1, n // 2)).repeat(s.shape[1])
        assert torch.equal(stat[span.row, span.start : span.stop], expected)
    assert not stat[~batch.padding_mask].any()


def _packed_mask(
    model: torch.nn.Module, series: list[torch.Tensor], ratio: float, max_ratio: float | None = None, seed: int = 0
) -> tuple[TokenBatch, Mask]:
    """The packed token batch of `series` (rows of 16 tokens) and its per-sample tail mask."""
    batch = model.tokenize(PackedInputs(series, 16))
    masking = MaskingConfig(strategy="tail", ratio=ratio, ratio_max=max_ratio)
    mask = apply_strategy(masking, batch, torch.Generator().manual_seed(seed))
    return batch, mask


@pytest.mark.parametrize("ratio", [0.15, 0.3, 0.5])
def test_packed_tail_masks_hide_every_sample_tail_and_never_its_statistics(ratio: float) -> None:
    model = build_model(_config()).eval()
    series = _mixed()
    batch, mask = _packed_mask(model, series, ratio)
    spans = model.adapter.pack(series, 16).spans
    assert bool(mask.hidden[~batch.padding_mask].all())  # padding is always hidden
    for s, span in zip(series, spans):
        n = s.shape[0] // P
        time = batch.time_ids[span.row, span.start : span.stop]
        hidden = mask.hidden[span.row, span.start : span.stop]
        tail = time >= n - max(1, round(n * ratio))
        assert bool(hidden[tail].all()), (span, hidden, tail)  # the tail of every variate of every sample
    # what the loss counts is never inside a statistics region (extra hidden tokens of a row included)
    counted = mask.hidden & batch.padding_mask & ~batch.context["stat_tokens"]
    assert counted.any() and not (counted & batch.context["stat_tokens"]).any()


def test_packed_tail_ratio_is_drawn_per_batch_from_the_range() -> None:
    model = build_model(_config()).eval()
    series = _mixed()
    spans = model.adapter.pack(series, 16).spans
    totals = set()
    for seed in range(8):
        batch, mask = _packed_mask(model, series, 0.15, 0.5, seed=seed)
        totals.add(int((mask.hidden & batch.padding_mask).sum()))
        for s, span in zip(series, spans):
            n = s.shape[0] // P
            time = batch.time_ids[span.row, span.start : span.stop]
            assert bool(mask.hidden[span.row, span.start : span.stop][time >= n - max(1, round(n * 0.15))].all())
    assert len(totals) > 1  # different batches hide different shares


def test_packed_predictions_ignore_loss_targets_and_other_samples() -> None:
    """Leak-free: changing the values of every token the loss is about, or a whole other sample, changes no
    prediction the loss reads (hidden tokens are mask tokens, statistics come from the first patches, attention
    is block-diagonal)."""
    torch.manual_seed(0)
    model = build_model(_config()).eval()
    series = _mixed()
    batch, mask = _packed_mask(model, series, 0.5)
    spans = model.adapter.pack(series, 16).spans
    counted = mask.hidden & batch.padding_mask & ~batch.context["stat_tokens"]
    changed = [s.clone() for s in series]
    for s, span in zip(changed, spans):
        n, c = s.shape[0] // P, s.shape[1]
        targets = counted[span.row, span.start : span.stop].view(c, n)  # (C, N) patch grid of this sample
        steps = targets.repeat_interleave(P, dim=1).T  # (L, C)
        s[steps] = 50 * s[steps] + 7
    with torch.no_grad():
        first = model(batch, mask).pred
        second = model(model.tokenize(PackedInputs(changed, 16)), mask).pred
    real = batch.padding_mask
    torch.testing.assert_close(first[real], second[real], atol=1e-5, rtol=1e-5)
    # another sample in the same row changes completely: the first sample's predictions do not move
    row0 = [i for i, span in enumerate(spans) if span.row == spans[0].row]
    assert len(row0) >= 2
    other = [s.clone() for s in series]
    other[row0[1]] = 100 * torch.randn_like(other[row0[1]])
    with torch.no_grad():
        third = model(model.tokenize(PackedInputs(other, 16)), mask).pred
    span = spans[0]
    torch.testing.assert_close(first[span.row, span.start : span.stop], third[span.row, span.start : span.stop])


def test_packed_pretraining_lowers_the_loss(tmp_path) -> None:
    import lightning as L

    import mmsdk
    from mmsdk.training.systems import PretrainSystem

    logging.getLogger("lightning").setLevel(logging.ERROR)
    shapes = [(k % 5 + 3, k % 3 + 1) for k in range(48)]  # 12..28 patches long, 1..3 variates
    series = [_series(4 * n * P, c, seed=100 + k).numpy() for k, (n, c) in enumerate(shapes)]
    windows = SeriesWindows(series, patch_size=P, max_tokens=32, max_length=8 * P, seed=0)
    masking = {"strategy": "tail", "ratio": 0.15, "ratio_max": 0.5}
    probe = PackCollate(32)([windows[i] for i in range(0, len(windows), max(1, len(windows) // 24))])

    def loss_of(system: PretrainSystem) -> float:
        system.eval()
        with torch.no_grad():
            return float(system.compute_loss(probe, torch.Generator().manual_seed(1)))

    L.seed_everything(0, verbose=False)
    before = loss_of(PretrainSystem(_config(), masking))
    trainer = {"max_steps": 80, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    result = mmsdk.pretrain(_config(), windows, masking=masking, optim={"lr": 3e-3}, trainer=trainer, batch_size=16)
    after = loss_of(result.system)
    assert math.isfinite(before) and after < before - 0.3, (before, after)
