"""`dst ablate`: the sweeps' rows, the plan, and a sweep that resumes where it stopped."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dstcli.cli.main import app
from dstcli.sweep import find_sweep, load_sweep

runner = CliRunner()

TABLE8_LAMBDAS = [
    (0.00, 0.25, 0.25, 0.25, 0.25), (0.25, 0.00, 0.25, 0.25, 0.25), (0.25, 0.25, 0.00, 0.25, 0.25),
    (0.25, 0.25, 0.25, 0.00, 0.25), (0.25, 0.25, 0.25, 0.25, 0.00),
    (0.25, 0.25, 0.25, 0.25, 0.00), (1.00, 0.00, 0.00, 0.00, 0.00),
    (0.00, 1.00, 0.00, 0.00, 0.00), (0.00, 0.00, 1.00, 0.00, 0.00),
    (0.00, 0.00, 0.00, 1.00, 0.00), (0.20, 0.20, 0.30, 0.30, 0.00),
    (0.10, 0.10, 0.40, 0.40, 0.00), (0.40, 0.40, 0.10, 0.10, 0.00),
    (0.15, 0.15, 0.30, 0.30, 0.10), (0.30, 0.30, 0.15, 0.15, 0.10),
    (0.20, 0.20, 0.20, 0.20, 0.20),
]
TABLE3_LABELS = ["Individually Trained (STL)", "MTL", "GradNorm (α = 0.5)",
                 "GradNorm (α = 1.0)", "GradNorm (α = 1.5)", "LBTW (α = 0.5)", "LBTW (α = 1.0)",
                 "DTP", "Adaptive Schedule", "Gradient Drop", "Random (P = 0.50)",
                 "Random (P = 0.75)", "DST (Proposed)"]
# Table 3's rows as `methods` trains them: (label, scheduler, the row's options).
TABLE3_ROWS = [
    ("Individually Trained (STL)", "stl", {}), ("MTL", "mtl", {}),
    ("GradNorm (α = 0.5)", "gradnorm", {"alpha": 0.5}),
    ("GradNorm (α = 1.0)", "gradnorm", {"alpha": 1.0}),
    ("GradNorm (α = 1.5)", "gradnorm", {"alpha": 1.5}),
    ("LBTW (α = 0.5)", "lbtw", {"alpha": 0.5}), ("LBTW (α = 1.0)", "lbtw", {"alpha": 1.0}),
    ("DTP", "dtp", {}), ("Adaptive Schedule", "adaptive", {}),
    ("Gradient Drop", "graddrop", {}), ("Random (P = 0.50)", "random", {"p": 0.5}),
    ("Random (P = 0.75)", "random", {"p": 0.75}), ("DST (Proposed)", "dst", {}),
]


def planned(args: list[str]) -> list[list[str]]:
    result = runner.invoke(app, ["ablate", *args, "--dry-run"])
    lines = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert lines[0] == ["label", "scheduler", "options", "config", "seed", "id", "status"]
    return lines[1:]


def test_lambdas_dry_run_lists_table8():
    rows = planned(["lambdas"])
    assert len(rows) == 16
    assert rows[0][:2] == ["Leave out l_d", "dst"]
    import json

    lambdas = [tuple(json.loads(r[2])["lambdas"]) for r in rows]
    assert lambdas == TABLE8_LAMBDAS
    assert rows[-1][0] == "Proposed"
    assert len({r[5] for r in rows}) == 16  # one run folder per row
    # The two rows with the same lambdas are one training: the second copies the first's.
    leave_out_lb, static = rows[4], rows[5]
    assert (leave_out_lb[0], static[0]) == ("Leave out l_b", "Static: no regulariser")
    assert leave_out_lb[6] == "to run" and static[6] == f"reused {leave_out_lb[5]}"


def test_methods_lists_table3_in_order():
    sweep = load_sweep(find_sweep("methods"))
    assert [r.label for r in sweep.rows] == TABLE3_LABELS
    rows = planned(["methods", "--app", "omniglot", "--seeds", "2"])
    assert len(rows) == 26
    # Every row's method and options, per seed in the paper's order, Adaptive Schedule last.
    waits = [r for r in TABLE3_ROWS if r[1] == "adaptive"]
    for seed in ("0", "1"):
        got = [(r[0], r[1], json.loads(r[2])) for r in rows if r[4] == seed]
        assert got == [r for r in TABLE3_ROWS if r not in waits] + waits
    assert {r[3] for r in rows} == {"{}"}  # no row changes a run setting
    # The STL runs go before Adaptive Schedule, which waits for its own seed's STL run.
    adaptive = [r for r in rows if r[0] == "Adaptive Schedule"]
    stl = {r[4]: r[5] for r in rows if r[1] == "stl"}
    assert rows[-2:] == adaptive
    assert [a[6] for a in adaptive] == [f"after {stl['0']}", f"after {stl['1']}"]
    extra = planned(["methods", "--app", "omniglot", "--all-schedulers"])
    assert len(extra) > 13 and {"uw", "dwa"} <= {r[1] for r in extra}


def test_rows_runs_the_named_rows_and_the_stl_runs_they_need():
    rows = planned(["methods", "--app", "omniglot", "--seeds", "2", "--all-schedulers",
                    "--rows", "dwa", "--rows", "Adaptive Schedule"])
    assert [(r[0], r[4]) for r in rows] == [
        ("Individually Trained (STL)", "0"), ("dwa", "0"),
        ("Individually Trained (STL)", "1"), ("dwa", "1"),
        ("Adaptive Schedule", "0"), ("Adaptive Schedule", "1")]

    # The same ids as the whole sweep's, so that the rest can follow under them later.
    whole = {r[5] for r in planned(["methods", "--app", "omniglot", "--seeds", "2",
                                    "--all-schedulers"])}
    assert {r[5] for r in rows} <= whole


def test_rows_names_an_unknown_label_and_the_known_ones():
    result = runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--dry-run",
                                 "--rows", "DST (Proposed)", "--rows", "Nope"])
    assert result.exit_code != 0
    assert "--rows 'Nope'" in result.output and "'DST (Proposed)'" in result.output
    assert "--rows 'DST (Proposed)'" not in result.output


def test_rows_that_need_missing_features_fail_the_dry_run(tmp_path):
    path = tmp_path / "wish.toml"
    path.write_text('app = "aflw"\n[[row]]\nlabel = "Proposed"\nscheduler = "dst"\n'
                    '[[row]]\nlabel = "Wish"\nscheduler = "dst"\n'
                    'needs = "a feature dst does not have"\n')
    result = runner.invoke(app, ["ablate", str(path), "--dry-run"])
    assert result.exit_code == 1
    assert "a feature dst does not have" in result.output


def test_every_shipped_sweep_can_run():
    for name in ("methods", "lambdas", "table7", "init", "loss-norm"):
        args = ["ablate", name, "--dry-run"] + (["--app", "aflw"] if name == "methods" else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (name, result.output)


def test_bad_sweep_reports_every_problem(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[row]]\nlabel = "a"\nscheduler = "nope"\n'
                    '[[row]]\nlabel = "b"\nscheduler = "dst"\noptions = { lambdas = [1, 1] }\n'
                    '[[row]]\nlabel = "b"\nscheduler = "mtl"\ncolour = 1\n')
    result = runner.invoke(app, ["ablate", str(path), "--app", "omniglot", "--dry-run"])
    assert result.exit_code == 1
    for expected in ("row 1 ('a'): scheduler 'nope'", "row 2 ('b'): --lambdas",
                     "row 3 ('b'): unknown key 'colour'", "label repeats"):
        assert expected in result.output


SMALL = """
name = "small"
[[row]]
label = "MTL"
scheduler = "mtl"
[[row]]
label = "Random"
scheduler = "random-0.5"
[[row]]
label = "Later"
scheduler = "mtl"
needs = "a feature dst lacks"
"""


def test_sweep_resumes_only_what_did_not_finish(tmp_path, omniglot_tiny, monkeypatch):
    import dstcli.train

    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL)
    runs = tmp_path / "runs" / "omniglot"
    args = ["ablate", str(sweep), "--app", "omniglot", "--data", str(omniglot_tiny),
            "--epochs", "1", "--device", "cpu", "--lr", "0.002", "--batch-size", "8",
            "--channels-last", "--out", str(tmp_path / "runs")]

    # The Random run stops once its first epoch's checkpoint is written, as a run killed
    # between epochs does (--jobs 1 trains in this process, so the patch reaches it).
    save = dstcli.train.save_checkpoint

    def stop_after_epoch_1(run, run_dir, epoch, in_epoch=None):
        save(run, run_dir, epoch, in_epoch)
        if Path(run_dir).name.startswith("random") and epoch == 1 and in_epoch is None:
            raise RuntimeError("stopped after epoch 1")

    with monkeypatch.context() as patch:
        patch.setattr(dstcli.train, "save_checkpoint", stop_after_epoch_1)
        first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output  # the `needs` row fails, and the stopped run
    assert "needs a feature dst lacks" in first.output and "stopped after epoch 1" in first.output
    assert "1 ran, 0 already done, 0 reused, 2 failed or blocked" in first.output
    (mtl,) = runs.glob("mtl-*")
    (stopped,) = runs.glob("random-*")
    config = json.loads((mtl / "config.json").read_text())
    assert (config["lr"], config["batch_size"], config["channels_last"]) == (0.002, 8, True)
    assert (stopped / "checkpoint.pt").is_file() and not (stopped / "run.json").exists()
    epoch_1 = epoch_rows(stopped, "1")
    assert epoch_1 and not epoch_rows(stopped, "2")
    mtl_times = {f.name: f.stat().st_mtime_ns for f in mtl.iterdir()}

    # Run again: the stopped run continues after epoch 1; the finished one is left alone.
    second = runner.invoke(app, args)
    assert second.exit_code == 1, second.output
    assert second.output.count("ran    ") == 1 and "1 ran, 1 already done" in second.output
    assert "ran    random-" in second.output
    log = (stopped / "sweep.log").read_text()
    assert log.count(f"resuming {stopped} after epoch 1") == 1
    resumed = log.split(f"resuming {stopped} after epoch 1")[1]
    assert [int(n) for n in re.findall(r"^\s+(\d+) (?:measure|train) ", resumed, re.M)] == [2]
    assert epoch_rows(stopped, "1") == epoch_1 and epoch_rows(stopped, "2")
    assert json.loads((stopped / "metrics.json").read_text())["finished"] is True
    assert {f.name: f.stat().st_mtime_ns for f in mtl.iterdir()} == mtl_times

    # A sweep killed between training and evaluation: the run is evaluated, not trained.
    kept, removed = stopped / "metrics.json", mtl / "metrics.json"
    kept_time, checkpoint_time = kept.stat().st_mtime_ns, (mtl / "checkpoint.pt").stat()
    removed.unlink()
    third = runner.invoke(app, args)
    assert third.exit_code == 1
    assert third.output.count("ran    ") == 1 and "1 ran, 1 already done" in third.output
    assert removed.is_file()
    assert kept.stat().st_mtime_ns == kept_time
    assert (mtl / "checkpoint.pt").stat().st_mtime_ns == checkpoint_time.st_mtime_ns


def epoch_rows(run_dir: Path, epoch: str) -> list[dict[str, str]]:
    """The rows of one epoch in a run's epochs.csv."""
    with open(run_dir / "epochs.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["epoch"] == epoch]


def test_submitit_local_executor_runs_the_same_path(tmp_path, omniglot_tiny):
    pytest.importorskip("submitit")
    sweep = tmp_path / "one.toml"
    sweep.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n')
    result = runner.invoke(app, ["ablate", str(sweep), "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--epochs", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "runs"),
                                 "--launcher", "submitit-local"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "runs" / "omniglot").glob("*/metrics.json"))) == 1


