"""A model of two modalities built from the existing adapters: one sequence, per-modality masks, positions, losses,
training, save/load and an ONNX encoder with one input per modality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import mmsdk
from mmsdk.contracts.adapter import get_adapter_class
from mmsdk.contracts.mask_strategies import MaskingConfig
from mmsdk.contracts.masking import Mask
from mmsdk.contracts.tokens import TokenBatch
from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained, load_backbone, save_pretrained
from mmsdk.models import EmbeddingModel, build_model, build_task_model

SERIES = {"context_length": 32, "num_channels": 2, "patch_len": 8}  # timerxl: 2 variates x 4 patches = 8 tokens
CLOUD = get_adapter_class("pointmae").example_config()  # 8 groups = 8 tokens
MODEL: dict[str, Any] = {
    "modalities": {
        "series": {"adapter": "timerxl", "adapter_config": SERIES},
        "cloud": {"adapter": "pointmae", "adapter_config": CLOUD},
    },
    "encoder": {"dim": 16, "depth": 2, "heads": 2, "rope": "1d"},
    "objective": "bert",
}


def _inputs(model: torch.nn.Module, batch_size: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: adapter.example_input(batch_size, g) for name, adapter in model.backbone.adapters.items()}


class Pairs(Dataset):
    """Samples of a series and a point cloud that belong together (the cloud is scaled by the series' level)."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        level = torch.rand(n, 1, 1, generator=g) + 0.5
        t = torch.arange(32.0).view(1, -1, 1)
        self.series = level * torch.sin(t / 3 + torch.rand(n, 1, 2, generator=g) * 6)
        cloud = torch.randn(n, 64, 3, generator=g)
        self.cloud = level * cloud / cloud.norm(dim=-1, keepdim=True)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"series": self.series[i], "cloud": self.cloud[i]}


def test_tokens_of_both_modalities_form_one_sequence() -> None:
    model = build_model(MODEL)
    inputs = _inputs(model)
    batch = model.tokenize(inputs)
    assert list(batch.parts) == ["series", "cloud"] and batch.num_tokens == 16
    assert batch.slices() == {"series": slice(0, 8), "cloud": slice(8, 16)}
    assert batch.modality_ids is not None and batch.modality_ids[0].tolist() == [0] * 8 + [1] * 8
    assert batch.positions is None and batch.targets is None  # each modality keeps its own in `parts`
    assert batch.parts["cloud"].positions.shape == (3, 8, 3)  # continuous group centers
    # variate ids never collide across modalities (series variates 0, 1 → 0, 2; the cloud → 1)
    assert set(batch.variate_ids[0, :8].tolist()) == {0, 2} and set(batch.variate_ids[0, 8:].tolist()) == {1}
    features = model.backbone(batch)
    split = model.backbone.split(features, batch)
    assert split["series"].shape == (3, 8, 16) and split["cloud"].shape == (3, 8, 16)
    assert model.backbone.modality_embedding is not None
    alone = model.tokenize({"series": inputs["series"]})  # a modality left out is absent from every sample
    assert alone.padding_mask is not None and not bool(alone.padding_mask[:, 8:].any())
    assert bool(alone.padding_mask[:, :8].all())
    with pytest.raises(ValueError, match="mapping of modality name"):
        model.tokenize(inputs["series"])


def test_each_modality_is_masked_by_its_own_strategy_and_scored_by_its_own_adapter() -> None:
    model = build_model(MODEL).eval()
    inputs = _inputs(model)
    masking = MaskingConfig(ratio=0.25, modalities={"cloud": {"strategy": "point_block", "ratio": 0.5}})
    out = model.step(inputs, masking, torch.Generator().manual_seed(3))
    assert out.mask is not None
    hidden = out.mask.hidden
    assert hidden[:, :8].sum(dim=1).tolist() == [2, 2, 2] and hidden[:, 8:].sum(dim=1).tolist() == [4, 4, 4]
    assert sorted(out.terms) == ["cloud/chamfer", "series/mse"]  # each adapter's own loss, named per modality
    assert all(torch.isfinite(v) for v in out.terms.values())
    again = model.step(inputs, masking, torch.Generator().manual_seed(3))
    assert torch.equal(again.mask.hidden, hidden) and torch.equal(again.loss, out.loss)
    # the cloud's hidden groups form one block: the nearest groups to some center
    centers = out.batch.parts["cloud"].positions[0]
    masked = hidden[0, 8:]
    far = (centers[masked][:, None] - centers[~masked][None]).norm(dim=-1).min()
    assert float(far) > 0


