"""The `mmsdk` CLI and the shipped recipes and examples, smoke-run with tiny overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import support
import torch

from mmsdk.cli import main
from mmsdk.export.runtime import OnnxModel
from mmsdk.hub import from_pretrained

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "examples" / "recipes"
TINY = support.PATCHTST_TINY

POINT_TINY = [  # point-cloud recipes: a tiny Point-MAE on a few bundled shapes
    "--model.adapter_config.num_points=128",
    "--model.adapter_config.num_groups=16",
    "--model.adapter_config.group_size=8",
    "--model.adapter_config.embed_hidden=16",
    "--model.adapter_config.embed_local=16",
    "--model.adapter_config.embed_global=32",
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--model.decoder.dim=16",
    "--model.decoder.depth=1",
    "--model.decoder.heads=2",
    "--data.num_per_class=3",
    "--data.batch_size=8",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]


def test_every_recipe_parses() -> None:
    recipes = sorted(RECIPES.rglob("*.yaml"))
    assert recipes, "no recipes shipped"
    for recipe in recipes:
        command = "finetune" if "head:" in recipe.read_text() else "pretrain"
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--config", str(recipe), "--print_config"])
        assert exit_info.value.code == 0, recipe


def test_pretrain_finetune_export_from_recipes(tmp_path: Path) -> None:
    pre_dir, ft_dir = tmp_path / "pre", tmp_path / "ft"
    main(
        [
            "pretrain",
            "--config",
            str(RECIPES / "timeseries/patchtst_pretrain.yaml"),
            *TINY,
            f"--output_dir={pre_dir}",
            "--plot_every_n_steps=1",
            f"--trainer.default_root_dir={pre_dir}",
        ]
    )
    assert (pre_dir / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in (pre_dir / "plots").iterdir()) == [
        "reconstruction_step000001.png",
        "reconstruction_step000002.png",
    ]
    main(
        [
            "finetune",
            "--config",
            str(RECIPES / "timeseries/patchtst_finetune.yaml"),
            *TINY,
            f"--pretrained={pre_dir / 'model'}",
            f"--output_dir={ft_dir}",
            f"--trainer.default_root_dir={ft_dir}",
            "--head.num_outputs=96",
        ]
    )
    metrics = json.loads((ft_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test/mse"])
    onnx_path = tmp_path / "forecaster.onnx"
    main(["export", f"--model_dir={ft_dir / 'model'}", f"--output={onnx_path}"])
    runtime = OnnxModel(onnx_path)
    x = np.random.default_rng(0).standard_normal((2, 96, 7)).astype(np.float32)
    model = from_pretrained(ft_dir / "model")

    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runtime(x), expected, atol=1e-4)


def test_only_the_first_rank_of_a_distributed_run_writes_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank of a multi-node run returns from training with the same weights; only global rank 0 writes them
    (ranks on one shared filesystem would otherwise race on `output_dir/model`)."""
    import lightning as L

    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))  # as rank 1 sees it
    for command, recipe in (("pretrain", "patchtst_pretrain.yaml"), ("finetune", "patchtst_finetune.yaml")):
        out = tmp_path / command
        args = [command, "--config", str(RECIPES / "timeseries" / recipe), *TINY, f"--output_dir={out}"]
        main(args + ([] if command == "pretrain" else ["--head.num_outputs=96", "--pretrained=null"]))
        assert not (out / "model").exists() and not (out / "metrics.json").exists(), command