def fail_stl(task: dict) -> dict:
    """A stand-in for sweep.execute: the STL run fails, any other run passes; each run it is
    given leaves a mark in $DST_TEST_MARKS."""
    Path(os.environ["DST_TEST_MARKS"], task["run_id"]).touch()
    ok = task["config"]["scheduler"] != "stl"
    return {"run_id": task["run_id"], "ok": ok, "error": "" if ok else "STL diverged",
            "average_error": 1.0, "seconds": 0.0}


def test_a_failed_stl_run_fails_the_runs_that_wait_on_it_unstarted(tmp_path, omniglot_tiny,
                                                                    monkeypatch):
    import dstcli.sweep

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("DST_TEST_MARKS", str(marks))
    monkeypatch.setattr(dstcli.sweep, "execute", fail_stl)
    result = runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--out", str(tmp_path / "runs"),
                                 "--rows", "Adaptive Schedule", "--rows", "MTL"])
    assert result.exit_code == 1, result.output

    # STL went first and MTL trained; Adaptive Schedule never started, and says why.
    started = sorted(m.name.split("-s0-")[0] for m in marks.iterdir())
    assert started == ["individually-trained-stl", "mtl"]
    assert re.search(r"^failed +adaptive-schedule-s0-\S+ +\(Adaptive Schedule, seed 0\) +its "
                     r"STL run individually-trained-stl-s0-\S+ did not finish", result.output,
                     re.M), result.output
    assert "2 of 3 runs failed" in result.output


