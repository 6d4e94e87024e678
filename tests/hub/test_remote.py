"""Models on the Hub, never over the network: `push_to_hub` and `from_pretrained("org/name")` against a local
file-based repository.

Only the upload is replaced: `HfApi.create_repo`, `create_branch` and `upload_folder` write each commit into a
Hugging Face cache directory laid out as huggingface_hub lays it out (`models--org--name/snapshots/<commit>/`,
`refs/<branch>`). Downloads run huggingface_hub's own `snapshot_download` with `HF_HUB_OFFLINE=1`, so the cache,
revision and offline logic under test are the library's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import mmsdk
from mmsdk.hub import from_pretrained, load_backbone, model_card, push_to_hub, save_pretrained
from mmsdk.hub.remote import is_repo_id

MODEL = {
    "adapter": "patchtst",
    "adapter_config": {"context_length": 32, "num_channels": 2, "patch_len": 8, "stride": 8},
    "encoder": {"dim": 16, "depth": 1, "heads": 2},
    "objective": "mae",
}
HEAD = {"task": "classification", "num_outputs": 3, "labels": ["calm", "storm", "gust"]}


class LocalHub:
    """A file-based stand-in for the Hub's write side: each upload becomes a commit in a local Hub cache."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.repos, self.commits = cache, set(), []

    def folder(self, repo_id: str) -> Path:
        return self.cache / ("models--" + repo_id.replace("/", "--"))

    def create_repo(self, repo_id: str, private: bool | None = None, exist_ok: bool = False, **_: Any) -> None:
        assert exist_ok or repo_id not in self.repos
        self.repos.add(repo_id)

    def create_branch(self, repo_id: str, branch: str, exist_ok: bool = False, **_: Any) -> None:
        refs = self.folder(repo_id) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        if not (refs / branch).exists() and (refs / "main").exists():
            (refs / branch).write_text((refs / "main").read_text())

    def upload_folder(self, repo_id: str, folder_path: str, revision: str | None = None, **_: Any) -> Any:
        assert repo_id in self.repos, "upload before create_repo"
        files = sorted(p for p in Path(folder_path).iterdir() if p.is_file())
        digest = hashlib.sha1(repo_id.encode() + str(len(self.commits)).encode())
        for path in files:
            digest.update(path.name.encode() + path.read_bytes())
        commit = digest.hexdigest()  # 40 hex digits, as a git commit id
        snapshot = self.folder(repo_id) / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for path in files:
            (snapshot / path.name).write_bytes(path.read_bytes())
        refs = self.folder(repo_id) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / (revision or "main")).write_text(commit)
        self.commits.append((repo_id, revision, commit, [p.name for p in files]))
        return type("CommitInfo", (), {"oid": commit})()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    import huggingface_hub

    local = LocalHub(tmp_path / "hub-cache")
    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, lambda self, *a, _n=name, **k: getattr(local, _n)(*a, **k))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # reads go to the cache only: nothing may reach the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(local.cache))  # HF_HUB_CACHE, read at import
    return local


def _task_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mmsdk.build_task_model(MODEL, HEAD).eval()


def test_push_then_load_by_repo_id_is_exact_and_pinned_revisions_stay(hub: LocalHub) -> None:
    x = torch.randn(4, 32, 2)
    first, second = _task_model(0), _task_model(1)
    commit = push_to_hub(first, "acme/gusts", metrics={"test/accuracy": 0.875}, data="Wind gauges, 2024.")
    assert hub.commits[0][3] == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    with torch.no_grad():
        assert torch.equal(from_pretrained("acme/gusts", cache_dir=hub.cache)(x), first(x))
        later = push_to_hub(second, "acme/gusts")
        assert later != commit
        assert torch.equal(from_pretrained("acme/gusts")(x), second(x))  # main moved (the default cache is used)
        assert torch.equal(from_pretrained("acme/gusts", revision=commit)(x), first(x))  # the pin did not
        push_to_hub(first, "acme/gusts", revision="v1")  # a branch of its own
        assert torch.equal(from_pretrained("acme/gusts", revision="v1")(x), first(x))
        assert torch.equal(from_pretrained("acme/gusts")(x), second(x))