def test_quantile_recipe_trains_exports_and_serves_named_outputs(tmp_path: Path) -> None:
    """A PatchTST with a quantile head from its recipe: pinball and coverage in the test metrics, two named ONNX
    outputs whose levels the runtime reads from the model's metadata."""
    out = tmp_path / "quantiles"
    main(["finetune", "--config", str(RECIPES / "timeseries/patchtst_quantiles.yaml"), *TINY, "--head.num_outputs=96",
          f"--output_dir={out}", f"--trainer.default_root_dir={out}"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test/pinball"]) and 0.0 <= metrics["test/coverage"] <= 1.0
    main(["export", f"--model_dir={out / 'model'}", f"--output={tmp_path / 'q.onnx'}"])
    runtime = OnnxModel(tmp_path / "q.onnx")
    assert runtime.output_names == ["forecast", "quantiles"]
    assert runtime.quantile_levels == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    x = np.random.default_rng(0).standard_normal((2, 96, 7)).astype(np.float32)
    outputs = runtime.run({"series": x})
    assert outputs["forecast"].shape == (2, 96, 7) and outputs["quantiles"].shape == (2, 96, 7, 9)
    assert (np.diff(outputs["quantiles"], axis=-1) >= 0).all()


def test_supervised_recipe_runs_the_paper_protocol(tmp_path: Path) -> None:
    """PatchTST/42 from scratch with the per-epoch decay, best-epoch selection and early stopping of its recipe."""
    out = tmp_path / "supervised"
    epochs = ["--trainer.max_steps=-1", "--trainer.max_epochs=2", "--trainer.early_stopping_patience=1"]
    main(["finetune", "--config", str(RECIPES / "timeseries/patchtst_supervised.yaml"), *TINY, *epochs,
          f"--output_dir={out}", f"--trainer.default_root_dir={out}"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test/mse"]) and (out / "model" / "model.safetensors").is_file()


def test_pointcloud_recipes(tmp_path: Path) -> None:
    pre_dir = tmp_path / "pre"
    recipes = RECIPES / "pointcloud"
    main(
        [
            "pretrain",
            "--config",
            str(recipes / "pointmae_pretrain.yaml"),
            *POINT_TINY,
            f"--output_dir={pre_dir}",
            "--plot_every_n_steps=2",
            f"--trainer.default_root_dir={pre_dir}",
        ]
    )
    assert (pre_dir / "model" / "model.safetensors").is_file()
    assert [p.name for p in (pre_dir / "plots").iterdir()] == ["reconstruction_step000002.png"]
    assert (pre_dir / "plots" / "reconstruction_step000002.png").read_bytes()[:4] == b"\x89PNG"
    for recipe in ("pointmae_finetune.yaml", "pointmae_linear_probe.yaml"):
        out = tmp_path / recipe.removesuffix(".yaml")
        main(
            [
                "finetune",
                "--config",
                str(recipes / recipe),
                *POINT_TINY,
                "--model.adapter_config.cls_hidden=16",
                f"--pretrained={pre_dir / 'model'}",
                f"--output_dir={out}",
                f"--trainer.default_root_dir={out}",
            ]
        )
        metrics = json.loads((out / "metrics.json").read_text())
        assert 0.0 <= metrics["test/acc"] <= 1.0 and np.isfinite(metrics["test/loss"]), recipe
        assert (out / "model" / "model.safetensors").is_file()


def test_unknown_recipe_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--config", str(RECIPES / "timeseries/patchtst_pretrain.yaml"), "--trainer.max_stepz=3"])
    assert exit_info.value.code != 0
    assert "max_stepz" in capsys.readouterr().err


def test_bad_field_value_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--config", str(RECIPES / "timeseries/patchtst_pretrain.yaml"), "--masking.ratio=1.5"])
    assert exit_info.value.code == 2
    assert "MaskingConfig.ratio: must be in (0, 1), got 1.5" in capsys.readouterr().err


def test_missing_data_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "pretrain",
                "--config",
                str(RECIPES / "timeseries/patchtst_pretrain.yaml"),
                *TINY,
                f"--data.path={tmp_path / 'nope.csv'}",
                f"--output_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    assert "nope.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_python_api_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py"), "--steps", "3", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ONNX verified" in result.stdout
    assert (tmp_path / "forecaster.onnx").is_file()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    summary = main(
        ["demo", f"--output_dir={tmp_path}", "--pretrain_steps=2", "--finetune_steps=2", "--progress_bar=false"]
    )
    assert summary is None or isinstance(summary, dict)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert set(written["test_metrics"]) == {"mmsdk_patchtst", "naive_last_value", "seasonal_naive_24h"}
    assert written["onnx"]["demo_batch_max_abs_error"] < 1e-4
    for png in ("forecast.png", "reconstruction.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_demo_of_an_unknown_modality_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--modality=holograms", "--progress_bar=false"])
    assert exit_info.value.code == 2
    known = "['audio', 'multimodal', 'pointcloud', 'timeseries', 'video']"
    assert f"unknown demo 'holograms'; known: {known}" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_own_csv_example_runs(tmp_path: Path) -> None:
    script = ROOT / "examples" / "finetune_own_csv.py"
    args = ["--steps", "3", "--context", "48", "--horizon", "12", "--output", str(tmp_path)]
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(np.isfinite(m["mse"]) for m in metrics.values()), metrics
    assert (tmp_path / "forecaster.onnx").is_file() and (tmp_path / "forecast.png").is_file()


@pytest.mark.slow
def test_moirai_corpus_pretrain_probe_finetune_recipes(tmp_path: Path) -> None:
    """Packed pretraining on a tiny synthetic corpus, then a linear probe and LP-FT on ETTh1, all from the recipes."""
    tiny = [
        "--model.adapter_config.context_length=128",
        "--model.encoder.dim=16",
        "--model.encoder.depth=1",
        "--model.encoder.heads=2",
        "--trainer.max_steps=2",
        "--trainer.logger=none",
        "--trainer.progress_bar=false",
    ]
    pre_dir = tmp_path / "pre"
    main(
        [
            "pretrain",
            "--config",
            str(RECIPES / "timeseries/moirai_pretrain_corpus.yaml"),
            *tiny,
            "--data.corpus.statsmodels=[]",
            "--data.corpus.synthetic_series=8",
            "--data.corpus.synthetic_length=256",
            "--data.corpus.synthetic_min_length=128",
            "--data.max_tokens=128",
            "--data.batch_size=4",
            f"--output_dir={pre_dir}",
            f"--trainer.default_root_dir={pre_dir}",
        ]
    )
    assert (pre_dir / "model" / "model.safetensors").is_file()
    start = pre_dir
    for recipe in ("moirai_linear_probe", "moirai_finetune"):  # LP-FT: the fine-tuning starts from the probe
        out = tmp_path / recipe
        main(
            [
                "finetune",
                "--config",
                str(RECIPES / f"timeseries/{recipe}.yaml"),
                *tiny,
                "--data.batch_size=16",
                "--data.stride=256",
                "--head.num_outputs=96",
                f"--pretrained={start / 'model'}",
                f"--output_dir={out}",
                f"--trainer.default_root_dir={out}",
            ]
        )
        metrics = json.loads((out / "metrics.json").read_text())
        assert np.isfinite(metrics["test/mse"]) and np.isfinite(metrics["test/mae"])
        start = out
    pretrained, probe = from_pretrained(pre_dir / "model"), from_pretrained(tmp_path / "moirai_linear_probe" / "model")
    encoder = {k: v for k, v in pretrained.state_dict().items() if k.startswith("backbone.encoder.")}
    assert encoder and all(torch.equal(probe.state_dict()[k], v) for k, v in encoder.items())  # frozen
    mixture = "backbone.adapters.moirai.distribution_heads.32.logits.weight"  # the probe trains the mixture head
    assert not torch.equal(probe.state_dict()[mixture], pretrained.state_dict()[mixture])


def test_timerxl_pretrain_probe_finetune_recipes(tmp_path: Path) -> None:
    """Causal pretraining, a linear probe of the rollout head, then LP-FT, all from the recipes."""
    tiny = [*TINY, "--model.adapter_config.patch_len=16", "--data.horizon=24", "--head.num_outputs=24"]
    main(
        [
            "pretrain",
            "--config",
            str(RECIPES / "timeseries/timerxl_pretrain.yaml"),
            *tiny[:-1],
            f"--output_dir={tmp_path / 'pre'}",
            f"--trainer.default_root_dir={tmp_path / 'pre'}",
        ]
    )
    start = tmp_path / "pre"
    for recipe in ("timerxl_linear_probe", "timerxl_finetune"):
        out = tmp_path / recipe
        main(
            [
                "finetune",
                "--config",
                str(RECIPES / f"timeseries/{recipe}.yaml"),
                *tiny,
                f"--pretrained={start / 'model'}",
                f"--output_dir={out}",
                f"--trainer.default_root_dir={out}",
            ]
        )
        assert np.isfinite(json.loads((out / "metrics.json").read_text())["test/mse"])
        start = out
    pretrained = from_pretrained(tmp_path / "pre" / "model").state_dict()
    probe = from_pretrained(tmp_path / "timerxl_linear_probe" / "model").state_dict()
    backbone = [k for k in pretrained if k.startswith("backbone.")]
    assert backbone and all(torch.equal(probe[k], pretrained[k]) for k in backbone)  # the probe froze it


@pytest.fixture(scope="module")
def tiny_forecaster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A saved 24-step ETTh1 forecaster (untrained, tiny) and a calibration recipe whose `data:` reads ETTh1."""
    from mmsdk.hub import save_pretrained
    from mmsdk.models import build_task_model

    root = tmp_path_factory.mktemp("precision")
    config = {
        "adapter": "patchtst",
        "adapter_config": {"context_length": 96, "num_channels": 7, "patch_len": 16, "stride": 8},
        "encoder": {"dim": 16, "depth": 1, "heads": 2},
        "objective": "bert",
    }
    torch.manual_seed(0)
    save_pretrained(build_task_model(config, {"task": "forecast", "num_outputs": 24}), root / "model")
    recipe = root / "calibration.yaml"
    recipe.write_text("data:\n  split: ett\n  horizon: 24\n  stride: 64\n  batch_size: 8\n")
    return root / "model", recipe


def _precision_of(path: Path) -> str | None:
    import onnx

    return {p.key: p.value for p in onnx.load(path).metadata_props}.get("mmsdk.precision")


def test_export_int8_calibrated_on_recipe_data_writes_the_file_and_its_report(
    tiny_forecaster: tuple[Path, Path], tmp_path: Path
) -> None:
    model_dir, recipe = tiny_forecaster
    output = tmp_path / "forecaster.onnx"
    args = [f"--model_dir={model_dir}", f"--output={output}", "--precision=int8", f"--calibration_data={recipe}"]
    main(["export", *args, "--quantization=static", "--calibration_batches=3", "--max_metric_change=1.0"])
    assert _precision_of(output) == "int8-static"
    reference = tmp_path / "forecaster.fp32.onnx"
    assert _precision_of(reference) is None  # the float32 reference is kept as exported
    x = np.random.default_rng(0).standard_normal((2, 96, 7)).astype(np.float32)
    np.testing.assert_allclose(OnnxModel(output)(x), OnnxModel(reference)(x), atol=0.5)
    report = json.loads((tmp_path / "forecaster.onnx.precision.json").read_text())
    assert report["metric"] == "mse" and report["precision"] == "int8-static" and report["samples"] == 64
    assert report["max_metric_change"] == 1.0 and report["converted_bytes"] < report["reference_bytes"]


def test_export_fp16_and_unchanged_fp32(tiny_forecaster: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = tiny_forecaster
    fp16 = tmp_path / "half.onnx"
    stale = tmp_path / "half.onnx.precision.json"
    stale.write_text("{}")  # a report of an earlier conversion must not describe the new file
    main(["export", f"--model_dir={model_dir}", f"--output={fp16}", "--precision=fp16", "--verify=false"])
    assert _precision_of(fp16) == "fp16" and not stale.exists()
    x = np.random.default_rng(1).standard_normal((3, 96, 7)).astype(np.float32)
    np.testing.assert_allclose(OnnxModel(fp16)(x), OnnxModel(tmp_path / "half.fp32.onnx")(x), atol=1e-2)
    main(["export", f"--model_dir={model_dir}", f"--output={tmp_path / 'plain.onnx'}", "--verify=false"])
    assert sorted(p.name for p in tmp_path.glob("plain*")) == ["plain.onnx"]  # fp32: no side file, no report


def test_int8_is_dynamic_unless_static_is_asked_for() -> None:
    from mmsdk.cli.precision import PrecisionPlan

    assert PrecisionPlan.resolve("int8", None, "data.yaml", 16, None).quantization == "dynamic"
    assert PrecisionPlan.resolve("int8", None, None, 16, None).quantization == "dynamic"
    assert PrecisionPlan.resolve("int8", "static", "data.yaml", 16, None).quantization == "static"
    assert PrecisionPlan.resolve("fp16", None, None, 16, None).quantization is None


def test_export_optimize_fuses_and_verifies(tiny_forecaster: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = tiny_forecaster
    fused, plain = tmp_path / "fused.onnx", tmp_path / "plain.onnx"
    main(["export", f"--model_dir={model_dir}", f"--output={fused}", "--optimize=onnxruntime"])  # verified
    main(["export", f"--model_dir={model_dir}", f"--output={plain}", "--verify=false"])
    assert len(onnx.load(str(fused)).graph.node) < len(onnx.load(str(plain)).graph.node)
    x = np.random.default_rng(2).standard_normal((2, 96, 7)).astype(np.float32)
    np.testing.assert_allclose(OnnxModel(fused)(x), OnnxModel(plain)(x), atol=1e-5)


def test_export_precision_bound_failure_is_one_line_exit_2(
    tiny_forecaster: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, recipe = tiny_forecaster
    output = tmp_path / "embedding.onnx"
    args = ["--embedding=true", "--precision=int8", "--quantization=dynamic", "--max_metric_change=0"]
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"--model_dir={model_dir}", f"--output={output}", f"--calibration_data={recipe}", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmsdk: error: embedding.onnx: max_abs change ")
    assert "exceeds max_metric_change 0" in err[0]
    assert json.loads((tmp_path / "embedding.onnx.precision.json").read_text())["precision"] == "int8-dynamic"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--precision=int4"], "precision"),
        (["--precision=int8", "--quantization=static"], "static quantization needs calibration data"),
        (["--precision=fp16", "--quantization=static"], "--quantization applies to --precision int8 only"),
        (["--max_metric_change=0.1"], "apply to --precision fp16 or int8 only"),
        (["--precision=fp16", "--max_metric_change=0.1"], "--max_metric_change needs --calibration_data"),
        (["--precision=int8", "--calibration_data=nope.yaml"], "calibration_data: no recipe at nope.yaml"),
        (["--precision=int8", "--calibration_batches=0"], "calibration_batches must be >= 1, got 0"),
    ],
    ids=[
        "bad-precision",
        "static-without-data",
        "quantization-with-fp16",
        "bound-with-fp32",
        "bound-without-data",
        "missing-recipe",
        "no-batches",
    ],
)
def test_export_precision_options_are_checked(
    options: list[str],
    message: str,
    tiny_forecaster: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir, _ = tiny_forecaster
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"--model_dir={model_dir}", f"--output={tmp_path / 'x.onnx'}", "--verify=false", *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_export_calibration_recipe_is_checked_for_import_paths(
    tiny_forecaster: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "evil.yaml"
    recipe.write_text("data:\n  class_path: os.system\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"--model_dir={tiny_forecaster[0]}", "--output=x.onnx", f"--calibration_data={recipe}"])
    assert exit_info.value.code == 2 and "data.class_path" in capsys.readouterr().err
    assert not Path("x.onnx").exists()


def test_covariate_recipe_trains_exports_and_serves_three_inputs(tmp_path: Path) -> None:
    """ETTh1's OT with six past load covariates and four calendar features, from the recipe to the runtime."""
    out = tmp_path / "cov"
    tiny = [*TINY[:-3], "--model.adapter_config.context_length=128", "--data.horizon=24", "--head.num_outputs=24"]
    main(["finetune", "--config", str(RECIPES / "timeseries/moirai_covariates.yaml"), *tiny, *TINY[-3:],
          f"--output_dir={out}", f"--trainer.default_root_dir={out}"])  # fmt: skip
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["test/mse"])
    main(["export", f"--model_dir={out / 'model'}", f"--output={tmp_path / 'cov.onnx'}"])
    runtime = OnnxModel(tmp_path / "cov.onnx")
    assert runtime.input_names == ["series", "past_covariates", "known_covariates"]
    rng = np.random.default_rng(0)
    feed = {"series": rng.normal(size=(2, 128, 1)), "past_covariates": rng.normal(size=(2, 128, 6)),
            "known_covariates": rng.normal(size=(2, 128 + 24, 4))}  # fmt: skip
    forecast = runtime.run({name: value.astype(np.float32) for name, value in feed.items()})["outputs"]
    assert forecast.shape == (2, 24, 1) and np.isfinite(forecast).all()