class FakeJob:
    def __init__(self, result: dict, job_id: str):
        self._result, self.job_id = result, job_id

    def done(self) -> bool:
        return True

    def result(self) -> dict:
        return self._result


def test_slurm_launcher_hands_its_settings_to_submitit(tmp_path, omniglot_tiny, monkeypatch):
    submitit = pytest.importorskip("submitit")
    seen = {}

    class FakeExecutor:
        def __init__(self, folder, cluster):
            seen.update(folder=folder, cluster=cluster)

        def update_parameters(self, **values):
            seen.update(values)

        def map_array(self, fn, tasks):
            seen["tasks"] = [t["sweep"]["label"] for t in tasks]
            return [FakeJob({"run_id": t["run_id"], "ok": True, "error": "",
                             "average_error": 2.5, "seconds": 1.0}, f"77_{i}")
                    for i, t in enumerate(tasks)]

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    sweep = tmp_path / "two.toml"
    sweep.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n'
                     '[[row]]\nlabel = "DST"\nscheduler = "dst"\n')
    result = runner.invoke(app, ["ablate", str(sweep), "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--out", str(tmp_path / "runs"),
                                 "--launcher", "slurm", "--partition", "gpu", "--time", "90",
                                 "--gpus", "2", "--jobs", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {"folder": str(tmp_path / "runs" / "submitit"), "cluster": "slurm",
                    "timeout_min": 90, "gpus_per_node": 2, "slurm_array_parallelism": 3,
                    "slurm_partition": "gpu", "tasks": ["MTL", "DST"]}
    assert "2 ran, 0 already done" in result.output


def test_slurm_runs_are_reported_as_they_end_and_ctrl_c_names_the_jobs_left(
        tmp_path, omniglot_tiny, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.helpers.time, "sleep", lambda seconds: None)
    polls = {"n": 0}

    class LateJob(FakeJob):
        """Done from the third poll on; with `stop`, Ctrl-C arrives at that poll instead."""

        def __init__(self, result, job_id, stop=False):
            super().__init__(result, job_id)
            self.stop = stop

        def done(self):
            polls["n"] += 1
            if polls["n"] >= 3 and self.stop:
                raise KeyboardInterrupt
            return polls["n"] >= 3

    class Executor:
        stop = False

        def __init__(self, folder, cluster):
            pass

        def update_parameters(self, **values):
            pass

        def map_array(self, fn, tasks):
            results = [{"run_id": t["run_id"], "ok": True, "error": "", "average_error": 2.5,
                        "seconds": 1.0} for t in tasks]
            return [LateJob(results[0], "77_0", stop=Executor.stop), FakeJob(results[1], "77_1")]

    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    sweep = tmp_path / "two.toml"
    sweep.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n'
                     '[[row]]\nlabel = "DST"\nscheduler = "dst"\n')
    args = ["ablate", str(sweep), "--app", "omniglot", "--data", str(omniglot_tiny), "--out",
            str(tmp_path / "runs"), "--launcher", "slurm", "--partition", "gpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    told = re.findall(r"^ran +\S+ +\((\w+), seed 0\)", result.output, re.M)
    assert told == ["DST", "MTL"]  # DST's job ended first

    polls["n"], Executor.stop = 0, True
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "Slurm job(s) 77 still run on the cluster" in result.output
    assert "squeue -j 77" in result.output


def test_slurm_launcher_without_a_partition_is_refused_with_the_other_problems():
    result = runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--launcher",
                                 "slurm", "--time", "0", "--gpus", "-1"])
    assert result.exit_code != 0
    for flag in ("--launcher slurm needs --partition", "--time 0", "--gpus -1", "--data"):
        assert flag in result.output, flag


