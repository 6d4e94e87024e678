"""Finite scalar quantization and the FSQ patch tokenizer: the code grid, exact id round trips, the straight-through
gradient, training to a small reconstruction error, masked losses, torch.compile and ONNX export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from mmsdk.layers.fsq import FiniteScalarQuantizer, PatchTokenizer

LEVELS = ([8, 5, 5, 5], [3, 4], [2, 2, 3])
P = 16


def grid(level: int) -> Tensor:
    """The documented code grid of one dimension: (k - L // 2) / (L // 2), k = 0 … L - 1."""
    half_width = level // 2
    return (torch.arange(level, dtype=torch.float32) - half_width) / half_width


def smooth_patches(n: int, seed: int) -> Tensor:
    """(n, P) rows, each a sum of 3 sinusoids with random frequency (0.5–3 cycles), phase and amplitude, unit scale."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(P) / P
    freq = torch.rand(n, 3, 1, generator=g) * 2.5 + 0.5
    phase = torch.rand(n, 3, 1, generator=g) * 2 * math.pi
    amp = torch.randn(n, 3, 1, generator=g)
    return (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(1) / math.sqrt(1.5)  # (n, P), E[x²] = 1


# ------------------------------------------------------------------------------------------------------ quantizer


@pytest.mark.parametrize("levels", LEVELS)
def test_every_id_round_trips_and_codes_lie_on_the_grid(levels: list[int]) -> None:
    fsq = FiniteScalarQuantizer(levels)
    assert fsq.codebook_size == math.prod(levels) and fsq.dim == len(levels)
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.ids_to_codes(ids)  # (K, d)
    assert codes.shape == (fsq.codebook_size, len(levels))
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    assert bool((codes.abs() <= 1).all())
    for i, level in enumerate(levels):
        assert torch.equal(codes[:, i].unique(), grid(level))  # every grid value is used, nothing else
    assert torch.unique(codes, dim=0).shape[0] == fsq.codebook_size  # distinct ids ↔ distinct codes


@pytest.mark.parametrize("levels", LEVELS)
def test_quantized_latents_lie_on_the_grid_and_requantizing_codes_keeps_their_ids(levels: list[int]) -> None:
    fsq = FiniteScalarQuantizer(levels)
    z = torch.randn(4, 500, len(levels)) * 3  # wide enough to reach the ends of every grid
    codes = fsq(z)
    ids = fsq.quantize_ids(z)
    assert codes.shape == z.shape and ids.shape == (4, 500) and ids.dtype == torch.long
    assert bool(((ids >= 0) & (ids < fsq.codebook_size)).all())
    for i, level in enumerate(levels):
        assert torch.equal(codes[..., i].unique(), grid(level))
    assert torch.equal(fsq.ids_to_codes(ids), codes)  # forward's codes are exactly the grid values of their ids
    # snapping a code to the grid is idempotent, also through small float error
    again = fsq.ids_to_codes(fsq.codes_to_ids(codes))
    assert torch.equal(again, codes) and torch.equal(fsq.codes_to_ids(again), ids)
    jitter = (torch.rand_like(codes) - 0.5) * 0.4 / torch.tensor([level // 2 for level in levels])
    assert torch.equal(fsq.codes_to_ids(codes + jitter), ids)


def test_the_straight_through_gradient_is_that_of_the_bound() -> None:
    levels = [8, 5, 3, 2]
    fsq = FiniteScalarQuantizer(levels)
    z = torch.randn(64, len(levels), requires_grad=True)
    codes = fsq(z)
    level = torch.tensor(levels, dtype=torch.float32)
    half = (level - 1) * (1 + 1e-3) / 2
    offset = (level % 2 == 0).float() / 2
    shift = torch.atanh(offset / half)
    bounded = torch.tanh(z.detach() + shift) * half - offset
    assert torch.equal(codes.detach(), torch.round(bounded) / torch.floor(level / 2))  # the value: exactly rounded
    codes.sum().backward()
    expected = (1 - torch.tanh(z.detach() + shift).square()) * half / torch.floor(level / 2)
    assert bool((z.grad != 0).all())
    torch.testing.assert_close(z.grad, expected)


def test_two_levels_use_both_codes() -> None:
    """The 1e-3 widening keeps atanh(offset / half) finite for L = 2 (atanh(1) = inf would pin the code)."""
    fsq = FiniteScalarQuantizer([2])
    codes = fsq(torch.linspace(-4, 4, 101).unsqueeze(-1))
    assert torch.equal(codes.unique(), torch.tensor([-1.0, 0.0]))


def test_low_precision_inputs_keep_their_dtype() -> None:
    fsq = FiniteScalarQuantizer([8, 5, 5, 5])
    z = torch.randn(32, 4)
    codes = fsq(z.bfloat16())
    assert codes.dtype == torch.bfloat16
    assert torch.equal(fsq.codes_to_ids(codes), fsq.quantize_ids(z.bfloat16()))


@pytest.mark.parametrize("levels", [[1, 4], [], [5, 0]])
def test_bad_levels_are_rejected(levels: list[int]) -> None:
    with pytest.raises(ValueError, match="levels"):
        FiniteScalarQuantizer(levels)
    with pytest.raises(ValueError, match="levels"):
        PatchTokenizer(P, levels)


def test_buffers_are_not_persistent_and_the_shape_is_checked() -> None:
    fsq = FiniteScalarQuantizer([8, 5, 5, 5])
    assert dict(fsq.named_buffers()).keys() == {"levels", "basis"} and fsq.state_dict() == {}
    assert fsq.basis.tolist() == [1, 8, 40, 200]
    with pytest.raises(ValueError, match="4 code dimensions"):
        fsq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="depth"):
        PatchTokenizer(P, [8, 5], depth=0)


def test_compiles_with_fullgraph() -> None:
    import torch._dynamo

    torch._dynamo.reset()
    fsq = FiniteScalarQuantizer([8, 5, 5, 5])
    z = torch.randn(2, 7, 4)
    compiled = torch.compile(fsq.quantize_ids, fullgraph=True, backend="eager")  # graph capture, no codegen
    assert torch.equal(compiled(z), fsq.quantize_ids(z))
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------------------ tokenizer


@pytest.fixture(scope="module")
def trained() -> tuple[PatchTokenizer, list[float]]:
    torch.manual_seed(0)
    tokenizer = PatchTokenizer(P, [8, 8, 8, 5, 5, 5])
    losses = tokenizer.fit(smooth_patches(4000, seed=0), generator=torch.Generator().manual_seed(0))
    return tokenizer, losses


def test_fit_reaches_a_small_held_out_error(trained: tuple[PatchTokenizer, list[float]]) -> None:
    tokenizer, losses = trained
    assert not tokenizer.training and len(losses) == 500 and all(math.isfinite(v) for v in losses)
    held_out = smooth_patches(2000, seed=1)
    variance = float(held_out.var())
    torch.manual_seed(0)
    untrained = PatchTokenizer(P, [8, 8, 8, 5, 5, 5]).eval()
    with torch.no_grad():
        mse, baseline = float(tokenizer.loss(held_out)), float(untrained.loss(held_out))
    assert mse < 0.15 * variance, (mse, variance)  # ~0.10 of the variance
    assert mse < 0.2 * baseline, (mse, baseline)
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:5])


def test_encode_then_decode_matches_forward(trained: tuple[PatchTokenizer, list[float]]) -> None:
    tokenizer, _ = trained
    x = smooth_patches(60, seed=2).reshape(3, 20, P)  # (B, N, P): any leading dims
    with torch.no_grad():
        reconstruction, ids = tokenizer(x)
        encoded = tokenizer.encode(x)
        decoded = tokenizer.decode(encoded)
    assert ids.shape == (3, 20) and reconstruction.shape == x.shape
    assert torch.equal(encoded, ids)
    assert bool(((ids >= 0) & (ids < tokenizer.codebook_size)).all()) and tokenizer.codebook_size == 64000
    torch.testing.assert_close(decoded, reconstruction, atol=1e-6, rtol=0)


def test_masked_loss() -> None:
    tokenizer = PatchTokenizer(P, [4, 4], hidden=16)
    x = torch.randn(2, 5, P)
    nothing = tokenizer.loss(x, torch.zeros(2, 5, dtype=torch.bool))
    assert nothing.detach().item() == 0.0 and nothing.requires_grad
    nothing.backward()  # a gradient (of zeros), not NaN
    assert all(torch.isfinite(p.grad).all() for p in tokenizer.parameters())
    mask = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    reconstruction, _ = tokenizer(x)
    expected = torch.nn.functional.mse_loss(reconstruction[mask], x[mask])
    torch.testing.assert_close(tokenizer.loss(x, mask), expected)
    torch.testing.assert_close(tokenizer.loss(x), torch.nn.functional.mse_loss(reconstruction, x))


class _Encode(nn.Module):
    def __init__(self, tokenizer: PatchTokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, x: Tensor) -> Tensor:
        return self.tokenizer.encode(x)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*axis name.*:UserWarning")
def test_onnx_export_of_encode_matches_eager(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Encode(PatchTokenizer(P, [8, 5, 5, 5], hidden=32)).eval()
    program = torch.onnx.export(
        model,
        (torch.randn(2, P) * 2,),
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        input_names=["patches"],
        output_names=["ids"],
        verbose=False,
    )
    path = tmp_path / "fsq_encode.onnx"
    program.save(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = torch.randn(300, P) * 2
    (got,) = session.run(None, {"patches": x.numpy()})
    with torch.no_grad():
        want = model(x)
    assert got.dtype == np.int64 and got.shape == (300,)
    np.testing.assert_array_equal(got, want.numpy())
    assert len(np.unique(got)) > 50
