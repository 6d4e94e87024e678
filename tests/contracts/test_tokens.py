"""TokenBatch validation errors and consistent per-token gathering."""

from __future__ import annotations

import pytest
import torch

from mmsdk.contracts.tokens import TokenBatch, gather_tokens

B, N, D, P = 2, 5, 4, 3


def _full_batch() -> TokenBatch:
    """A batch with every per-token field set, each encoding the token index so gathers can be checked."""
    index = torch.arange(N).expand(B, N)  # (B, N)
    offset = torch.arange(B).view(B, 1) * 100
    ids = index + offset  # distinct per (b, n)
    return TokenBatch(
        tokens=ids.float().unsqueeze(-1).expand(B, N, D).clone(),
        positions=ids.unsqueeze(-1).expand(B, N, 2).clone(),
        padding_mask=index % 2 == 0,
        modality_ids=ids.clone(),
        variate_ids=ids + 1,
        sample_ids=ids + 2,
        time_ids=ids + 3,
        targets=ids.float().unsqueeze(-1).expand(B, N, P).clone() * 10,
        target_mask=(index % 3 == 0).unsqueeze(-1).expand(B, N, P).clone(),
        context={"loc": torch.zeros(B, 1)},
    )


def test_valid_batch_passes_and_chains() -> None:
    batch = _full_batch()
    assert batch.validate() is batch
    assert (batch.batch_size, batch.num_tokens, batch.dim) == (B, N, D)


@pytest.mark.parametrize("shape", [(B, N), (B, N, D, 1), (N,)])
def test_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        TokenBatch(torch.zeros(shape)).validate()


def test_non_float_tokens() -> None:
    with pytest.raises(ValueError, match="floating point"):
        TokenBatch(torch.zeros(B, N, D, dtype=torch.long)).validate()


@pytest.mark.parametrize("shape", [(0, N, D), (B, 0, D)])
def test_empty(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="empty"):
        TokenBatch(torch.zeros(shape)).validate()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_tokens(bad: float) -> None:
    tokens = torch.zeros(B, N, D)
    tokens[1, 3, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        TokenBatch(tokens).validate()


@pytest.mark.parametrize(
    "name",
    ["positions", "padding_mask", "modality_ids", "variate_ids", "sample_ids", "time_ids", "targets", "target_mask"],
)
def test_mismatched_per_token_field(name: str) -> None:
    batch = _full_batch()
    value = getattr(batch, name)
    bad = value[:, :-1]  # one token short
    with pytest.raises(ValueError, match=name):
        batch.replace(**{name: bad}).validate()


def test_mismatched_batch_dim() -> None:
    batch = _full_batch()
    with pytest.raises(ValueError, match="variate_ids"):
        batch.replace(variate_ids=batch.variate_ids[:1]).validate()


def test_non_bool_padding_mask() -> None:
    batch = _full_batch()
    with pytest.raises(ValueError, match="padding_mask must be bool"):
        batch.replace(padding_mask=batch.padding_mask.long()).validate()


def test_non_bool_target_mask() -> None:
    batch = _full_batch()
    with pytest.raises(ValueError, match="target_mask must be bool"):
        batch.replace(target_mask=batch.target_mask.float()).validate()


@pytest.mark.parametrize("name", ["modality_ids", "variate_ids", "sample_ids", "time_ids"])
def test_id_fields_must_be_long_2d(name: str) -> None:
    batch = _full_batch()
    value = getattr(batch, name)
    with pytest.raises(ValueError, match=name):
        batch.replace(**{name: value.int()}).validate()
    with pytest.raises(ValueError, match=name):
        batch.replace(**{name: value.unsqueeze(-1)}).validate()


def test_select_gathers_every_field_consistently() -> None:
    batch = _full_batch()
    ids = torch.tensor([[4, 0, 2], [1, 3, 4]])
    picked = batch.select(ids)
    assert picked.num_tokens == 3
    offset = torch.arange(B).view(B, 1) * 100
    expected_ids = ids + offset  # the per-(b, n) code of each selected token
    torch.testing.assert_close(picked.tokens, expected_ids.float().unsqueeze(-1).expand(B, 3, D))
    torch.testing.assert_close(picked.positions, expected_ids.unsqueeze(-1).expand(B, 3, 2))
    torch.testing.assert_close(picked.padding_mask, ids % 2 == 0)
    torch.testing.assert_close(picked.modality_ids, expected_ids)
    torch.testing.assert_close(picked.variate_ids, expected_ids + 1)
    torch.testing.assert_close(picked.sample_ids, expected_ids + 2)
    torch.testing.assert_close(picked.time_ids, expected_ids + 3)
    torch.testing.assert_close(picked.targets, expected_ids.float().unsqueeze(-1).expand(B, 3, P) * 10)
    torch.testing.assert_close(picked.target_mask, (ids % 3 == 0).unsqueeze(-1).expand(B, 3, P))
    assert picked.context is batch.context
    picked.validate()


def test_select_leaves_missing_fields_missing() -> None:
    batch = TokenBatch(torch.randn(B, N, D))
    picked = batch.select(torch.tensor([[0, 1], [2, 3]]))
    assert picked.positions is None and picked.padding_mask is None and picked.targets is None
    torch.testing.assert_close(picked.tokens[1], batch.tokens[1, 2:4])


def test_gather_tokens_handles_extra_dims() -> None:
    x = torch.randn(B, N, 2, 3)
    ids = torch.tensor([[3], [0]])
    out = gather_tokens(x, ids)
    assert out.shape == (B, 1, 2, 3)
    torch.testing.assert_close(out[0, 0], x[0, 3])
    torch.testing.assert_close(out[1, 0], x[1, 0])
