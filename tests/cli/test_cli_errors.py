"""The command line as a careless or hostile user meets it: one-line errors naming the field or file (exit 2),
`--verbose` for the traceback, recipes that cannot import code, and checkpoints under the job's output_dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from mmsdk.cli import main
from mmsdk.cli.errors import one_line

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "examples" / "recipes" / "timeseries" / "patchtst_pretrain.yaml"
TINY = [
    "--model.adapter_config.context_length=96",
    "--model.encoder.dim=16",
    "--model.encoder.depth=1",
    "--model.encoder.heads=2",
    "--data.batch_size=16",
    "--data.stride=64",
    "--trainer.max_steps=2",
    "--trainer.logger=none",
    "--trainer.progress_bar=false",
]


def _fail(args: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mmsdk: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("--data.batch_size=abc", "batch_size"),
        ("--trainer.accelerator=tpu", "trainer.accelerator"),
        ("--trainer.devices=0", "TrainerConfig.devices"),
        ("--model.encoder.dim=16.5", "model.encoder.dim"),
        ("--trainer.max_stepz=3", "max_stepz"),
    ],
)
def test_a_user_error_is_one_line_naming_the_field(
    override: str, names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _fail(["pretrain", "--config", str(RECIPE), override], capsys)
    assert names in line
    assert "Union subtypes" not in line and "NoneType" not in line


def test_verbose_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--config", str(RECIPE), "--trainer.devices=0", "--verbose"])
    assert "Traceback" in capsys.readouterr().err


def test_a_missing_recipe_and_a_missing_checkpoint_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert str(tmp_path / "nope.yaml") in _fail(["pretrain", "--config", str(tmp_path / "nope.yaml")], capsys)
    missing = tmp_path / "gone.ckpt"
    line = _fail(
        ["pretrain", "--config", str(RECIPE), *TINY, f"--output_dir={tmp_path}", f"--resume={missing}"], capsys
    )
    assert str(missing) in line


def test_a_garbage_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    line = _fail(["pretrain", "--config", str(RECIPE), *TINY, f"--output_dir={tmp_path}", f"--resume={bad}"], capsys)
    assert "bad.ckpt" in line and "KeyError" not in line


def _evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    marker = tmp_path / "imported.txt"
    (tmp_path / "evilmod.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\nclass X:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def test_a_class_path_recipe_is_refused_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = _evil_module(tmp_path, monkeypatch)
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["trainer"] = {"class_path": "evilmod.X", "init_args": {}}
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(recipe))
    line = _fail(["pretrain", "--config", str(path)], capsys)
    assert "evil.yaml" in line and "trainer.class_path" in line
    data = yaml.safe_load(RECIPE.read_text())
    data["data"]["transform"] = {"class_path": "evilmod.X"}  # inside a free-form section too
    path.write_text(yaml.safe_dump(data))
    assert "data.transform.class_path" in _fail(["pretrain", "--config", str(path)], capsys)
    assert not marker.exists() and "evilmod" not in sys.modules


def test_a_class_path_on_the_command_line_is_refused_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = _evil_module(tmp_path, monkeypatch)
    for args in (
        ['--trainer={"class_path": "evilmod.X"}'],
        ["--trainer", '{"class_path": "evilmod.X"}'],
        ["--trainer.class_path=evilmod.X"],
    ):
        assert "class_path" in _fail(["pretrain", "--config", str(RECIPE), *args], capsys)
    assert not marker.exists() and "evilmod" not in sys.modules


def test_one_line_reduces_a_nested_parser_message() -> None:
    message = (
        'Parser key "trainer":\n  Does not validate against any of the Union subtypes\n  Subtypes: [A, NoneType]\n'
        "  Errors:\n    - Problem with given class_path 'mmsdk.TrainerConfig':\n"
        '        Parser key "accelerator":\n          Expected a Literal. Got value: tpu\n'
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'X'>"
    )
    assert one_line(ValueError(message)) == "trainer.accelerator: Expected a Literal. Got value: tpu"


@pytest.mark.slow
def test_checkpoints_go_under_the_output_dir_of_a_recipe_without_a_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = yaml.safe_load(RECIPE.read_text())
    del recipe["trainer"]["default_root_dir"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "job"
    every = "--trainer.checkpoint_every_n_steps=1"
    main(["pretrain", "--config", str(path), *TINY, f"--output_dir={out}", every])
    assert (out / "checkpoints" / "pretrain" / "last.ckpt").is_file()
    assert not (tmp_path / "runs").exists()
    main(
        [
            "pretrain",
            "--config",
            str(path),
            *TINY,
            f"--output_dir={out}",
            f"--resume={out}",
            every,
            "--trainer.max_steps=3",
        ]
    )
    names = sorted(p.name for p in (out / "checkpoints" / "pretrain").glob("*.ckpt"))
    assert names == ["last.ckpt", "step=2.ckpt", "step=3.ckpt"], names
