"""save_pretrained / from_pretrained / load_backbone: exact round trips, no pickle, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import mmsdk
from mmsdk.adapters.timeseries import PatchTSTAdapter
from mmsdk.contracts.mask_strategies import random_mask
from mmsdk.contracts.registry import register_adapter
from mmsdk.hub import LoadReport, from_pretrained, load_backbone, save_pretrained
from mmsdk.models import EmbeddingModel

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {
        "context_length": 96,
        "num_channels": 3,
        "patch_len": 16,
        "stride": 8,
        "affine": True,
        "positions": "learned",
    },
    "encoder": {"dim": 32, "depth": 2, "heads": 4},
    "objective": "mae",
}
FORECAST = {"task": "forecast", "num_outputs": 12}


@register_adapter
class _OtherAdapter(PatchTSTAdapter):
    """PatchTST under another name: same shapes, different adapter (for the mismatch check)."""

    name = "test_hub_other"


def _inputs(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 96, 3, generator=torch.Generator().manual_seed(0))


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Moves every parameter away from its initialization (norm weights of 1 and zero biases too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("hub must never unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.parametrize("objective", ["mae", "bert", "causal"])
def test_pretrain_model_round_trip_is_exact(tmp_path: Path, objective: str) -> None:
    model = _perturbed(mmsdk.build_model({**MODEL, "objective": objective}))
    save_pretrained(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    x = _inputs()
    tokens = model.tokenize(x)
    mask = random_mask(tokens.batch_size, tokens.num_tokens, 0.4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(tokens, mask).pred, loaded(loaded.tokenize(x), mask).pred)
    assert torch.equal(model.embed(x), loaded.embed(x))


def test_task_model_with_shared_norm_round_trip_is_exact(tmp_path: Path) -> None:
    model = _perturbed(mmsdk.build_task_model(MODEL, FORECAST))
    assert model.head.norm is model.adapter.norm  # the forecast head shares the (affine) RevIN parameters
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == "mmsdk" and config["kind"] == "task" and config["head"]["num_outputs"] == 12
    loaded = from_pretrained(tmp_path)
    assert loaded.head.norm is loaded.adapter.norm
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_embedding_model_round_trip(tmp_path: Path) -> None:
    model = _perturbed(EmbeddingModel(mmsdk.build_model(MODEL).backbone))
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, EmbeddingModel)
    with torch.no_grad():
        assert torch.equal(model(_inputs()), loaded(_inputs()))


def test_load_backbone_report(tmp_path: Path) -> None:
    pretrained = _perturbed(mmsdk.build_model(MODEL))
    save_pretrained(pretrained, tmp_path)
    task = mmsdk.build_task_model(MODEL, FORECAST)
    head_before = task.head.linear.weight.clone()
    report = load_backbone(task, tmp_path)
    assert isinstance(report, LoadReport)
    backbone_keys = [k for k in task.state_dict() if k.startswith("backbone.")]
    assert set(backbone_keys) <= set(report.loaded)
    assert not [k for k in report.missing if k.startswith("backbone.")]
    assert {"head.linear.weight", "head.linear.bias"} <= set(report.missing)
    assert any(k.startswith("decoder.") for k in report.unexpected) and "mask_token" in report.unexpected
    for key in backbone_keys:
        assert torch.equal(task.state_dict()[key], pretrained.state_dict()[key]), key
    assert torch.equal(task.head.linear.weight, head_before)  # the task head keeps its initialization
    text = str(report)
    assert f"loaded {len(report.loaded)} tensors" in text and "decoder.blocks" in text


def test_load_backbone_takes_the_head_of_a_task_model_with_the_same_head(tmp_path: Path) -> None:
    """LP-FT: a saved linear probe initializes the next fine-tuning run with its trained head; another head
    config (here another horizon) only contributes the backbone."""
    probe = _perturbed(mmsdk.build_task_model(MODEL, FORECAST))
    save_pretrained(probe, tmp_path)
    same = mmsdk.build_task_model(MODEL, FORECAST)
    report = load_backbone(same, tmp_path)
    assert not report.missing and not report.unexpected
    for key, value in probe.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    other = mmsdk.build_task_model(MODEL, {**FORECAST, "num_outputs": 24})
    head_before = other.head.linear.weight.clone()
    report = load_backbone(other, tmp_path)
    assert {"head.linear.weight", "head.linear.bias"} <= set(report.missing)
    assert {"head.linear.weight", "head.linear.bias"} <= set(report.unexpected)
    assert torch.equal(other.head.linear.weight, head_before)


def test_load_backbone_rejects_a_different_encoder(tmp_path: Path) -> None:
    save_pretrained(mmsdk.build_model({**MODEL, "encoder": {"dim": 64, "depth": 2, "heads": 4}}), tmp_path)
    with pytest.raises(ValueError, match="dim=64 in the checkpoint vs 32"):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), tmp_path)


def test_load_backbone_rejects_a_different_adapter(tmp_path: Path) -> None:
    save_pretrained(mmsdk.build_model({**MODEL, "adapter": "test_hub_other"}), tmp_path)
    with pytest.raises(ValueError, match=r"adapter 'test_hub_other'.*uses 'patchtst'"):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), tmp_path)


def test_load_backbone_names_shape_mismatches(tmp_path: Path) -> None:
    other = {**MODEL, "adapter_config": {**MODEL["adapter_config"], "context_length": 128}}
    save_pretrained(mmsdk.build_model(other), tmp_path)
    with pytest.raises(
        ValueError, match=r"backbone\.positions\.patchtst\.table: \(16, 32\) in the checkpoint vs \(12, 32\)"
    ):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), tmp_path)


def _edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    save_pretrained(mmsdk.build_model(MODEL), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors not found"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "weights").rename(tmp_path / "m" / "model.safetensors")

    good = json.loads((tmp_path / "m" / "config.json").read_text())
    _edit_config(tmp_path / "m", format="other")
    with pytest.raises(ValueError, match=r"config\.json: unknown format 'other'"):
        from_pretrained(tmp_path / "m")
    _edit_config(tmp_path / "m", format="mmsdk", model={**good["model"], "depht": 3})
    with pytest.raises(ValueError, match=r"config\.json: invalid config.*'depht'"):
        from_pretrained(tmp_path / "m")
    _edit_config(tmp_path / "m", model=good["model"], kind="task", head=FORECAST)
    with pytest.raises(ValueError, match=r"missing keys \[head\.linear\.weight.*unexpected keys \[decoder"):
        from_pretrained(tmp_path / "m")
    _edit_config(tmp_path / "m", kind="pretrain", head=None)
    modality = good["model"]["modalities"]["patchtst"]
    modalities = {"patchtst": {**modality, "adapter_config": {**modality["adapter_config"], "patch_len": 8}}}
    _edit_config(tmp_path / "m", model={**good["model"], "modalities": modalities})
    with pytest.raises(ValueError, match=r"value_embedding\.weight: \(32, 16\) in the checkpoint vs \(32, 8\)"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        from_pretrained(tmp_path / "m")


def test_save_pretrained_rejects_other_modules(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"pretraining \(Objective\), task or embedding model"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_load_backbone_rejects_another_rope_or_adapter_config(tmp_path: Path) -> None:
    """What the weights compute must agree, not only their shapes: rope and adapter fields are compared."""
    save_pretrained(mmsdk.build_model({**MODEL, "encoder": {**MODEL["encoder"], "rope": "1d"}}), tmp_path / "rope")
    with pytest.raises(ValueError, match=r"encoder\.rope='1d' in the checkpoint vs 'none'"):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), tmp_path / "rope")
    other = {**MODEL, "adapter_config": {**MODEL["adapter_config"], "mask_value": "zero_patch", "revin": False}}
    save_pretrained(mmsdk.build_model(other), tmp_path / "adapter")
    with pytest.raises(ValueError, match=r"patchtst\.mask_value='zero_patch' in the checkpoint vs 'token'.*revin"):
        load_backbone(mmsdk.build_task_model(MODEL, FORECAST), tmp_path / "adapter")
    # fields that do not change what the backbone computes (here dropout) may differ
    free = {**MODEL, "adapter_config": {**MODEL["adapter_config"], "positional_dropout": 0.3}}
    save_pretrained(mmsdk.build_model(MODEL), tmp_path / "plain")
    load_backbone(mmsdk.build_task_model(free, FORECAST), tmp_path / "plain")


def test_load_backbone_with_missing_backbone_tensors_needs_partial(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_pretrained(mmsdk.build_model(MODEL), tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    dropped = [k for k in weights if k.startswith("backbone.encoder.blocks.1.")]
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(tmp_path / "model.safetensors"))
    task = mmsdk.build_task_model(MODEL, FORECAST)
    with pytest.raises(ValueError, match=r"lacks \d+ backbone tensor\(s\).*blocks\.1\..*partial=True"):
        load_backbone(task, tmp_path)
    report = load_backbone(task, tmp_path, partial=True)
    assert set(dropped) <= set(report.missing)


LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy_v1"
ROUNDING = {"atol": 1e-6, "rtol": 1e-5}


@pytest.mark.parametrize("name", sorted(p.name for p in LEGACY.iterdir()))
def test_directories_of_format_1_load_with_the_same_outputs(name: str, tmp_path: Path, two_threads: None) -> None:
    """Tiny models saved by the one-adapter code (format 1, commit 63bec01) load and give the outputs they gave.

    To float32 rounding, not bit for bit: the outputs were recorded on one CPU (AMD EPYC), and another CPU's matmul
    kernels (an Intel Xeon's, measured) differ in the last bit (1.2e-7); a misplaced or missing weight moves the
    outputs by orders of magnitude more."""
    from safetensors.torch import load_file

    from mmsdk.contracts.masking import Mask

    directory = LEGACY / name
    assert json.loads((directory / "config.json").read_text())["format_version"] == 1
    model = from_pretrained(directory)
    io = load_file(str(directory / "io.safetensors"))
    with torch.no_grad():
        if "outputs" in io:  # a task model
            torch.testing.assert_close(model(io["inputs"]), io["outputs"], **ROUNDING)
        else:
            mask = Mask(io["ids_keep"], io["ids_restore"], io["mask"], io["mask"])
            torch.testing.assert_close(model(model.tokenize(io["inputs"]), mask).pred, io["pred"], **ROUNDING)
            torch.testing.assert_close(model.embed(io["inputs"]), io["embed"], **ROUNDING)
    resaved = save_pretrained(model, tmp_path / name)  # and saves in the current format
    assert json.loads((resaved / "config.json").read_text())["format_version"] == 2