def test_mask_concat_keeps_every_modality_share_and_inverts() -> None:
    a = Mask.from_hidden(torch.tensor([[True, False, False], [False, True, False]]))
    b = Mask.from_hidden(torch.tensor([[False, True], [True, False]]))
    mask = Mask.concat([a, b])
    assert mask.hidden.tolist() == [[True, False, False, False, True], [False, True, False, True, False]]
    assert mask.num_keep == 3
    x = torch.arange(10.0).view(2, 5, 1)
    kept = torch.gather(x, 1, mask.ids_keep.unsqueeze(-1))
    assert not bool(torch.gather(mask.hidden, 1, mask.ids_keep).any())
    shuffled = torch.argsort(mask.ids_restore, dim=1)
    rest = torch.gather(x, 1, shuffled[:, mask.num_keep :].unsqueeze(-1))
    torch.testing.assert_close(torch.gather(torch.cat([kept, rest], 1), 1, mask.ids_restore.unsqueeze(-1)), x)


def test_mae_decodes_both_modalities() -> None:
    model = build_model({**MODEL, "objective": "mae"})
    inputs = _inputs(model)
    out = model.step(inputs, MaskingConfig(ratio=0.5), torch.Generator().manual_seed(0))
    assert out.prediction.preds["series"].shape == (3, 8, 8) and out.prediction.preds["cloud"].shape == (3, 8, 24)
    out.loss.backward()
    assert model.decoder_modality_embedding is not None and model.decoder_modality_embedding.weight.grad is not None


def test_channel_independent_adapters_cannot_share_a_sequence() -> None:
    config = {
        **MODEL,
        "modalities": {
            **MODEL["modalities"],
            "series": {
                "adapter": "patchtst",
                "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
            },
        },
    }
    model = build_model(config)
    with pytest.raises(ValueError, match="one sequence per sample"):
        model.tokenize(_inputs(model))
    with pytest.raises(ValueError, match=r"modality 'b' has 3 sequences but 'a' has 6"):
        TokenBatch.concat({"a": TokenBatch(torch.zeros(6, 2, 4)), "b": TokenBatch(torch.zeros(3, 2, 4))})


def test_two_modality_pretraining_save_reload_finetune_and_onnx_encoder(tmp_path: Path) -> None:
    data = Pairs(48)
    trainer = {"max_steps": 30, "logger": "none", "progress_bar": False, "default_root_dir": str(tmp_path)}
    probe = {name: torch.stack([data[i][name] for i in range(8)]) for name in ("series", "cloud")}
    untrained = build_model(MODEL)
    before = float(untrained.step(probe, MaskingConfig(ratio=0.4), torch.Generator().manual_seed(5)).loss.detach())
    result = mmsdk.pretrain(MODEL, data, masking={"ratio": 0.4}, optim={"lr": 3e-3}, trainer=trainer, batch_size=8)
    model = result.model.eval()
    after = float(model.step(probe, MaskingConfig(ratio=0.4), torch.Generator().manual_seed(5)).loss.detach())
    assert after < before  # the shared encoder learned both modalities
    assert {"train/loss/series/mse", "train/loss/cloud/chamfer"} <= set(result.metrics)

    loaded = from_pretrained(save_pretrained(model, tmp_path / "pretrained"))
    with torch.no_grad():
        batch = model.tokenize(probe)
        mask = Mask.from_hidden(torch.arange(16).expand(8, 16) % 3 == 0)
        torch.testing.assert_close(
            loaded(loaded.tokenize(probe), mask).preds["cloud"], model(batch, mask).preds["cloud"]
        )

    task = build_task_model(MODEL, {"task": "forecast", "num_outputs": 8, "modality": "series"})
    report = load_backbone(task, tmp_path / "pretrained")
    assert not [k for k in report.missing if k.startswith("backbone.")]
    forecast = task.eval()(probe)  # the rollout re-encodes the extended series beside the same cloud
    assert forecast.shape == (8, 8, 2) and torch.isfinite(forecast).all()

    encoder = EmbeddingModel(loaded.backbone)
    result = to_onnx(encoder, tmp_path / "encoder.onnx", verify_batch_sizes=(1, 4))
    assert result.input_names == ("series", "cloud") and result.verified
    runtime = OnnxModel(tmp_path / "encoder.onnx")
    assert runtime.input_names == ["series", "cloud"]
    arrays = {name: value.numpy() for name, value in probe.items()}
    with torch.no_grad():
        expected = encoder(probe).numpy()
    np.testing.assert_allclose(runtime.run(arrays)[runtime.output_names[0]], expected, atol=1e-4)


def test_a_head_of_a_multimodal_model_names_its_modality() -> None:
    with pytest.raises(ValueError, match=r"HeadConfig\.modality: name the modality"):
        build_task_model(MODEL, {"task": "forecast", "num_outputs": 8})
    with pytest.raises(ValueError, match="not a modality of the model"):
        build_task_model(MODEL, {"task": "forecast", "num_outputs": 8, "modality": "audio"})
    classifier = build_task_model(MODEL, {"task": "classification", "num_outputs": 4, "modality": "cloud"}).eval()
    with torch.no_grad():
        assert classifier(_inputs(classifier)).shape == (3, 4)
