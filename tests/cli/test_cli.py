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


def test_a_shared_flag_says_what_each_method_needs():
    from dstcli.cli.train import scheduler_flags

    flags = scheduler_flags()
    text = flags["stl_results"]["help"]
    assert "adaptive: " in text and "early-stop: " in text
    assert "epochs.csv" in text.split("early-stop: ")[1]
    # Every method of a shared flag whose help differs from the others' is named in it.
    for info in flags.values():
        if len(set(info["helps"].values())) > 1:
            assert all(f"{m}: " in info["help"] or f"{m}, " in info["help"]
                       for m in info["methods"])

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert "early-stop:" in result.output


def test_a_named_variant_refuses_a_contradicting_flag(omniglot_tiny, tmp_path):
    args = ["train", "--data", str(omniglot_tiny), "--out", str(tmp_path / "r"),
            "--scheduler", "gradnorm-1.5"]
    contradicting = runner.invoke(app, args + ["--alpha", "0.5"])
    assert contradicting.exit_code == 1
    assert "--alpha 0.5" in contradicting.output and "gradnorm-1.5" in contradicting.output
    assert "1.5" in contradicting.output.split("--alpha 0.5")[1]

    # The variant's own value is no contradiction: only --epochs 0 is reported.
    same = runner.invoke(app, args + ["--alpha", "1.50", "--epochs", "0"])
    assert same.exit_code == 1 and "--epochs 0" in same.output
    assert "--alpha" not in same.output


def saved_run(tmp_path, data, scheduler, options):
    """A run folder holding only config.json, as `dst train` writes it (no training)."""
    from dstcli.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(app="omniglot", data=str(data), out=str(run), preset="cpu-tiny",
                         epochs=1, device="cpu", scheduler=scheduler).resolved()
    saved = {**config.to_json(), "scheduler_options": options}
    (run / "config.json").write_text(json.dumps(saved))
    return run


def stl_folder(tmp_path):
    stl = tmp_path / "stl"
    stl.mkdir()
    rows = ["epoch,phase,task,V"] + [f"2,train,{t},0.5" for t in ("Alpha", "Beta", "Gamma")]
    (stl / "epochs.csv").write_text("\n".join(rows) + "\n")
    return stl


def test_resume_compares_scheduler_flags_with_the_saved_values(omniglot_tiny, tmp_path,
                                                               monkeypatch):
    import dstcli.train

    stl = stl_folder(tmp_path)
    run = saved_run(tmp_path, omniglot_tiny, "early-stop",
                    {"stl_results": str(stl), "loss_norm": "none", "dropped_loss": "forward",
                     "gate_every": "epoch"})
    resumed = []
    monkeypatch.setattr(dstcli.train, "train", lambda config, resume, console: resumed.append(
        (config.scheduler_options.loss_norm, resume)))

    same = runner.invoke(app, ["train", "--resume", str(run), "--loss-norm", "none"])
    assert same.exit_code == 0, same.output
    assert resumed == [("none", True)]

    changed = runner.invoke(app, ["train", "--resume", str(run), "--loss-norm", "initial",
                                  "--gate-every", "sometimes"])
    assert changed.exit_code == 1
    assert "--loss-norm initial differs from the saved 'none'" in changed.output
    assert "--gate-every 'sometimes': choose one of epoch, step" in changed.output
    assert "--stl-results" not in changed.output


def test_resume_refuses_a_hand_edited_bad_choice(omniglot_tiny, tmp_path):
    run = saved_run(tmp_path, omniglot_tiny, "mtl", {"loss_norm": "sometimes"})
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 1
    assert "--loss-norm 'sometimes': choose one of initial, none" in resumed.output
