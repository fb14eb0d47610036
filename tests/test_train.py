"""The training loop end to end on cpu-tiny: learning, determinism, resume, eval, logs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import tiny_config

from dstcli.config import TrainConfig
from dstcli.errors import ConfigError, DstError
from dstcli.evaluate import evaluate
from dstcli.train import CHECKPOINT, load_checkpoint, train


def epoch_rows(run_dir) -> list[dict]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return list(csv.DictReader(f))


def mean_loss(rows, epoch) -> float:
    values = [float(r["V"]) for r in rows if int(r["epoch"]) == epoch]
    return sum(values) / len(values)


def test_train_and_eval_learn(omniglot_tiny, tmp_path):
    run_dir = train(tiny_config(omniglot_tiny, tmp_path / "run", epochs=5, lr=3e-3,
                                batch_size=16))
    rows = epoch_rows(run_dir)

    assert {r["phase"] for r in rows if r["epoch"] == "1"} == {"measure"}
    assert mean_loss(rows, 6) < 0.8 * mean_loss(rows, 1)
    result = evaluate(run_dir)
    assert set(result["tasks"]) == {"Alpha", "Beta", "Gamma"}
    errors = [m["error"] for m in result["tasks"].values()]
    assert result["average_error"] == pytest.approx(sum(errors) / 3)
    assert all(m["error"] == pytest.approx(100 - m["accuracy"]) for m in result["tasks"].values())
    assert json.loads((run_dir / "metrics.json").read_text())["average_error"] == \
        result["average_error"]
    with open(run_dir / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["average_error"]) == pytest.approx(result["average_error"])
    # Chance is 1 in 3..5 characters; a trained network must beat it clearly.
    assert result["average_error"] < 60


def test_run_folder_describes_itself(omniglot_tiny, tmp_path):
    config = tiny_config(omniglot_tiny, tmp_path / "run")
    run_dir = train(config)

    assert TrainConfig.load(run_dir / "config.json") == config
    tasks = json.loads((run_dir / "tasks.json").read_text())
    assert [(t["name"], t["depth"]) for t in tasks] == [("Alpha", 17), ("Beta", 17),
                                                         ("Gamma", 17)]
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 2 and state["config"] == config.to_json()
    assert {"model", "optimizer", "scheduler", "rng", "tasks"} <= set(state)
    header = epoch_rows(run_dir)[0].keys()
    assert list(header)[:7] == ["epoch", "phase", "task", "V", "labelled", "measured_on",
                                "seconds"]

    # run.json: where training ended, and on what, so that epoch times are compared with
    # those of the same machine only.
    record = json.loads((run_dir / "run.json").read_text())
    assert record["finished_epoch"] == 2
    assert record["machine"]["device"] == "cpu" and record["machine"]["gpu"] is None
    assert record["machine"]["threads"] == torch.get_num_threads()
    assert record["machine"]["cpu"] and record["machine"]["processes"] == 1


def test_same_seed_same_run(omniglot_tiny, tmp_path):
    a = train(tiny_config(omniglot_tiny, tmp_path / "a"))
    b = train(tiny_config(omniglot_tiny, tmp_path / "b"))
    c = train(tiny_config(omniglot_tiny, tmp_path / "c", seed=1))

    weights = [load_checkpoint(r)["model"] for r in (a, b, c)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_interrupted_run_resumes_to_the_same_end(omniglot_tiny, tmp_path, monkeypatch):
    config = dict(epochs=3, batch_size=16)
    whole = train(tiny_config(omniglot_tiny, tmp_path / "whole", **config))

    import dstcli.train as trainer

    saved = trainer.save_checkpoint

    def save_then_die(run, run_dir, epoch):
        saved(run, run_dir, epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    cut = tiny_config(omniglot_tiny, tmp_path / "cut", **config)
    with pytest.raises(KeyboardInterrupt):
        train(cut)
    monkeypatch.setattr(trainer, "save_checkpoint", saved)
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 2
    train(cut, resume=True)

    a, b = load_checkpoint(whole), load_checkpoint(tmp_path / "cut")
    assert a["epoch"] == b["epoch"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert evaluate(whole)["tasks"] == evaluate(tmp_path / "cut")["tasks"]
    assert [r["V"] for r in epoch_rows(whole)] == [r["V"] for r in epoch_rows(tmp_path / "cut")]


def test_stl_trains_a_network_per_task(omniglot_tiny, tmp_path):
    run_dir = train(tiny_config(omniglot_tiny, tmp_path / "stl", scheduler="stl"))
    state = load_checkpoint(run_dir)["model"]
    assert {k.split(".")[1] for k in state} == {"Alpha", "Beta", "Gamma"}
    assert set(evaluate(run_dir)["tasks"]) == {"Alpha", "Beta", "Gamma"}


def test_an_existing_run_is_not_overwritten(omniglot_tiny, tmp_path):
    train(tiny_config(omniglot_tiny, tmp_path / "run"))
    with pytest.raises(DstError, match="--resume"):
        train(tiny_config(omniglot_tiny, tmp_path / "run"))
    with pytest.raises(DstError, match="no checkpoint.pt"):
        train(tiny_config(omniglot_tiny, tmp_path / "empty"), resume=True)


def test_a_damaged_checkpoint_falls_back_to_the_previous(omniglot_tiny, tmp_path):
    run_dir = train(tiny_config(omniglot_tiny, tmp_path / "run", epochs=2))
    (run_dir / CHECKPOINT).write_bytes(b"half a file")
    assert load_checkpoint(run_dir)["epoch"] == 2


def test_every_config_problem_is_reported_at_once(omniglot_tiny, tmp_path):
    config = TrainConfig(app="omniglot", data=str(omniglot_tiny), out=str(tmp_path / "r"),
                         preset="cpu", epochs=0, batch_size=0, lr=-1.0, device="gpu",
                         encoder_weights=str(tmp_path / "none.pth"))
    with pytest.raises(ConfigError) as caught:
        config.validate()
    text = str(caught.value)
    for flag in ("--epochs", "--batch-size", "--lr", "--device", "--encoder-weights",
                 "--preset cpu trains at 64x64"):
        assert flag in text
    assert len(caught.value.problems) == 6


def test_data_for_another_app_or_missing(tmp_path, omniglot_tiny):
    config = TrainConfig(app="omniglot", data=str(tmp_path / "nothing"), out=str(tmp_path))
    with pytest.raises(ConfigError, match="--data: .*not a folder"):
        config.validate()


def test_a_head_moved_to_another_convolution_changes_its_depth(omniglot_tiny, tmp_path):
    from dstcli.schedulers import SCHEDULERS

    options = SCHEDULERS.get("dst").options()
    run_dir = train(tiny_config(omniglot_tiny, tmp_path / "run", scheduler="dst",
                                scheduler_options=options, branch=("Alpha=7",)))
    tasks = {t["name"]: t for t in json.loads((run_dir / "tasks.json").read_text())}
    assert (tasks["Alpha"]["branch"], tasks["Alpha"]["depth"]) == (7, 11)
    assert tasks["Beta"]["depth"] == 17
    rows = [r for r in epoch_rows(run_dir) if r["epoch"] == "1"]
    assert {r["task"]: float(r["P_d"]) for r in rows}["Alpha"] == pytest.approx(11 / 17)


def test_bad_branch_entries(omniglot_tiny, tmp_path):
    with pytest.raises(ConfigError) as caught:
        tiny_config(omniglot_tiny, tmp_path / "run", branch=("Alpha", "Nope=3", "Beta=14"))
    text = str(caught.value)
    assert "expected TASK=CONV" in text and "no task 'Nope'" in text and "1..13" in text


def test_initial_losses_averaged_over_initialisations(omniglot_tiny, tmp_path):
    one = train(tiny_config(omniglot_tiny, tmp_path / "one", epochs=1))
    three = train(tiny_config(omniglot_tiny, tmp_path / "three", epochs=1, init_passes=3))

    v1 = {r["task"]: float(r["V"]) for r in epoch_rows(one) if r["epoch"] == "1"}
    v3 = {r["task"]: float(r["V"]) for r in epoch_rows(three) if r["epoch"] == "1"}
    assert v1 != v3
    # Training starts from the run's own initialisation either way: mtl ignores V[1].
    a, b = load_checkpoint(one)["model"], load_checkpoint(three)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="--init-passes 0"):
        tiny_config(omniglot_tiny, tmp_path / "zero", init_passes=0)


def test_eval_refuses_a_run_whose_training_has_not_finished(omniglot_tiny, tmp_path):
    import shutil

    run = train(tiny_config(omniglot_tiny, tmp_path / "run"), progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "run.json").unlink()  # as a run stopped before its last epoch leaves it

    with pytest.raises(DstError, match="has not finished training.*dst train --resume"):
        evaluate(cut)
    assert not (cut / "metrics.json").exists()
    scored = evaluate(cut, unfinished=True)
    assert scored["finished"] is False and scored["checkpoint"] == CHECKPOINT
    assert evaluate(run)["finished"] is True


def test_eval_says_when_it_falls_back_to_the_previous_checkpoint(omniglot_tiny, tmp_path):
    run = train(tiny_config(omniglot_tiny, tmp_path / "run", epochs=2), progress=False)
    (run / CHECKPOINT).write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="damaged; scoring checkpoint.prev.pt"):
        result = evaluate(run)
    assert result["checkpoint"] == "checkpoint.prev.pt" and result["epoch"] == 2


def test_cli_eval_names_an_unfinished_run_and_scores_it_on_request(omniglot_tiny, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from dstcli.cli.main import app

    run = train(tiny_config(omniglot_tiny, tmp_path / "run"), progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "run.json").unlink()
    runner = CliRunner()
    refused = runner.invoke(app, ["eval", str(cut)])
    assert refused.exit_code == 1 and "--unfinished" in " ".join(refused.output.split())
    scored = runner.invoke(app, ["eval", str(cut), "--unfinished"])
    assert scored.exit_code == 0, scored.output
    assert "training had not finished" in scored.output
    assert json.loads((cut / "metrics.json").read_text())["finished"] is False


def test_stl_training_errors_feed_adaptive_and_train_scores_keep_the_test_file(
        omniglot_tiny, tmp_path):
    """epochs.csv logs each task's training error; an stl run folder is Adaptive's reference;
    scoring on the training split writes metrics-train.json beside the test metrics.json."""
    from dstcli.schedulers.specs.weighting import read_stl_errors

    run = train(tiny_config(omniglot_tiny, tmp_path / "stl", scheduler="stl", epochs=2),
                progress=False)
    rows = [r for r in epoch_rows(run) if r["phase"] == "train"]
    assert rows and all(0 <= float(r["train_error"]) <= 100 for r in rows)
    lowest = {t: min(float(r["train_error"]) for r in rows if r["task"] == t)
              for t in {r["task"] for r in rows}}
    assert len(rows) > len(lowest)  # several training epochs: the lowest is taken
    assert read_stl_errors(run) == lowest

    tested = evaluate(run)
    trained = evaluate(run, split="train")
    assert json.loads((run / "metrics.json").read_text())["split"] == "test"
    assert json.loads((run / "metrics-train.json").read_text())["split"] == "train"
    assert (run / "metrics-train.csv").is_file()
    assert tested["tasks"] != trained["tasks"]
    with pytest.raises(DstError, match="test-set scores"):
        read_stl_errors(run / "metrics.json")
