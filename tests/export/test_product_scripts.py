"""The torch-free product scripts of `examples/product/` run on exported models with torch made unimportable.

One tiny model per family (a PatchTST forecaster, an AudioMAE and a Point-MAE classifier with labels, an RGB VideoMAE
embedding model), built from the adapter contract suite's tiny configs with random weights, is exported once per
module. Each script runs in a
subprocess whose `sitecustomize.py` makes `torch` and `lightning` raise ImportError on import, so a script (or
the runtime it imports) that pulls in torch fails. Outputs are parsed and checked against `OnnxModel` run here.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest
import soundfile
import support
import torch

from mmsdk.export.onnx import to_onnx
from mmsdk.export.runtime import OnnxModel
from mmsdk.models import EmbeddingModel, build_model, build_task_model

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "examples" / "product"
LABELS = ["dog", "cat", "bird"]
BLOCKER = textwrap.dedent(
    '''
    """Makes torch and lightning unimportable, as on a serving machine without them."""
    import importlib.abc
    import sys

    BLOCKED = ("torch", "lightning", "pytorch_lightning")


    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{name} is blocked in this test (no torch at serving time)", name=name)
            return None


    sys.meta_path.insert(0, _Block())
    '''
)


@dataclass
class Product:
    """The exported models, their input files and the environment that blocks torch."""

    root: Path
    env: dict[str, str]
    forecaster: Path
    sound: Path
    points: Path
    video: Path


def _export(contract: ModuleType, name: str, task: str, path: Path) -> Path:
    torch.manual_seed(0)
    if task == "embedding":
        config = contract._config(name)
        config["adapter_config"] = {**config["adapter_config"], "channels": 3}  # RGB frames from a video file
        model = EmbeddingModel(build_model(config).backbone).eval()
    else:
        head = {"task": task, "num_outputs": 3, **({"labels": LABELS} if task == "classification" else {})}
        model = build_task_model(contract._config(name), head).eval()
    return to_onnx(model, path, verify=False).path


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Product:
    root = tmp_path_factory.mktemp("product")
    contract = support.contract_suite()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny graphs: threads cost more than they give on a busy machine
    try:
        models = {
            "forecaster": _export(contract, "patchtst", "forecast", root / "forecaster.onnx"),
            "sound": _export(contract, "audiomae", "classification", root / "sound.onnx"),
            "points": _export(contract, "pointmae", "classification", root / "points.onnx"),
            "video": _export(contract, "videomae", "embedding", root / "video.onnx"),
        }
    finally:
        torch.set_num_threads(threads)
    blocker = root / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), *filter(None, [env.get("PYTHONPATH")])])
    return Product(root=root, env=env, **models)


def run(product: Product, script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPTS / script), *map(str, args)]
    return subprocess.run(command, env=product.env, capture_output=True, text=True, timeout=120, cwd=product.root)


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def ranked(stdout: str) -> list[tuple[str, float]]:
    """`name<TAB>probability` lines → pairs."""
    pairs = [line.split("\t") for line in stdout.strip().splitlines()]
    assert pairs and all(len(pair) == 2 for pair in pairs), stdout
    return [(name, float(value)) for name, value in pairs]


def test_the_blocker_makes_torch_unimportable(product: Product) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import torch"], env=product.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "blocked in this test" in result.stderr, result.stderr


def _series_csv(path: Path, rows: int) -> np.ndarray:
    """A CSV with a date column and two numeric columns (one empty cell); returns the numeric values (NaN)."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    values = np.stack([50 + 10 * np.sin(t / 3), 200 + 0.5 * t], axis=1) + rng.normal(size=(rows, 2))
    values[rows - 5, 1] = np.nan
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "load", "temp"])
        for i, (a, b) in enumerate(values):
            writer.writerow([f"2024-01-01T{i:04d}", repr(float(a)), "" if np.isnan(b) else repr(float(b))])
    return values


def _parse_forecast(text: str) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert [int(row[0]) for row in body] == list(range(1, len(body) + 1))
    return header, np.array([[float(v) for v in row[1:]] for row in body])


def test_forecast_csv_matches_the_runtime_without_torch(product: Product) -> None:
    runtime = OnnxModel(product.forecaster)
    context = runtime.metadata["config"]["modalities"]["patchtst"]["adapter_config"]["context_length"]
    data = product.root / "series.csv"
    values = _series_csv(data, context + 7)
    header, forecast = _parse_forecast(succeeded(run(product, "forecast_csv.py", product.forecaster, data)))
    assert header == ["step", "load", "temp"]
    expected = runtime(values[None, -context:].astype(np.float32))[0]  # raw values, NaN included: RevIN inside
    assert forecast.shape == expected.shape == (3, 2)
    np.testing.assert_allclose(forecast, expected, rtol=1e-6, atol=1e-6)

    out = product.root / "out" / "forecast.csv"
    mean, std = ["50", "200"], ["10", "20"]
    result = run(product, "forecast_csv.py", product.forecaster, data, "--output", out, "--mean", *mean, "--std", *std)
    succeeded(result)
    _, scaled = _parse_forecast(out.read_text())
    np.testing.assert_allclose(scaled, expected, rtol=1e-3, atol=1e-3)  # RevIN: the scaler changes (almost) nothing


