"""The command line as a user meets it: help, choices from the registries, errors, a full run."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from dstcli.apps import APPS
from dstcli.cli.main import app
from dstcli.schedulers import SCHEDULERS

runner = CliRunner()


def test_start_up_imports_no_torch():
    code = "import sys, dstcli.cli.main; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_help_lists_the_built_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("prepare", "train", "eval"):
        assert command in result.output


def test_choices_come_from_the_registries():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in SCHEDULERS.names() + APPS.names():
        assert name in result.output
    prepare = runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"})
    for name in APPS.names():
        assert name in prepare.output


def test_prepare_train_eval(glyph_zip, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    prepared = runner.invoke(app, ["prepare", "omniglot", "--raw", str(glyph_zip), "--out",
                                   str(data), "--preset", "cpu-tiny"])
    assert prepared.exit_code == 0, prepared.output
    assert "3 tasks" in prepared.output

    trained = runner.invoke(app, ["train", "--data", str(data), "--out", str(run),
                                  "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                                  "--loss-norm", "initial", "--branch", "Alpha=7"])
    assert trained.exit_code == 0, trained.output
    config = json.loads((run / "config.json").read_text())
    assert config["app"] == "omniglot" and config["preset"] == "cpu-tiny"
    assert config["scheduler_options"] == {"loss_norm": "initial"}
    assert config["lr"] == 5e-5  # the paper's rate by default
    assert config["branch"] == ["Alpha=7"] and config["encoder_norm"] == "batch"

    evaluated = runner.invoke(app, ["eval", str(run)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "average error" in evaluated.output and (run / "metrics.json").exists()


def test_resume_refuses_a_changed_config(omniglot_tiny, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(omniglot_tiny), "--out", str(run), "--epochs", "1",
            "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0

    changed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3",
                                  "--lr", "0.1"])
    assert changed.exit_code == 1
    assert "--epochs 3 differs" in changed.output and "--lr 0.1 differs" in changed.output
    same = runner.invoke(app, ["train", "--resume", str(run)])
    assert same.exit_code == 0, same.output


def test_bad_flags_get_clear_errors(omniglot_tiny, tmp_path):
    unknown = runner.invoke(app, ["train", "--scheduler", "nope", "--data", str(omniglot_tiny),
                                  "--out", str(tmp_path / "r")])
    assert unknown.exit_code == 2 and "nope" in unknown.output

    missing = runner.invoke(app, ["train", "--data", str(tmp_path / "absent"), "--out",
                                  str(tmp_path / "r")])
    assert missing.exit_code == 1 and "--data" in missing.output

    foreign = runner.invoke(app, ["train", "--scheduler", "stl", "--loss-norm", "initial",
                                  "--data", str(omniglot_tiny), "--out", str(tmp_path / "r")])
    assert foreign.exit_code == 1
    assert "--loss-norm is not an option of scheduler stl" in foreign.output

    wrong = runner.invoke(app, ["train", "--loss-norm", "sometimes", "--data",
                                str(omniglot_tiny), "--out", str(tmp_path / "r")])
    assert wrong.exit_code == 1 and "--loss-norm 'sometimes'" in wrong.output

    eval_missing = runner.invoke(app, ["eval", str(tmp_path / "no-run")])
    assert eval_missing.exit_code == 1 and "config.json not found" in eval_missing.output
