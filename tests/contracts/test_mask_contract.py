"""The Mask contract (inputs and targets, from a caller's map, per-modality configs) and the strategies' outputs
pinned to what the one-adapter code drew for the same seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmsdk.contracts.mask_strategies import MaskingConfig, apply_strategy, draw_mask
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.registry import MASK_STRATEGIES, register_mask_strategy
from mmsdk.contracts.tokens import TokenBatch

FIXTURE = Path(__file__).parents[1] / "fixtures" / "masks_v1.safetensors"
B, C, T = 3, 2, 8
N = C * T


def _cases() -> dict[str, tuple[dict, dict]]:
    """The cases `masks_v1.safetensors` was drawn for (see tests/fixtures/README.md)."""
    time_ids = torch.arange(T).repeat(C).expand(B, -1).contiguous()
    variate = torch.arange(C).repeat_interleave(T).expand(B, -1).contiguous()
    padding = torch.ones(B, N, dtype=torch.bool)
    padding[1, -3:] = False
    padding[2, -5:] = False
    sample_ids = torch.tensor([[0] * 6 + [1] * 10, [0] * 9 + [1] * 7, [0] * 16])
    packed = torch.stack(
        [
            torch.cat([torch.arange(6), torch.arange(10)]),
            torch.cat([torch.arange(9), torch.arange(7)]),
            torch.arange(16),
        ]
    )
    return {
        "random": ({"strategy": "random", "ratio": 0.4}, {}),
        "random_pad": ({"strategy": "random", "ratio": 0.4}, {"padding_mask": padding}),
        "random_range": ({"strategy": "random", "ratio": 0.2, "ratio_max": 0.7}, {}),
        "block": ({"strategy": "block", "ratio": 0.5, "span": 3}, {}),
        "block_pad": ({"strategy": "block", "ratio": 0.5, "span": 3}, {"padding_mask": padding}),
        "group": ({"strategy": "group", "ratio": 0.5}, {"variate_ids": variate}),
        "tail": ({"strategy": "tail", "ratio": 0.25}, {}),
        "tail_time": ({"strategy": "tail", "ratio": 0.25}, {"time_ids": time_ids}),
        "tail_pad": ({"strategy": "tail", "ratio": 0.25}, {"time_ids": time_ids, "padding_mask": padding}),
        "tail_packed": ({"strategy": "tail", "ratio": 0.3}, {"time_ids": packed, "sample_ids": sample_ids}),
    }


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(_cases()))
def test_strategies_draw_what_the_one_adapter_code_drew(name: str, seed: int) -> None:
    expected = load_file(str(FIXTURE))
    config, ids = _cases()[name]
    mask = apply_strategy(
        MaskingConfig.from_dict(config), TokenBatch(torch.zeros(B, N, 4), **ids), torch.Generator().manual_seed(seed)
    )
    assert torch.equal(mask.ids_keep, expected[f"{name}.{seed}.ids_keep"])
    assert torch.equal(mask.ids_restore, expected[f"{name}.{seed}.ids_restore"])
    assert torch.equal(mask.hidden, expected[f"{name}.{seed}.hidden"])
    assert torch.equal(mask.target, mask.hidden)  # strategies predict every hidden token


def test_from_hidden_keeps_inputs_in_order_and_targets_apart() -> None:
    hidden = torch.tensor([[False, True, True, False, True], [True, False, False, True, True]])
    target = torch.tensor([[False, True, False, False, True], [True, False, False, False, True]])
    mask = Mask.from_hidden(hidden, target)
    assert mask.ids_keep.tolist() == [[0, 3], [1, 2]]  # the inputs, in sequence order
    assert torch.equal(mask.hidden, hidden) and torch.equal(mask.target, target)
    assert mask.ids_target.tolist() == [[1, 4], [0, 4]]
    x = torch.arange(10.0).view(2, 5, 1)
    shuffled = torch.argsort(mask.ids_restore, dim=1)
    assert not bool(torch.gather(hidden, 1, shuffled[:, : mask.num_keep]).any())  # inputs first in the shuffle
    torch.testing.assert_close(
        torch.gather(torch.gather(x, 1, shuffled.unsqueeze(-1)), 1, mask.ids_restore.unsqueeze(-1)), x
    )
    plain = Mask.from_hidden(hidden)
    assert torch.equal(plain.target, hidden)


def test_from_hidden_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="same number of tokens"):
        Mask.from_hidden(torch.tensor([[True, False, False], [True, True, False]]))
    with pytest.raises(ValueError, match="hides every token"):
        Mask.from_hidden(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, N\) bool"):
        Mask.from_hidden(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="targets must be hidden"):
        Mask.from_hidden(torch.tensor([[True, False]]), torch.tensor([[False, True]]))
    unequal = Mask.from_hidden(
        torch.tensor([[True, True, False], [True, True, False]]),
        torch.tensor([[True, True, False], [True, False, False]]),
    )
    with pytest.raises(ValueError, match="same number of targets"):
        _ = unequal.ids_target


def test_per_modality_overrides_are_validated_and_applied() -> None:
    config = MaskingConfig(ratio=0.25, modalities={"b": {"strategy": "block", "ratio": 0.34, "span": 2}})
    assert config.for_modality("a") is config
    assert config.for_modality("b").strategy == "block" and config.for_modality("b").ratio == 0.34
    with pytest.raises(ValueError, match=r"MaskingConfig\.modalities\.b: MaskingConfig\.ratio"):
        MaskingConfig(modalities={"b": {"ratio": 2.0}})
    with pytest.raises(ValueError, match="unknown strategy 'checkerboard'"):
        MaskingConfig(strategy="checkerboard")
    parts = {"a": TokenBatch(torch.zeros(2, 8, 4)), "b": TokenBatch(torch.zeros(2, 6, 4))}
    mask = draw_mask(config, TokenBatch.concat(parts), torch.Generator().manual_seed(0))
    assert mask.hidden[:, :8].sum(dim=1).tolist() == [2, 2] and mask.hidden[:, 8:].sum(dim=1).tolist() == [2, 2]
    spans = mask.hidden[:, 8:].view(2, 3, 2)
    assert bool((spans.all(dim=-1) | ~spans.any(dim=-1)).all())  # whole spans of 2 in the block modality


def test_a_strategy_registered_elsewhere_is_used_by_name() -> None:
    @register_mask_strategy("test_every_other")
    def every_other(batch: TokenBatch, config: MaskingConfig, ratio: float, generator) -> Mask:
        index = torch.arange(batch.num_tokens).expand(batch.batch_size, -1)
        return Mask.from_hidden(index % 2 == 1)

    assert "test_every_other" in MASK_STRATEGIES.names()
    mask = apply_strategy(MaskingConfig(strategy="test_every_other"), TokenBatch(torch.zeros(2, 6, 4)))
    assert mask.hidden[0].tolist() == [False, True] * 3
    with pytest.raises(ValueError, match="already registered"):
        register_mask_strategy("random")(every_other)


def test_point_block_hides_the_groups_nearest_to_one_center() -> None:
    centers = torch.tensor([[[float(i), 0.0, 0.0] for i in range(10)]]).expand(2, -1, -1)  # groups on a line
    batch = TokenBatch(torch.zeros(2, 10, 4), positions=centers)
    mask = apply_strategy(MaskingConfig(strategy="point_block", ratio=0.4), batch, torch.Generator().manual_seed(4))
    for row in mask.hidden:
        hidden = torch.nonzero(row).squeeze(-1)
        assert len(hidden) == 4 and int(hidden.max() - hidden.min()) == 3  # one contiguous block of 4
    with pytest.raises(ValueError, match="group centers"):
        apply_strategy(MaskingConfig(strategy="point_block"), TokenBatch(torch.zeros(2, 10, 4)))