def test_forecast_csv_refuses_another_kind_of_model(product: Product) -> None:
    data = product.root / "series.csv"
    _series_csv(data, 40)
    result = run(product, "forecast_csv.py", product.sound, data)
    assert result.returncode == 2 and "not a time-series forecaster" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_classify_sound_matches_the_runtime_without_torch(product: Product) -> None:
    runtime = OnnxModel(product.sound)
    rate = runtime.sample_rate
    assert rate is not None
    t = np.arange(rate) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    clip = product.root / "clip.wav"
    soundfile.write(clip, stereo, rate, subtype="FLOAT")
    best = ranked(succeeded(run(product, "classify_sound.py", product.sound, clip, "--top", "2")))
    logits = runtime(stereo.mean(axis=1)[None].astype(np.float32), sample_rate=rate)[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probabilities)[:2]
    assert [name for name, _ in best] == [LABELS[i] for i in order]
    np.testing.assert_allclose([p for _, p in best], probabilities[order], atol=2e-6)

    other = product.root / "clip_8k.wav"
    soundfile.write(other, stereo, rate // 2)
    result = run(product, "classify_sound.py", product.sound, other)
    assert result.returncode == 2 and f"trained on {rate} Hz" in result.stderr and "resample" in result.stderr


def _write_ascii_ply(path: Path, points: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", "comment test cloud", f"element vertex {len(points)}"]
    lines += [f"property double {axis}" for axis in "xyz"] + ["property uchar red", "end_header"]
    lines += [f"{x!r} {y!r} {z!r} 7" for x, y, z in points.tolist()]
    path.write_text("\n".join(lines) + "\n")


def test_classify_points_reads_each_format_and_normalizes_outside_the_graph(product: Product) -> None:
    rng = np.random.default_rng(3)
    cloud = rng.normal(size=(150, 3)) * np.array([1.0, 2.0, 0.5])
    ply, npy, moved = product.root / "cloud.ply", product.root / "cloud.npy", product.root / "moved.xyz"
    _write_ascii_ply(ply, cloud)
    np.save(npy, cloud)
    np.savetxt(moved, cloud * 40.0 + np.array([100.0, -3.0, 7.0]), header="x y z")  # other units and origin
    outputs = [ranked(succeeded(run(product, "classify_points.py", product.points, p))) for p in (ply, npy, moved)]
    assert {name for name, _ in outputs[0]} == set(LABELS) and abs(sum(p for _, p in outputs[0]) - 1) < 1e-5
    for other in outputs[1:]:
        assert [name for name, _ in other] == [name for name, _ in outputs[0]]
        np.testing.assert_allclose([p for _, p in other], [p for _, p in outputs[0]], atol=1e-5)


def _write_video(path: Path, frames: np.ndarray) -> np.ndarray:
    """Encodes (T, H, W, 3) uint8 frames as MPEG-4 and returns what PyAV decodes back (T, H, W, 3) uint8."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_embed_clip_samples_resizes_and_matches_the_runtime_without_torch(product: Product) -> None:
    runtime = OnnxModel(product.video)
    cfg = runtime.metadata["config"]["modalities"]["videomae"]["adapter_config"]
    t, (h, w) = cfg["num_frames"], cfg["frame_size"]
    rng = np.random.default_rng(5)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (2 * t, h, w, 3), dtype=np.uint8), 2, axis=1), 2, axis=2)
    clip, saved = product.root / "clip.mp4", product.root / "out" / "embedding.npy"
    decoded = _write_video(clip, frames)  # twice the frames at twice the size
    assert decoded.shape == (2 * t, 2 * h, 2 * w, 3)
    stdout = succeeded(run(product, "embed_clip.py", product.video, clip, "--output", saved))
    lines = dict(line.split("\t") for line in stdout.splitlines())
    # segment centres pick every other frame from the second; nearest resizing every other pixel from the second
    expected_input = decoded[1::2, 1::2, 1::2].astype(np.float32).transpose(0, 3, 1, 2)[None] / 255.0
    expected = runtime(expected_input)[0]
    np.testing.assert_allclose(np.load(saved), expected, rtol=1e-6, atol=1e-6)
    assert lines["shape"] == str(expected.shape[0])
    assert float(lines["norm"]) == pytest.approx(float(np.linalg.norm(expected)), rel=1e-5)


@pytest.mark.parametrize(
    ("script", "model", "data"),
    [
        ("forecast_csv.py", "forecaster", "missing.csv"),
        ("classify_sound.py", "sound", "missing.wav"),
        ("classify_points.py", "points", "missing.ply"),
        ("embed_clip.py", "video", "missing.mp4"),
    ],
)
def test_a_missing_input_file_is_a_clear_error(product: Product, script: str, model: str, data: str) -> None:
    result = run(product, script, getattr(product, model), product.root / data)
    assert result.returncode == 2, result.stderr
    assert "error: no" in result.stderr and data in result.stderr and "Traceback" not in result.stderr