def test_a_pretrained_backbone_from_the_hub_initializes_a_task_model(hub: LocalHub) -> None:
    torch.manual_seed(0)
    pretrained = mmsdk.build_model(MODEL)
    push_to_hub(pretrained, "acme/backbone")
    model = mmsdk.build_task_model(MODEL, HEAD)
    report = load_backbone(model, "acme/backbone")
    assert report.loaded and all(k.startswith("backbone.") for k in report.loaded)
    key = report.loaded[0]
    assert torch.equal(model.state_dict()[key], pretrained.state_dict()[key])


def test_offline_without_the_model_in_the_cache_says_so(hub: LocalHub, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"acme/missing@main is not in the local Hub cache.*HF_HUB_OFFLINE"):
        from_pretrained("acme/missing")
    push_to_hub(_task_model(0), "acme/gusts")
    with pytest.raises(FileNotFoundError, match=r"acme/gusts@v9 is not in the local Hub cache"):
        from_pretrained("acme/gusts", revision="v9")
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a local path stays a local path
        from_pretrained(tmp_path / "no" / "such" / "dir")
    with pytest.raises(ValueError, match="revision='v1' applies to Hub repositories"):
        from_pretrained(save_pretrained(_task_model(0), tmp_path / "local"), revision="v1")
    with pytest.raises(ValueError, match="repo_id must read 'org/name'"):
        push_to_hub(_task_model(0), "no-org")
    assert not hub.commits[1:], "a refused push uploaded something"


def test_the_cli_pushes_a_finetuned_model_with_its_metrics_and_exports_it_by_repo_id(
    hub: LocalHub, tmp_path: Path
) -> None:
    from mmsdk.cli import main
    from mmsdk.export.runtime import OnnxModel

    run = tmp_path / "run"
    save_pretrained(_task_model(0), run / "model")
    (run / "metrics.json").write_text('{"test/accuracy": 0.75}')  # as `mmsdk finetune` writes it beside the model
    main(["push", f"--model_dir={run / 'model'}", "--repo_id=acme/cli", "--data=Synthetic gusts."])
    (_, _, commit, files) = hub.commits[-1]
    card = (hub.folder("acme/cli") / "snapshots" / commit / "README.md").read_text()
    assert "metrics.json" in files and "| test/accuracy | 0.75 |" in card and "Synthetic gusts." in card
    main(["export", "--model_dir=acme/cli", f"--output={tmp_path / 'cli.onnx'}"])
    x = torch.randn(2, 32, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(OnnxModel(tmp_path / "cli.onnx")(x.numpy())), _task_model(0)(x), atol=1e-5, rtol=1e-5
        )


def test_the_model_card_describes_the_model_data_and_metrics(tmp_path: Path) -> None:
    folder = save_pretrained(_task_model(0), tmp_path / "m")
    card = model_card(folder, "acme/gusts", {"test/accuracy": 0.875, "test/loss": 0.31}, "Wind gauges, 2024.")
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "mmsdk" and {"patchtst", "mae", "classification"} <= set(front["tags"])
    for text in ("adapter `patchtst`", "width 16, 1 layers, 2 heads", "objective: `mae`", "calm, storm, gust",
                 "Wind gauges, 2024.", "| test/accuracy | 0.875 |", 'mmsdk.from_pretrained("acme/gusts")'):  # fmt: skip
        assert text in card, text
    assert "Not recorded." in model_card(folder, "acme/gusts")


def test_what_reads_as_a_repository_id(tmp_path: Path) -> None:
    assert is_repo_id("acme/gusts") and is_repo_id("Org-1/model.v2_final")
    assert not is_repo_id("runs/pretrain/model") and not is_repo_id("model") and not is_repo_id("../x")
    (tmp_path / "acme" / "gusts").mkdir(parents=True)
    assert not is_repo_id(tmp_path / "acme" / "gusts")  # an existing directory is a path
