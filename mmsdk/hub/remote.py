"""Models on the Hugging Face Hub: `push_to_hub` uploads a saved model with a generated model card, and
`from_pretrained("org/name")` downloads one into the local Hub cache, pinned to a revision if asked, offline with
`HF_HUB_OFFLINE=1` (then only the cache is read).

A repository holds exactly what `save_pretrained` writes (`config.json` + `model.safetensors`, never a pickle), a
`README.md` model card, and `metrics.json` when metrics are given. Everything goes through `huggingface_hub`
(`HfApi.upload_folder`, `snapshot_download`), so its cache (`HF_HUB_CACHE`, `HF_HOME`), token and endpoint settings
apply unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from mmsdk.hub.format import CONFIG_NAME, WEIGHTS_NAME, read_saved
from mmsdk.hub.integrity import atomic_write_text
from mmsdk.hub.save import kind_of, save_pretrained, unwrap

__all__ = ["CARD_NAME", "METRICS_NAME", "is_repo_id", "model_card", "push_to_hub", "resolve_pretrained"]

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: str | Path) -> bool:
    """Whether `name` reads as a Hub repository id ("org/name") rather than a local path (an existing path wins)."""
    text = str(name)
    return bool(_REPO_ID.match(text)) and not Path(text).exists() and ".." not in text


def _hub() -> Any:
    """The huggingface_hub module, or an error saying how to install it."""
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError("models on the Hugging Face Hub need huggingface_hub: pip install 'mmsdk[hub]'") from err
    return huggingface_hub


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_pretrained(name: str | Path, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local directory of a pretrained model: `name` itself if it is a directory, else the snapshot of the Hub
    repository `name` at `revision` (a branch, tag or commit; None: main), downloaded into the cache if needed.

    Raises:
        FileNotFoundError: for a repository or revision that is neither reachable nor in the cache (the message says
            which, and whether the Hub was offline). A local path is returned as it is; reading it reports a
            missing directory.
        ValueError: for a `revision` with a local path.
    """
    if not is_repo_id(name):
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub repositories; {str(name)!r} is a local path")
        return Path(name)
    snapshot_download = _hub().snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{name}@{revision or 'main'}"
    offline = _offline()
    try:
        folder = snapshot_download(
            str(name),
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, METRICS_NAME],
            local_files_only=offline,
        )
    except RevisionNotFoundError as err:
        raise FileNotFoundError(f"Hub repository {name!r} has no revision {revision!r}") from err
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"no local directory {str(name)!r}, and no Hub repository of that name (or it is private: log in or "
            "pass a token)"
        ) from err
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        state = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
        raise FileNotFoundError(
            f"no local directory {str(name)!r}, and Hub repository {where} is not in the local Hub cache while "
            f"{state}; download it once online (the cache is reused afterwards)"
        ) from err
    logger.info("%s resolved to %s", where, folder)
    return Path(folder)


def _modalities(config: Any) -> list[tuple[str, str]]:
    return [(name, modality.adapter) for name, modality in config.modalities.items()]


def model_card(
    directory: str | Path,
    repo_id: str,
    metrics: Mapping[str, float] | None = None,
    data: str | None = None,
) -> str:
    """The Markdown model card of a saved model: YAML front matter (library, tags), what the model is (kind,
    modalities and their adapters, encoder, objective, head), the training data, the metrics and how to load it."""
    from mmsdk import __version__

    saved = read_saved(directory)
    model = saved.model
    adapters = _modalities(model)
    tags = ["mmsdk", "masked-modeling", model.objective, *sorted({adapter for _, adapter in adapters})]
    if saved.head is not None:
        tags.append(saved.head.task)
    lines = ["---", "library_name: mmsdk", "tags:", *(f"- {tag}" for tag in tags), "---", "", f"# {repo_id}", ""]
    what = {"pretrain": "a pretrained model", "task": "a task model", "embedding": "an embedding model"}[saved.kind]
    lines += [f"An mmsdk {what} (format {saved.version}, written by mmsdk {__version__}).", "", "## Model", ""]
    lines += [f"- modality `{name}`: adapter `{adapter}`" for name, adapter in adapters]
    enc = model.encoder
    lines += [f"- encoder: width {enc.dim}, {enc.depth} layers, {enc.heads} heads", f"- objective: `{model.objective}`"]
    if saved.head is not None:
        head = saved.head
        lines.append(f"- head: `{head.task}`, {head.num_outputs} outputs")
        if head.labels:
            lines.append(f"- labels: {', '.join(head.labels)}")
        if head.quantiles:
            lines.append(f"- quantiles: {', '.join(str(q) for q in head.quantiles)}")
    lines += ["", "## Training data", "", data.strip() if data else "Not recorded.", "", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "| --- | ---: |"]
        lines += [f"| {key} | {float(value):.6g} |" for key, value in sorted(metrics.items())]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Use", "", "```python", "import mmsdk", "", f'model = mmsdk.from_pretrained("{repo_id}")', "```"]
    return "\n".join(lines) + "\n"


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    revision: str | None = None,
    metrics: Mapping[str, float] | None = None,
    data: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Uploads a model (as `save_pretrained` writes it), its model card and metrics to a Hub repository.

    Args:
        model: any model `save_pretrained` takes.
        repo_id: "org/name"; created if it does not exist.
        revision: the branch to commit to (created from main if new); None: main.
        metrics: figures for the card and `metrics.json` (e.g. `FinetuneResult.metrics`).
        data: a description of the training data for the card.
        private: visibility of a repository this call creates.
        token: a Hub token (None: the logged-in one, `HF_TOKEN`).
        commit_message: None: "Upload mmsdk <kind> model".

    Returns:
        The commit's id: pass it as `revision` to `from_pretrained` to pin exactly this upload.

    Raises:
        ValueError: for a repository id that is not "org/name", or weights that are not finite (nothing uploaded).
    """
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"push_to_hub: repo_id must read 'org/name', got {repo_id!r}")
    api = _hub().HfApi(token=token)
    kind = kind_of(unwrap(model))
    with tempfile.TemporaryDirectory(prefix="mmsdk-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "model")
        atomic_write_text(folder / CARD_NAME, model_card(folder, repo_id, metrics, data))
        if metrics:
            atomic_write_text(folder / METRICS_NAME, json.dumps(dict(metrics), indent=2, default=float) + "\n")
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            commit_message=commit_message or f"Upload mmsdk {kind} model",
        )
    logger.info("pushed %s model to %s (commit %s)", kind, repo_id, info.oid)
    return info.oid