def test_table7_moves_the_gender_head_and_names_what_it_cannot_run():
    result = runner.invoke(app, ["ablate", "table7", "--dry-run"])
    lines = [line.split("\t") for line in result.output.splitlines() if "\t" in line][1:]
    labels = {r[0]: r for r in lines}
    assert {"Small MTL", "Small DST", "Just P_u", "P'_c"} <= set(labels)
    sweep = load_sweep(find_sweep("table7"))
    small = next(r for r in sweep.rows if r.label == "Small DST")
    assert small.config == {"branch": ["gender=7"]} and not small.needs
    assert result.exit_code == 0, result.output
    early = labels["Early stop"]
    assert early[1] == "early-stop" and early[6].startswith("after ")  # waits for its STL run
    assert "inverse" in labels["P'_c"][2]


def test_run_ids_follow_the_data_not_its_path(tmp_path, omniglot_tiny):
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(omniglot_tiny, moved)
    listings = [runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--data",
                                    str(data), "--dry-run"]) for data in (omniglot_tiny, moved)]
    ids = [[line.split("\t")[5] for line in r.output.splitlines()[1:]] for r in listings]
    assert listings[0].exit_code == 0 and ids[0] and ids[0] == ids[1]

    # Other data (another split seed) is another run.
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["protocol"]["seed"] = 99
    (moved / "manifest.json").write_text(json.dumps(manifest))
    other = runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--data", str(moved),
                                "--dry-run"])
    assert not set(ids[0]) & {line.split("\t")[5] for line in other.output.splitlines()[1:]}


