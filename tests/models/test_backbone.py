"""The backbone's reading of a token batch: attention masks from padding, packing and time ids; rotary
coordinates of visible tokens; the causal setting of the objective."""

from __future__ import annotations

import torch

from mmsdk.contracts.tokens import TokenBatch
from mmsdk.models import build_model, build_task_model
from mmsdk.models.backbone import attention_mask

B, N, D = 2, 12, 8


def test_attention_mask_of_a_batch() -> None:
    tokens = torch.zeros(B, N, D)
    time_ids = (torch.arange(N) % 4).expand(B, N)
    full = TokenBatch(tokens, padding_mask=torch.ones(B, N, dtype=torch.bool), time_ids=time_ids)
    mask = attention_mask(full)
    assert mask.is_full and mask.time_ids is None  # all-real padding is dropped; time ids only matter if causal
    causal = attention_mask(full, causal=True)
    assert causal.time_ids is not None and not causal.is_plain_causal
    padding = torch.ones(B, N, dtype=torch.bool)
    padding[0, :3] = False
    sample_ids = torch.tensor([[0] * 5 + [1] * 4 + [2] * 3, [0] * 7 + [1] * 5])
    padded = attention_mask(TokenBatch(tokens, padding_mask=padding, sample_ids=sample_ids))
    assert padded.padding_mask is not None and padded.sample_ids is not None


def test_mae_decoder_rotates_by_time_ids_not_by_token_index() -> None:
    """With rotary embeddings in the decoder, a token's rotation follows its time id (the same coordinates as the
    encoder), so a Timer-XL-style layout (variate-major tokens, time ids repeating per variate) decodes the same
    whatever the token order."""
    config = {
        "adapter": "timerxl",
        "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8},
        "encoder": {"dim": 16, "depth": 1, "heads": 2, "rope": "1d"},
        "decoder": {"dim": 16, "depth": 1, "heads": 2, "rope": "1d"},
        "objective": "mae",
    }
    model = build_model(config).eval()
    batch = model.tokenize(model.adapter.example_input(B))
    coordinates = model.backbone.rope_coordinates(batch, "1d")
    assert torch.equal(coordinates, batch.time_ids)  # (B, C·N): 0..3 for each variate, not 0..7
    seen: list[torch.Tensor] = []
    handle = model.decoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["positions"]), with_kwargs=True
    )
    from mmsdk.contracts.mask_strategies import random_mask

    try:
        with torch.no_grad():
            model(batch, random_mask(B, batch.num_tokens, 0.5, torch.Generator().manual_seed(0)))
    finally:
        handle.remove()
    assert torch.equal(seen[0], batch.time_ids)


def test_task_models_keep_the_objectives_causal_encoder() -> None:
    config = {
        "adapter": "timerxl",
        "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8},
        "encoder": {"dim": 16, "depth": 1, "heads": 2},
    }
    assert build_task_model({**config, "objective": "causal"}, {"task": "forecast", "num_outputs": 8}).backbone.causal
    assert not build_task_model({**config, "objective": "bert"}, {"task": "forecast", "num_outputs": 8}).backbone.causal
