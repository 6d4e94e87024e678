"""The 4m objective: budgets per sample, an encoder over inputs only, a cross-attention decoder over the targets,
per-modality losses and weights, discrete targets, presence, any-to-any prediction and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mmsdk.contracts.budgets import BudgetMask
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained, save_pretrained
from mmsdk.models import CrossModalPredictor, EmbeddingModel, build_model
from mmsdk.models.config import ModelConfig

SERIES = {"context_length": 32, "num_channels": 2, "patch_len": 8, "revin": False, "positions": "sincos"}  # 8 tokens
VIDEO = {"channels": 1, "num_frames": 4, "frame_size": 16, "tubelet": 2, "patch": 8, "target_norm": "none"}  # 8
MODEL: dict[str, Any] = {
    "modalities": {
        "series": {"adapter": "timerxl", "adapter_config": SERIES},
        "video": {"adapter": "videomae", "adapter_config": VIDEO},
    },
    "encoder": {"dim": 32, "depth": 2, "heads": 2},
    "objective": "4m",
    "max_variates": 2,
    "objective_config": {"input_tokens": 6, "target_tokens": 6},
}


def _inputs(batch_size: int = 4, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "series": torch.randn(batch_size, 32, 2, generator=g),
        "video": torch.rand(batch_size, 4, 1, 16, 16, generator=g),
    }


def _config(**changes: Any) -> dict[str, Any]:
    return {**MODEL, "objective_config": {**MODEL["objective_config"], **changes}}


def test_a_step_scores_each_modality_with_its_adapter_and_averages_by_weight() -> None:
    model = build_model(_config(loss_weights={"video": 3.0}))
    out = model.step(_inputs(), MaskingConfig(), torch.Generator().manual_seed(0))
    assert isinstance(out.mask, BudgetMask)
    assert sorted(out.terms) == ["series/mse", "video/mse"]
    assert out.weights == {"series/mse": 0.25, "video/mse": 0.75}
    torch.testing.assert_close(out.loss, 0.25 * out.terms["series/mse"] + 0.75 * out.terms["video/mse"])
    inputs, target = ~out.mask.hidden, out.mask.target
    assert inputs.sum(1).le(6).all() and target.sum(1).le(6).all() and not bool((inputs & target).any())
    assert torch.equal(inputs.sum(1), out.mask.keep_valid.sum(1)) and bool(target.any(dim=1).all())
    out.loss.backward()
    for name in ("query_token", "decoder_embed.weight", "backbone.variate_embedding.weight"):
        assert model.get_parameter(name).grad is not None, name
    # predictions exist only at the targets: every other token is untouched by the decoder
    series = out.prediction.preds["series"]
    assert bool((series[~target[:, :8]] == 0).all()) and bool((series[target[:, :8]] != 0).any())


def test_the_encoder_sees_only_the_inputs() -> None:
    model = build_model(MODEL).eval()
    inputs = _inputs()
    batch = model.tokenize(inputs)
    mask = model.draw_mask(batch, MaskingConfig(), torch.Generator().manual_seed(1))
    before = model(batch, mask).preds
    changed = {**inputs, "video": inputs["video"].clone()}
    changed["video"][:, 2:] = 0.5  # the second tube time step of every clip
    batch2 = model.tokenize(changed)
    after = model(batch2, mask).preds
    hidden_video = mask.hidden[:, 8:].view(4, 2, 4)[:, 1].all(dim=1)  # rows whose changed tubes were all hidden
    assert bool(hidden_video.any())
    for name in ("series", "video"):
        torch.testing.assert_close(after[name][hidden_video], before[name][hidden_video])


def test_absent_modalities_are_never_drawn_and_missing_ones_are_absent() -> None:
    model = build_model(MODEL)
    inputs = {**_inputs(), "present": {"video": torch.tensor([True, False, True, False])}}
    out = model.step(inputs, MaskingConfig(), torch.Generator().manual_seed(0))
    chosen = ~out.mask.hidden | out.mask.target
    assert not bool(chosen[[1, 3], 8:].any()) and bool(chosen[[0, 2], 8:].any())
    assert torch.isfinite(out.loss)
    only_series = model.step({"series": _inputs()["series"]}, MaskingConfig(), torch.Generator().manual_seed(0))
    assert not bool((~only_series.mask.hidden | only_series.mask.target)[:, 8:].any())
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no modality present"):
        model.tokenize(
            {
                **_inputs(),
                "present": {"series": torch.tensor([1, 0, 1, 1]).bool(), "video": torch.tensor([1, 0, 1, 1]).bool()},
            }
        )
    with pytest.raises(ValueError, match="unknown modalities"):
        model.tokenize({**_inputs(), "audio": torch.zeros(4, 100)})
    with pytest.raises(ValueError, match="name no modality"):
        model.tokenize({})
    with pytest.raises(ValueError, match=r"must be a \(4,\) bool tensor"):
        model.tokenize({**_inputs(), "present": {"video": torch.ones(3, dtype=torch.bool)}})


def test_a_shorter_clip_in_one_sample_leaves_its_padding_out() -> None:
    model = build_model(MODEL)
    inputs = _inputs()
    inputs["video"][0, 2:] = float("nan")  # sample 0: 2 of 4 frames, the rest padding (the series is whole)
    out = model.step(inputs, MaskingConfig(), torch.Generator().manual_seed(0))
    padded = ~model.available(out.batch)
    assert bool(padded[0, 12:].all()) and not bool(padded[1:].any())  # the second tube time step of clip 0
    assert not bool(((~out.mask.hidden | out.mask.target) & padded).any())
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match=r"same samples; batch sizes \{'series': 3, 'video': 4\}"):
        model.tokenize({"series": inputs["series"][:3], "video": inputs["video"]})


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        ModelConfig.from_dict(_config(input_tokens=0))
    with pytest.raises(ValueError, match="target_alpha"):
        ModelConfig.from_dict(_config(target_alpha=-1))
    with pytest.raises(ValueError, match="input_alpha"):
        ModelConfig.from_dict(_config(input_alpha=[]))
    assert ModelConfig.from_dict(_config(input_alpha=[0, 1])).objective_config["input_alpha"] == [0.0, 1.0]
    with pytest.raises(ValueError, match=r"loss_weights: unknown modalities \['audio'\]"):
        ModelConfig.from_dict(_config(loss_weights={"audio": 1.0}))
    with pytest.raises(ValueError, match="cross_attention"):
        ModelConfig.from_dict({**MODEL, "decoder": {"dim": 16, "depth": 1, "heads": 2}})
    with pytest.raises(ValueError, match="takes no options"):
        ModelConfig.from_dict({**MODEL, "objective": "mae"})
    out = build_model(_config(input_tokens=12, target_tokens=12)).step(_inputs(), None, torch.Generator())
    assert out.mask.num_keep == 8 and out.mask.num_targets == 8  # budgets above the 16 tokens shrink to fit


def test_quantized_targets_are_scored_by_cross_entropy_and_train_their_tokenizer() -> None:
    model = build_model(_config(quantize={"video": {"levels": [4, 4, 4], "hidden": 16}}))
    out = model.step(_inputs(), MaskingConfig(), torch.Generator().manual_seed(0))
    assert sorted(out.terms) == ["series/mse", "video/cross_entropy", "video/tokenizer"]
    assert "video/tokenizer" not in out.weights  # it trains the tokenizer only, at full weight
    assert out.prediction.preds["video"].shape == (4, 8, 64)  # logits over the 4·4·4 ids
    out.terms["video/cross_entropy"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.tokenizers.parameters())  # ids are targets, not a gradient path
    out.terms["video/tokenizer"].backward()
    assert all(p.grad is not None for p in model.tokenizers.parameters())


def test_a_tokenizer_can_be_fitted_before_pretraining() -> None:
    model = build_model(_config(quantize={"video": {"levels": [4, 4, 4], "hidden": 16}}))
    batches = [_inputs(8, seed) for seed in range(4)]
    data = model.tokenizer_data("video", batches)
    assert data.shape == (4 * 8 * 8, 128)
    losses = model.fit_tokenizer("video", batches, steps=60)
    assert losses[-1] < 0.5 * losses[0] and model.training
    with pytest.raises(ValueError, match="has no quantizer"):
        model.fit_tokenizer("series", batches)


def test_predict_any_to_any_and_embed_any_subset() -> None:
    model = build_model(MODEL).eval()
    inputs = _inputs()
    pred = model.predict({"series": inputs["series"]}, ["video"])
    assert pred["video"].shape == (4, 4, 1, 16, 16)
    tokens = model.predict({"video": inputs["video"]}, ["series"], decode=False)
    assert tokens["series"].shape == (4, 8, 8)
    series = model.predict({"video": inputs["video"]}, ["series"])["series"]
    assert series.shape == (4, 32, 2)
    one = model.predict({"video": inputs["video"][:1]}, ["series"])["series"]
    torch.testing.assert_close(one, series[:1], atol=1e-5, rtol=1e-5)  # rows do not interact
    assert model.embed_modalities({"video": inputs["video"]}).shape == (4, 32)
    with pytest.raises(ValueError, match="both inputs and targets"):
        model.predict(inputs, ["video"])
    with pytest.raises(ValueError, match="name the modalities to predict"):
        model.predict({"series": inputs["series"]}, ["audio"])
    with pytest.raises(ValueError, match="no modality to predict from"):
        model.predict({}, ["video"])


def test_predict_completes_a_partly_known_modality() -> None:
    model = build_model(MODEL).eval()
    inputs = _inputs()
    known = torch.zeros(4, 8, dtype=torch.bool)
    known[:, :3] = True
    known[0, 3] = True  # rows may know different counts
    batch, mask = model.cross_modal_batch(inputs, ["video"], known={"video": known})
    assert torch.equal(mask.input_map()[:, 8:], known) and bool(mask.input_map()[:, :8].all())
    assert torch.equal(mask.target[:, 8:], ~known) and not bool(mask.target[:, :8].any())
    tokens = model.predict(inputs, ["video"], decode=False, known={"video": known})["video"]
    truth = model.backbone.parts(batch)["video"].targets
    torch.testing.assert_close(tokens[known], truth[known])  # given tokens keep their values
    assert not torch.allclose(tokens[~known], truth[~known])
    alone = model.predict({"video": inputs["video"]}, ["video"], decode=False, known={"video": known})["video"]
    assert alone.shape == (4, 8, 128)  # from its own known tokens only (2×8×8 tubes)
    with pytest.raises(ValueError, match="no input values"):
        model.predict({"series": inputs["series"]}, ["video"], known={"video": known})
    with pytest.raises(ValueError, match=r"must be a \(4, 8\) bool map"):
        model.predict(inputs, ["video"], known={"video": known[:, :4]})


def test_save_load_and_export_a_cross_modal_predictor_and_a_subset_embedding(tmp_path: Path) -> None:
    model = build_model(MODEL).eval()
    save_pretrained(model, tmp_path / "model")
    loaded = from_pretrained(tmp_path / "model").eval()
    inputs = _inputs(3)
    expected = model.predict({"series": inputs["series"]}, ["video"])["video"]
    torch.testing.assert_close(loaded.predict({"series": inputs["series"]}, ["video"])["video"], expected)
    result = to_onnx(CrossModalPredictor(loaded, ["series"], "video"), tmp_path / "series_to_video.onnx")
    assert result.verified and result.metadata["mmsdk.kind"] == "cross_modal"
    assert result.metadata["mmsdk.target"] == "video" and result.output_names == ("video",)
    runtime = OnnxModel(result.path)
    got = runtime(inputs["series"].numpy())
    assert got.shape == (3, 4, 1, 16, 16)
    assert abs(got - expected.numpy()).max() < 1e-4
    embedding = to_onnx(EmbeddingModel(loaded.backbone, ["video"]), tmp_path / "video_embedding.onnx")
    assert embedding.verified and embedding.input_names == ("frames",)  # one input: named by its adapter
    eager = loaded.embed_modalities({"video": inputs["video"]})
    assert abs(OnnxModel(embedding.path)(inputs["video"].numpy()) - eager.numpy()).max() < 1e-4


def test_shared_time_gives_paired_modalities_one_clock() -> None:
    model = build_model({**MODEL, "shared_time": True})
    batch = model.tokenize(_inputs(2))
    series, video = batch.parts["series"].clip_time, batch.parts["video"].clip_time
    torch.testing.assert_close(series[0], torch.tensor([0.125, 0.375, 0.625, 0.875] * 2))  # 4 patches, 2 variates
    torch.testing.assert_close(video[0], torch.tensor([0.25] * 4 + [0.75] * 4))  # 2 tube steps of 4 places
    torch.testing.assert_close(batch.clip_time, torch.cat([series, video], dim=1))
    time = model.backbone.time_embedding(batch, 32)
    torch.testing.assert_close(time[:, 0], time[:, 4])  # both variates' first patch: the same moment
    torch.testing.assert_close(time[:, 8], time[:, 11])  # the 4 places of the first tube step
    assert not torch.allclose(time[:, 0], time[:, 8])
    plain = build_model(MODEL)
    assert plain.backbone.time_embedding(batch, 32) is None  # off by default: outputs unchanged
    lacking = batch.replace(clip_time=torch.cat([series, torch.full_like(video, float("nan"))], dim=1))
    assert bool((model.backbone.time_embedding(lacking, 32)[:, 8:] == 0).all())  # no clock, no embedding


def test_a_spectrogram_token_knows_where_it_lies_in_its_clip() -> None:
    from mmsdk.contracts.adapter import build_adapter

    config = {"fbank": {"num_mel_bins": 32}, "patch_freq": 16, "patch_time": 4, "max_frames": 98}
    adapter = build_adapter("audiomae", config, 16)
    wave = torch.randn(2, 16000) * 0.1
    wave[1, 8000:] = float("nan")  # the second clip lasts half a second
    batch = adapter.tokenize(wave)
    frames = batch.context["frames"].tolist()
    assert frames == [98, 48]
    time = batch.clip_time.view(2, -1, 2)  # (B, time steps, 2 frequency bands)
    torch.testing.assert_close(time[0, :, 0], (torch.arange(24) * 4 + 2) / 98)
    torch.testing.assert_close(time[1, :, 1], (torch.arange(24) * 4 + 2) / 48)  # relative to its own length