def test_a_process_pool_reports_each_run_as_it_ends(tmp_path, omniglot_tiny):
    sweep = tmp_path / "two.toml"
    sweep.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n\n'
                     '[[row]]\nlabel = "Random"\nscheduler = "random"\n')
    result = runner.invoke(app, ["ablate", str(sweep), "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--epochs", "1", "--device", "cpu",
                                 "--jobs", "2", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert result.output.count("ran    ") == 2
    assert "(MTL, seed 0)" in result.output and "(Random, seed 0)" in result.output
    assert "2 ran, 0 already done, 0 reused, 0 failed or blocked" in result.output


def test_dry_run_lists_each_rows_config():
    table7 = {r[0]: r for r in planned(["table7"])}
    assert json.loads(table7["Small MTL"][3]) == {"branch": ["gender=7"]}
    assert json.loads(table7["Small DST"][3]) == {"branch": ["gender=7"]}
    assert table7["Proposed"][3] == "{}"
    init = planned(["init"])
    assert [json.loads(r[3]) for r in init] == [{}, {"init_passes": 10}]


def status_of(args: list[str]) -> dict[str, str]:
    """Each run's status in the dry-run listing, by label."""
    return {r[0]: r[6] for r in planned(args)}


def test_a_run_is_finished_once_trained_and_scored_on_the_test_split(tmp_path, omniglot_tiny):
    sweep = tmp_path / "one.toml"
    sweep.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n')
    args = ["ablate", str(sweep), "--app", "omniglot", "--data", str(omniglot_tiny),
            "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "runs")]
    assert runner.invoke(app, args).exit_code == 0
    (run_dir,) = (tmp_path / "runs" / "omniglot").iterdir()
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    trained = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    assert status_of(args[1:]) == {"MTL": "done"}

    # Scores of an unfinished checkpoint (dst eval --unfinished), or of the training split
    # (older dst eval --split train), are not the run's results: it is evaluated again.
    for changed in ({"finished": False}, {"split": "train"}):
        metrics_path.write_text(json.dumps({**metrics, **changed}))
        assert status_of(args[1:]) == {"MTL": "to run"}, changed
        again = runner.invoke(app, args)
        assert again.exit_code == 0 and "1 ran, 0 already done" in again.output, again.output
        rescored = json.loads(metrics_path.read_text())
        assert (rescored["finished"], rescored["split"]) == (True, "test")
        assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == trained  # not trained again

    # metrics.json from before it said `finished` (committed runs): finished at the last epoch.
    old = {k: v for k, v in metrics.items() if k != "finished"}
    metrics_path.write_text(json.dumps(old))
    assert status_of(args[1:]) == {"MTL": "done"}
    metrics_path.write_text(json.dumps({**old, "epoch": old["epoch"] - 1}))
    assert status_of(args[1:]) == {"MTL": "to run"}

    # Without the trainer's run record, training has not finished, whatever metrics.json says.
    metrics_path.write_text(json.dumps(metrics))
    (run_dir / "run.json").unlink()
    assert status_of(args[1:]) == {"MTL": "to run"}


def test_an_identical_run_under_another_label_copies_the_first(tmp_path, omniglot_tiny):
    out = tmp_path / "runs"
    twins = tmp_path / "twins.toml"
    twins.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n'
                     '[[row]]\nlabel = "MTL again"\nscheduler = "mtl"\n'
                     'columns = { Note = "same weights" }\n')
    args = ["--app", "omniglot", "--data", str(omniglot_tiny), "--epochs", "1", "--device",
            "cpu", "--out", str(out)]
    rows = {r[0]: r for r in planned([str(twins), *args])}
    first_id, second_id = rows["MTL"][5], rows["MTL again"][5]
    assert first_id != second_id  # the folders keep their label-named ids
    assert (rows["MTL"][6], rows["MTL again"][6]) == ("to run", f"reused {first_id}")

    result = runner.invoke(app, ["ablate", str(twins), *args])
    assert result.exit_code == 0, result.output
    assert f"reused {second_id}" in result.output and f"the records of {first_id}" in result.output
    assert "1 ran, 0 already done, 1 reused, 0 failed or blocked" in result.output
    first, second = out / "omniglot" / first_id, out / "omniglot" / second_id
    kept = {p.name for p in first.iterdir()} - {"checkpoint.pt", "checkpoint.prev.pt"}
    assert {p.name for p in second.iterdir()} == kept and "run.json" in kept
    for name in ("metrics.json", "epochs.csv", "run.json", "tasks.json"):
        assert (second / name).read_text() == (first / name).read_text(), name
    config = json.loads((second / "config.json").read_text())
    assert config["out"] == str(second)
    assert config == {**json.loads((first / "config.json").read_text()), "out": str(second)}
    record = json.loads((second / "sweep.json").read_text())
    assert (record["label"], record["columns"], record["run_id"], record["reused_from"]) == (
        "MTL again", {"Note": "same weights"}, second_id, first_id)
    assert "reused_from" not in json.loads((first / "sweep.json").read_text())
    assert status_of([str(twins), *args]) == {"MTL": "done", "MTL again": "done"}

    # Another sweep's row with the same configuration finds the finished run in --out.
    other = tmp_path / "other.toml"
    other.write_text('[[row]]\nlabel = "Plain MTL"\nscheduler = "mtl"\n')
    assert status_of([str(other), *args]) == {"Plain MTL": f"reused {first_id}"}
    result = runner.invoke(app, ["ablate", str(other), *args])
    assert result.exit_code == 0, result.output
    assert "0 ran, 0 already done, 1 reused" in result.output
    (plain,) = (out / "omniglot").glob("plain-mtl-*")
    assert not list(plain.glob("checkpoint*.pt"))
    assert json.loads((plain / "sweep.json").read_text())["reused_from"] == first_id


def test_a_run_shared_by_two_sweeps_serves_a_row_of_each(tmp_path, omniglot_tiny):
    """Same label and configuration in two sweeps is one run folder: the second sweep finds it
    done, adds its row to sweep.json, and dst tables counts the run in both sweeps' rows."""
    from dstcli.report.tables import read_runs

    out = tmp_path / "runs"
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\n')
    second.write_text('[[row]]\nlabel = "MTL"\nscheduler = "mtl"\ngroup = "other table"\n')
    args = ["--app", "omniglot", "--data", str(omniglot_tiny), "--epochs", "1", "--device",
            "cpu", "--out", str(out)]
    assert planned([str(first), *args])[0][5] == planned([str(second), *args])[0][5]

    assert runner.invoke(app, ["ablate", str(first), *args]).exit_code == 0
    assert status_of([str(second), *args]) == {"MTL": "done"}
    result = runner.invoke(app, ["ablate", str(second), *args])
    assert result.exit_code == 0 and "0 ran, 1 already done" in result.output, result.output
    result = runner.invoke(app, ["ablate", str(second), *args])  # twice: still one entry

    (folder,) = (out / "omniglot").iterdir()
    record = json.loads((folder / "sweep.json").read_text())
    assert record["sweep"] == "first"
    assert [(a["sweep"], a["group"]) for a in record["also"]] == [("second", "other table")]
    assert sorted((r.sweep, r.label) for r in read_runs(out)) == [("first", "MTL"),
                                                                  ("second", "MTL")]


def crash_or_pass(task: dict) -> dict:
    """A stand-in for sweep.execute in the pool's workers: the row "Crash" kills its process
    as the kernel's out-of-memory killer would; "A" is still running then, and its pool ends it:
    it must run again, not fail with "Crash"."""
    if task["sweep"]["label"] == "Crash":
        os._exit(9)
    if task["sweep"]["label"] == "A":
        time.sleep(1)
    return {"run_id": task["run_id"], "ok": True, "error": "", "average_error": 1.0,
            "seconds": 0.0}


def test_a_dead_worker_fails_its_run_and_the_pool_goes_on(tmp_path, omniglot_tiny, monkeypatch):
    import dstcli.sweep

    # The spawned workers import this module to find crash_or_pass.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    monkeypatch.setattr(dstcli.sweep, "execute", crash_or_pass)
    sweep = tmp_path / "four.toml"
    sweep.write_text("".join(f'[[row]]\nlabel = "{label}"\nscheduler = "{scheduler}"\n'
                             for label, scheduler in (("A", "mtl"), ("Crash", "random"),
                                                      ("B", "dtp"), ("C", "graddrop"))))
    result = runner.invoke(app, ["ablate", str(sweep), "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--jobs", "2",
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    for label in ("A", "B", "C"):
        assert re.search(rf"^ran +\S+ +\({label}, seed 0\)", result.output, re.M), label
    assert re.search(r"^failed +\S+ +\(Crash, seed 0\) +its worker process died", result.output,
                     re.M), result.output
    assert "3 ran, 0 already done, 0 reused, 1 failed or blocked" in result.output
    assert "failed: Crash seed 0" in result.output and "1 of 4 runs failed" in result.output


def crash_late(task: dict) -> dict:
    """A stand-in for sweep.execute: "Crash" says it began, then dies a moment later; the
    others return at once."""
    if task["label"] == "Crash":
        Path(os.environ["DST_TEST_MARKS"], "crash-began").write_text(str(os.getpid()))
        time.sleep(0.5)
        os._exit(9)
    return {"run_id": task["run_id"], "ok": True, "error": ""}


def alive(pid: int) -> bool:
    """Whether the process runs still (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_worker_dying_between_two_runs_leaves_the_rest_for_the_next_pool(tmp_path,
                                                                         monkeypatch):
    """The pool can break while the sweep is busy reporting a run that ended: the next run is
    then refused by the pool itself. It must wait for the next pool, not end the sweep."""
    from dstcli.sweep import _pool_round

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    monkeypatch.setenv("DST_TEST_MARKS", str(tmp_path))
    tasks = [{"run_id": label.lower(), "label": label} for label in ("A", "Crash", "B", "C")]
    finished = []

    def finish(i: int, result: dict) -> None:
        # Slow reporting: by the time it returns, "Crash" has died and broken the pool.
        began = tmp_path / "crash-began"
        deadline = time.monotonic() + 60
        while not (began.exists() and began.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        while alive(int(began.read_text())) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # for the pool's own thread to see the death
        finished.append(result["run_id"])

    monkeypatch.setattr("dstcli.sweep.execute", crash_late)
    ended, began, unstarted = _pool_round(tasks, [0, 1, 2, 3], 2, finish)

    assert finished == ["a"] and ended == [0]
    assert began == [1] and unstarted == [2, 3]


def interrupt_a(task: dict) -> dict:
    """A stand-in for sweep.execute: the row "A" is stopped by Ctrl-C (its checkpoint saved),
    "B" is still running then; every run it is given leaves a mark in $DST_TEST_MARKS."""
    Path(os.environ["DST_TEST_MARKS"], task["sweep"]["label"]).touch()
    if task["sweep"]["label"] == "A":
        return {"run_id": task["run_id"], "ok": False, "interrupted": True,
                "error": "interrupted at epoch 2, step 3; the checkpoint is saved",
                "seconds": 0.0}
    time.sleep(1)
    return {"run_id": task["run_id"], "ok": True, "error": "", "average_error": 1.0,
            "seconds": 0.0}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_the_sweep_and_begins_nothing_more(tmp_path, omniglot_tiny, monkeypatch,
                                                       jobs):
    """A run stopped by Ctrl-C ends the sweep (exit 130) rather than being counted failed
    while the next run starts."""
    import dstcli.sweep

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    monkeypatch.setattr(dstcli.sweep, "execute", interrupt_a)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("DST_TEST_MARKS", str(marks))
    sweep = tmp_path / "three.toml"
    sweep.write_text("".join(f'[[row]]\nlabel = "{label}"\nscheduler = "{scheduler}"\n'
                             for label, scheduler in (("A", "mtl"), ("B", "random"),
                                                      ("C", "dtp"), ("D", "graddrop"))))
    result = runner.invoke(app, ["ablate", str(sweep), "--app", "omniglot", "--data",
                                 str(omniglot_tiny), "--jobs", jobs,
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 130, result.output
    assert re.search(r"^interrupted +\S+ +\(A, seed 0\)", result.output, re.M), result.output
    assert "Run the same command again" in " ".join(result.output.split())
    begun = {p.name for p in marks.iterdir()}
    assert begun == ({"A"} if jobs == "1" else {"A", "B"}), begun
