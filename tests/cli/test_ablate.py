"""`dst ablate`: the sweeps' rows, the plan, and a sweep that resumes where it stopped."""

from __future__ import annotations

import json

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


def planned(args: list[str]) -> list[list[str]]:
    result = runner.invoke(app, ["ablate", *args, "--dry-run"])
    lines = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert lines[0] == ["label", "scheduler", "options", "seed", "id", "status"]
    return lines[1:]


def test_lambdas_dry_run_lists_table8():
    rows = planned(["lambdas"])
    assert len(rows) == 16
    assert rows[0][:2] == ["Leave out l_d", "dst"]
    import json

    lambdas = [tuple(json.loads(r[2])["lambdas"]) for r in rows]
    assert lambdas == TABLE8_LAMBDAS
    assert rows[-1][0] == "Proposed"
    assert len({r[4] for r in rows}) == 16  # one run folder per row


def test_methods_lists_table3_in_order():
    sweep = load_sweep(find_sweep("methods"))
    assert [r.label for r in sweep.rows] == TABLE3_LABELS
    rows = planned(["methods", "--app", "omniglot", "--seeds", "2"])
    assert len(rows) == 26
    # The STL runs go before Adaptive Schedule, which waits for its own seed's STL run.
    adaptive = [r for r in rows if r[0] == "Adaptive Schedule"]
    stl = {r[3]: r[4] for r in rows if r[1] == "stl"}
    assert rows[-2:] == adaptive
    assert [a[5] for a in adaptive] == [f"after {stl['0']}", f"after {stl['1']}"]
    extra = planned(["methods", "--app", "omniglot", "--all-schedulers"])
    assert len(extra) > 13 and {"uw", "dwa"} <= {r[1] for r in extra}


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


def test_sweep_resumes_only_what_did_not_finish(tmp_path, omniglot_tiny):
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL)
    args = ["ablate", str(sweep), "--app", "omniglot", "--data", str(omniglot_tiny),
            "--epochs", "1", "--device", "cpu", "--lr", "0.002", "--batch-size", "8",
            "--channels-last", "--out", str(tmp_path / "runs")]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output  # the `needs` row fails; the others ran
    assert "needs a feature dst lacks" in first.output
    metrics = sorted((tmp_path / "runs" / "omniglot").glob("*/metrics.json"))
    assert len(metrics) == 2
    config = json.loads((metrics[0].parent / "config.json").read_text())
    assert (config["lr"], config["batch_size"], config["channels_last"]) == (0.002, 8, True)
    kept, removed = metrics
    kept_time = kept.stat().st_mtime_ns
    removed.unlink()

    second = runner.invoke(app, args)
    assert second.exit_code == 1
    assert second.output.count("ran    ") == 1 and "1 ran, 1 already done" in second.output
    assert removed.is_file()
    assert kept.stat().st_mtime_ns == kept_time


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
    assert early[1] == "early-stop" and early[5].startswith("after ")  # waits for its STL run
    assert "inverse" in labels["P'_c"][2]


def test_run_ids_follow_the_data_not_its_path(tmp_path, omniglot_tiny):
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(omniglot_tiny, moved)
    listings = [runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--data",
                                    str(data), "--dry-run"]) for data in (omniglot_tiny, moved)]
    ids = [[line.split("\t")[4] for line in r.output.splitlines()[1:]] for r in listings]
    assert listings[0].exit_code == 0 and ids[0] and ids[0] == ids[1]

    # Other data (another split seed) is another run.
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["protocol"]["seed"] = 99
    (moved / "manifest.json").write_text(json.dumps(manifest))
    other = runner.invoke(app, ["ablate", "methods", "--app", "omniglot", "--data", str(moved),
                                "--dry-run"])
    assert not set(ids[0]) & {line.split("\t")[4] for line in other.output.splitlines()[1:]}


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
    assert "2 ran, 0 already done, 0 failed or blocked" in result.output
