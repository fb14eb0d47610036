"""Each app's network trains and evaluates end to end at cpu-tiny: every task, every metric."""

from __future__ import annotations

import json
import math

import pytest
from helpers import tiny_config

from dstcli.apps import APPS
from dstcli.evaluate import evaluate
from dstcli.train import train


def test_every_app_has_a_prepare_command():
    from typer.testing import CliRunner

    from dstcli.cli.main import app

    result = CliRunner().invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"})
    for name in APPS.names():
        assert name in result.output


@pytest.mark.parametrize("scheduler", ["mtl", "dst"])
def test_faces_train_and_report_five_tasks(faces_tiny, tmp_path, scheduler):
    run_dir = train(tiny_config(faces_tiny, tmp_path / "run", app="aflw", scheduler=scheduler,
                                epochs=2))
    result = evaluate(run_dir)

    tasks = result["tasks"]
    assert set(tasks) == {"gender", "spectacles", "landmarks", "pose", "denoising"}
    assert "accuracy" in tasks["gender"] and "nme" in tasks["landmarks"]
    assert "rmse" in tasks["denoising"] and "mae_radians" in tasks["pose"]
    assert all(math.isfinite(m["error"]) for m in tasks.values())
    assert result["average_error"] == pytest.approx(sum(m["error"] for m in tasks.values()) / 5)
    assert json.loads((run_dir / "metrics.json").read_text())["tasks"].keys() == tasks.keys()


@pytest.mark.parametrize("scheduler", ["mtl", "dst"])
def test_fingerprint_pairs_train_and_report_five_metrics(pairs_tiny, tmp_path, scheduler):
    run_dir = train(tiny_config(pairs_tiny, tmp_path / "run", app="fingerprint",
                                scheduler=scheduler, epochs=1))
    result = evaluate(run_dir)

    tasks = result["tasks"]
    assert {"accuracy"} <= set(tasks["fp_orientation"])
    assert {"iou"} <= set(tasks["fp_segmentation"]) and {"iou"} <= set(tasks["lfp_segmentation"])
    assert {"eer", "roc"} <= set(tasks["matching"])
    assert (run_dir / tasks["matching"]["roc"]).exists()
    assert (run_dir / "roc-matching-test.png").stat().st_size > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tie"] == 1e-3 and config["margin"] == 1.0


def test_bilateral_options_are_refused_elsewhere(omniglot_tiny, tmp_path):
    from dstcli.errors import ConfigError

    with pytest.raises(ConfigError, match="--tie applies to the bilateral network"):
        tiny_config(omniglot_tiny, tmp_path / "run", tie=0.1)


@pytest.mark.parametrize("model", ["segnet", "unet"])
def test_segnet_and_unet_train_single_segmentation_tasks(pairs_tiny, tmp_path, model):
    from dstcli.errors import DstError

    run_dir = train(tiny_config(pairs_tiny, tmp_path / "run", app="fingerprint",
                                scheduler="stl", model=model,
                                tasks=("fp_segmentation", "lfp_segmentation")))
    result = evaluate(run_dir)
    assert set(result["tasks"]) == {"fp_segmentation", "lfp_segmentation"}
    assert all("iou" in m for m in result["tasks"].values())

    with pytest.raises(DstError, match="not segmentation tasks"):
        train(tiny_config(pairs_tiny, tmp_path / "all", app="fingerprint", scheduler="stl",
                          model=model))


def test_unknown_model_and_tasks_are_named(pairs_tiny, tmp_path):
    from dstcli.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        tiny_config(pairs_tiny, tmp_path / "run", app="fingerprint", model="resnet",
                    tasks=("matching", "nope"))
    assert "--model 'resnet' is unknown" in str(caught.value)
    assert "--tasks: no task 'nope'" in str(caught.value)


def test_model_and_tasks_from_the_command_line(pairs_tiny, tmp_path):
    from typer.testing import CliRunner

    from dstcli.cli.main import app

    result = CliRunner().invoke(app, ["train", "--data", str(pairs_tiny), "--out",
                                      str(tmp_path / "run"), "--scheduler", "stl", "--model",
                                      "unet", "--tasks", "fp_segmentation", "--epochs", "1",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "unet" and config["tasks"] == ["fp_segmentation"]
