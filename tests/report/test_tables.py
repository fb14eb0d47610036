"""`dst tables`: means and sample standard deviations over seeds, in the paper's order."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from dstcli.cli.main import app
from dstcli.errors import ConfigError
from dstcli.sweep import find_sweep, load_sweep

AFLW = {"gender": "accuracy", "spectacles": "accuracy", "landmarks": "nme",
        "pose": "mae_radians", "denoising": "rmse",
        "fp_segmentation": "iou", "lfp_segmentation": "iou", "matching": "eer"}
HIGHER_IS_BETTER = {"accuracy", "iou"}


def write_run(root, name, app_name, scheduler, seed, errors, options=None, sweep=None,
              split="test", config=None):
    """A run folder as dst train and dst eval leave it; `config` adds config.json fields."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"app": app_name, "scheduler": scheduler, "seed": seed, "out": str(folder),
         "scheduler_options": options or {}, **(config or {})}))
    tasks = {}
    for task, error in errors.items():
        metric = AFLW.get(task, "accuracy")
        tasks[task] = {"samples": 10, "error": error,
                       metric: 100 - error if metric in HIGHER_IS_BETTER else error}
    (folder / "metrics.json").write_text(json.dumps(
        {"split": split, "tasks": tasks, "average_error": sum(errors.values()) / len(errors)}))
    if sweep:
        (folder / "sweep.json").write_text(json.dumps(sweep))


def aflw(gender, landmarks):
    return {"gender": gender, "spectacles": 4.0, "landmarks": landmarks, "pose": 0.2,
            "denoising": 21.0}


def test_tables_mean_std_and_order(tmp_path):
    runs = tmp_path / "runs"
    # Written out of order: the table must follow the paper's.
    write_run(runs, "dst-0", "aflw", "dst", 0, aflw(20.0, 7.0))
    write_run(runs, "mtl-0", "aflw", "mtl", 0, aflw(20.0, 10.0))
    write_run(runs, "mtl-1", "aflw", "mtl", 1, aflw(22.0, 12.0))
    write_run(runs, "mtl-2", "aflw", "mtl", 2, aflw(24.0, 11.0))
    write_run(runs, "stl-0", "aflw", "stl", 0, aflw(22.0, 8.0))
    write_run(runs, "gn-0", "aflw", "gradnorm", 0, aflw(20.0, 13.0), {"alpha": 0.5})
    # Table 6: the paper's columns (GradNorm and LBTW at alpha 0.5) before our other variants.
    omniglot = [("random", {"p": 0.5}, 10.5), ("mtl", {}, 11.0), ("graddrop", {}, 10.6),
                ("gradnorm", {"alpha": 1.0}, 10.9), ("dst", {}, 10.0),
                ("gradnorm", {"alpha": 0.5}, 10.8)]
    for i, (scheduler, options, error) in enumerate(omniglot):
        write_run(runs, f"omni-{i}", "omniglot", scheduler, 0, {"a": error, "b": error + 1},
                  options)
    # Table 8: folders named against the file's row order, which the table must follow.
    sweep = {"sweep": "lambdas", "seed": 0}
    write_run(runs, "l-a", "aflw", "dst", 0, aflw(21.0, 7.0),
              {"lambdas": [0.2] * 5}, {**sweep, "label": "Proposed", "group": "Proposed",
                                      "row": 15, "columns": {"Regularization": "✓"}})
    write_run(runs, "l-m", "aflw", "dst", 0, aflw(21.0, 9.0),
              {"lambdas": [0.0] + [0.25] * 4},
              {**sweep, "label": "Leave out l_d", "group": "Leave-one metric out", "row": 1,
               "columns": {"Regularization": "✓"}})
    write_run(runs, "l-z", "aflw", "mtl", 0, aflw(21.0, 10.0), {},
              {**sweep, "label": "Traditional MTL", "group": "Traditional MTL", "row": 0})

    for seed, smile in enumerate((10.0, 14.0)):
        write_run(runs, f"mtfl-{seed}", "mtfl", "dst", seed,
                  {"gender": 20.0, "spectacles": 5.0, "smile": smile, "landmarks": 9.0,
                   "pose": 30.0, "denoising": 21.0})

    result = CliRunner().invoke(app, ["tables", str(runs), "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    res = tmp_path / "res"
    mtfl = pd.read_csv(res / "table3-mtfl.csv").set_index("Training Method")
    assert list(mtfl.index) == ["DST (Proposed)"]
    assert list(mtfl.columns) == [
        "Gender acc. (%) ↑", "Specs acc. (%) ↑", "Smile acc. (%) ↑", "Landmark err. (%) ↓",
        "Pose acc. (5 classes, %) ↑", "Denoising err. (%) ↓", "Average Error (%) ↓", "seeds"]
    assert mtfl.loc["DST (Proposed)", "Smile acc. (%) ↑"] == "88.00 ± 2.83"
    table3 = pd.read_csv(res / "table3.csv")
    assert list(table3["Training Method"]) == ["Individually Trained (STL)", "MTL",
                                               "GradNorm (α = 0.5)", "DST (Proposed)"]
    # The paper's columns in its order, then ours.
    assert list(table3.columns) == [
        "Training Method", "T1: Gender acc. (%) ↑", "T2: Specs acc. (%) ↑",
        "T3: Landmark err. (%) ↓", "T4: Pose err. (%) ↓", "T5: Denoising err. (%) ↓",
        "Average Error (%) ↓", "seeds"]
    mtl = table3.set_index("Training Method").loc["MTL"]
    assert mtl["T1: Gender acc. (%) ↑"] == "78.00 ± 2.00"  # 80, 78, 76: sample std 2
    assert mtl["T3: Landmark err. (%) ↓"] == "11.00 ± 1.00"
    assert table3.set_index("Training Method").loc["DST (Proposed)",
                                                  "T3: Landmark err. (%) ↓"] == "7.00 ± 0.00"
    average = sum(aflw(20.0, 10.0).values()) / 5
    assert mtl["seeds"] == 3 and mtl["Average Error (%) ↓"].startswith(f"{average + 0.6:.2f}")

    table6 = pd.read_csv(res / "table6.csv")
    assert list(table6.columns)[1:] == ["MTL", "Grad Norm (α = 0.5)", "Grad Drop", "DST",
                                        "GradNorm (α = 1.0)", "Random (P = 0.50)"]
    assert table6.iloc[0]["DST"] == "10.50 ± 0.00"
    assert table6.iloc[0]["Grad Norm (α = 0.5)"] == "11.30 ± 0.00"

    table8 = pd.read_csv(res / "table8.csv", keep_default_na=False)
    assert list(table8["Row"]) == ["Traditional MTL", "Leave out l_d", "Proposed"]
    assert list(table8["Details"]) == ["Traditional MTL", "Leave-one metric out", "Proposed"]
    assert list(table8.columns) == [
        "Details", "Regularization", "λ_d", "λ_c", "λ_u", "λ_r", "λ_b",
        "T1: Gender acc. (%) ↑", "T2: Specs acc. (%) ↑", "T3: Coordinates err. (%) ↓",
        "T4: Pose err. (%) ↓", "T5: Denoising err. (%) ↓", "Average Error (%) ↓", "Row", "seeds"]
    assert list(table8.iloc[2][["λ_d", "λ_b"]]) == ["0.20", "0.20"]
    assert list(table8.iloc[1][["λ_d", "λ_c"]]) == ["0.00", "0.25"]
    assert table8.iloc[2]["Regularization"] == "✓"
    assert table8.iloc[1]["T3: Coordinates err. (%) ↓"] == "9.00 ± 0.00"
    assert "| Training Method |" in (res / "table3.md").read_text()
    assert not (res / "table4.csv").exists()  # no fingerprint run

    long = pd.read_csv(res / "runs-long.csv")
    gender = long[(long.task == "gender") & (long.metric == "accuracy") & (long.seed == 1)
                  & (long.app == "aflw")]
    assert list(gender["value"]) == [78.0]
    assert long[long.task == "average"]["value"].count() == 17  # one line per run


def write_epochs(folder, seconds, gates):
    """epochs.csv of a two-task run: epoch 1 measures, then one train row per epoch; `gates`
    gives each epoch's logged G for tasks a and b."""
    lines = ["epoch,phase,task,V,labelled,measured_on,seconds,w,G"]
    for epoch, (secs, g) in enumerate(zip(seconds, gates, strict=True), start=1):
        phase = "measure" if epoch == 1 else "train"
        lines += [f"{epoch},{phase},{t},1.0,10,epoch,{secs},1.0,{on}"
                  for t, on in zip("ab", g, strict=True)]
    (folder / "epochs.csv").write_text("\n".join(lines) + "\n")


def test_costs_table_reads_epoch_times_and_gates(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "mtl", "omniglot", "mtl", 0, {"a": 10.0, "b": 11.0})
    write_run(runs, "dst", "omniglot", "dst", 0, {"a": 10.0, "b": 11.0})
    write_epochs(runs / "mtl", [30.0, 10.0, 12.0], [(1, 1)] * 3)
    # G of epoch 1 gates epoch 2 (b off), of epoch 2 gates epoch 3 (both on); the last
    # epoch's G gates nothing that ran.
    write_epochs(runs / "dst", [30.0, 8.0, 9.0], [(1, 0), (1, 1), (0, 0)])

    result = CliRunner().invoke(app, ["tables", str(runs), "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    costs = pd.read_csv(tmp_path / "res" / "costs.csv").set_index("Training Method")
    assert list(costs.index) == ["MTL", "DST (Proposed)"]
    assert costs.loc["MTL", "seconds per epoch"] == 11.0
    assert costs.loc["DST (Proposed)", "seconds per epoch"] == 8.5
    assert costs.loc["DST (Proposed)", "relative to MTL"] == round(8.5 / 11, 2)
    assert costs.loc["DST (Proposed)", "dropped task-epochs (%)"] == 25
    assert costs.loc["MTL", "dropped task-epochs (%)"] == 0
    assert costs.loc["MTL", "Average Error (%) ↓"] == "10.50 ± 0.00"


def test_costs_compare_a_run_only_with_mtl_on_its_own_machine(tmp_path):
    runs = tmp_path / "runs"
    fast = {"host": "a", "cpu": "fast", "cpus": 2, "threads": 1, "device": "cpu", "gpu": None,
            "processes": 1}
    slow = {**fast, "host": "b", "cpu": "slow"}
    # MTL ran on both machines; DST on both; GradNorm only where no MTL ran.
    for name, scheduler, options, seed, seconds, where in (
            ("mtl-a", "mtl", None, 0, 10.0, fast), ("mtl-b", "mtl", None, 1, 40.0, slow),
            ("dst-a", "dst", None, 0, 12.0, fast), ("dst-b", "dst", None, 1, 44.0, slow),
            ("gn", "gradnorm", {"alpha": 0.5}, 0, 5.0, {**fast, "host": "c"})):
        write_run(runs, name, "omniglot", scheduler, seed, {"a": 10.0, "b": 11.0}, options)
        write_epochs(runs / name, [30.0, seconds, seconds], [(1, 1)] * 3)
        (runs / name / "run.json").write_text(json.dumps({"finished_epoch": 3,
                                                          "machine": where}))

    result = CliRunner().invoke(app, ["tables", str(runs), "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    costs = pd.read_csv(tmp_path / "res" / "costs.csv").set_index("Training Method")
    assert costs.loc["MTL", "relative to MTL"] == 1.0
    # 12 / 10 and 44 / 40: the median of 1.2 and 1.1, not (12 + 44) / (10 + 40) mixed.
    assert costs.loc["DST (Proposed)", "relative to MTL"] == 1.15
    assert pd.isna(costs.loc["GradNorm (α = 0.5)", "relative to MTL"])
    assert costs.loc["GradNorm (α = 0.5)", "seconds per epoch"] == 5.0


def test_segnet_and_unet_fill_table_5_and_stay_out_of_table_4(tmp_path):
    runs = tmp_path / "runs"
    five = {"fp_orientation": 10.0, "lfp_orientation": 20.0, "fp_segmentation": 10.0,
            "lfp_segmentation": 30.0, "matching": 15.0}
    write_run(runs, "stl", "fingerprint", "stl", 0, five)
    write_run(runs, "dst", "fingerprint", "dst", 0, {**five, "fp_segmentation": 5.0})
    write_run(runs, "mtl", "fingerprint", "mtl", 0, five)
    for model, error in (("segnet", 30.0), ("unet", 25.0)):
        write_run(runs, model, "fingerprint", "stl", 0,
                  {"fp_segmentation": error, "lfp_segmentation": error + 10})
        config = json.loads((runs / model / "config.json").read_text())
        (runs / model / "config.json").write_text(json.dumps({**config, "model": model}))
    # A run scored before its training finished is left out, and said so.
    write_run(runs, "cut", "fingerprint", "stl", 1, five)
    metrics = json.loads((runs / "cut" / "metrics.json").read_text())
    (runs / "cut" / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))

    result = CliRunner().invoke(app, ["tables", str(runs), "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "left out" in result.output and "cut" in result.output
    table4 = pd.read_csv(tmp_path / "res" / "table4.csv").set_index("Training Method")
    assert list(table4.index) == ["Individually Trained (STL)", "MTL", "DST (Proposed)"]
    assert table4.loc["Individually Trained (STL)", "seeds"] == 1
    # The paper's Table 4 orders the tasks T1, T3, T2, T4, T5.
    assert list(table4.columns) == [
        "T1: Orientation Fingerprint acc. (%) ↑", "T3: Orientation Latent acc. (%) ↑",
        "T2: Fingerprint Segmentation IoU (x100) ↑", "T4: Latent Segmentation IoU (x100) ↑",
        "T5: Siamese Verification EER (%) ↓", "Average Error (%) ↓", "seeds"]
    table5 = pd.read_csv(tmp_path / "res" / "table5.csv").set_index("Segmentation IoU (x100) ↑")
    # The paper's columns (SegNet, UNet, MTL, DST), then the STL run it does not show.
    assert list(table5.index) == ["Fingerprint", "Latent"]
    assert list(table5.columns) == ["SegNet", "UNet", "MTL", "DST", "Individually Trained (STL)"]
    # IoU = 100 - error: the segmentation columns read the iou key.
    assert table5.loc["Fingerprint", "SegNet"] == "70.00 ± 0.00"
    assert table5.loc["Fingerprint", "DST"] == "95.00 ± 0.00"


def tables(runs, out):
    return CliRunner().invoke(app, ["tables", str(runs), "--out", str(out)])


def test_runs_scored_on_another_split_are_left_out_and_named(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "mtl-test", "aflw", "mtl", 0, aflw(20.0, 10.0))
    # Scored on its own training set: far better numbers, and no test result.
    write_run(runs, "mtl-train", "aflw", "mtl", 1, aflw(2.0, 1.0), split="train")

    result = tables(runs, tmp_path / "res")

    assert result.exit_code == 0, result.output
    assert "left out" in result.output and "mtl-train" in result.output
    assert "'train' split" in result.output
    mtl = pd.read_csv(tmp_path / "res" / "table3.csv").set_index("Training Method").loc["MTL"]
    assert mtl["seeds"] == 1 and mtl["T1: Gender acc. (%) ↑"] == "80.00 ± 0.00"
    assert set(pd.read_csv(tmp_path / "res" / "runs-long.csv")["seed"]) == {0}


def prepared(folder, samples):
    """A prepared data folder as far as its identity goes: the manifest."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(
        {"app": "aflw", "splits": {"test": {"samples": samples}}}))
    return str(folder)


def test_a_row_holds_one_configuration_and_each_seed_once(tmp_path):
    runs = tmp_path / "runs"
    # Two copies of one prepared data set, and runs that differ only in how they ran.
    copy_a = prepared(tmp_path / "data" / "a", 10)
    copy_b = prepared(tmp_path / "data" / "b", 10)
    write_run(runs, "first/mtl-0", "aflw", "mtl", 0, aflw(20.0, 10.0),
              config={"data": copy_a, "epochs": 10, "device": "cpu"})
    write_run(runs, "second/mtl-1", "aflw", "mtl", 1, aflw(22.0, 12.0),
              config={"data": copy_b, "epochs": 10, "device": "cuda", "workers": 4})
    # Seed 0 again in another folder: one seed, counted once.
    write_run(runs, "second/mtl-0", "aflw", "mtl", 0, aflw(40.0, 30.0),
              config={"data": copy_b, "epochs": 10})
    # Adaptive Schedule names the STL run of its own seed: a path per seed, one experiment.
    for seed in (0, 1):
        write_run(runs, f"adaptive-{seed}", "aflw", "adaptive", seed, aflw(20.0, 9.0),
                  {"stl_results": f"/runs/stl-{seed}", "adaptive_beta": 1.0},
                  config={"data": copy_a, "epochs": 10})

    result = tables(runs, tmp_path / "res")

    assert result.exit_code == 0, result.output
    table3 = pd.read_csv(tmp_path / "res" / "table3.csv").set_index("Training Method")
    assert table3.loc["MTL", "seeds"] == 2
    assert table3.loc["MTL", "T1: Gender acc. (%) ↑"] == "79.00 ± 1.41"  # 80 and 78
    assert table3.loc["Adaptive Schedule", "seeds"] == 2
    warning = next(line for line in result.output.splitlines() if "seed 0" in line)
    assert "'MTL'" in warning and "first/mtl-0" in warning and "second/mtl-0" in warning

    # Other epochs and other data under the same label: no row averages them.
    write_run(runs, "third/mtl-2", "aflw", "mtl", 2, aflw(20.0, 10.0),
              config={"data": prepared(tmp_path / "data" / "c", 99), "epochs": 20})

    result = tables(runs, tmp_path / "res")

    assert result.exit_code == 1
    for expected in ("'MTL'", "epochs=10", "epochs=20", "data=", "first/mtl-0", "third/mtl-2",
                     "separate folders"):
        assert expected in result.output, expected
    assert "device" not in result.output


def test_table_7_follows_its_file_and_leaves_out_helper_rows_and_other_apps(tmp_path):
    runs = tmp_path / "runs"
    sweep = {"sweep": "table7", "seed": 0}
    # Folders named against the file's row order.
    for folder, label, row, scheduler in (("z", "Proposed", 0, "dst"),
                                          ("y", "Small MTL", 1, "mtl"),
                                          ("x", "STL (for early stop)", 3, "stl"),
                                          ("w", "Early stop", 4, "early-stop"),
                                          ("v", "P'_c", 6, "dst")):
        write_run(runs, folder, "aflw", scheduler, 0, aflw(20.0, 7.0 + row),
                  sweep={**sweep, "label": label, "row": row})
    # sweep.json says so itself (the toml lists no such row).
    write_run(runs, "u", "aflw", "stl", 0, aflw(20.0, 9.0),
              sweep={**sweep, "label": "Helper", "row": 2, "table": False})
    # The same sweep on MTFL: a table of its own, never averaged into AFLW's.
    write_run(runs, "mtfl", "mtfl", "dst", 0,
              {"gender": 20.0, "spectacles": 5.0, "smile": 10.0, "landmarks": 9.0,
               "pose": 30.0, "denoising": 21.0}, sweep={**sweep, "label": "Proposed", "row": 0})

    result = tables(runs, tmp_path / "res")

    assert result.exit_code == 0, result.output
    table7 = pd.read_csv(tmp_path / "res" / "table7.csv")
    # The STL run trains for Early stop but is no row of the paper's Table 7.
    assert list(table7["Details"]) == ["Proposed", "Small MTL", "Early stop", "P'_c"]
    assert list(table7.columns) == [
        "Details", "T1: Gender acc. (%) ↑", "T2: Specs acc. (%) ↑", "T3: Landmark err. (%) ↓",
        "T4: Pose err. (%) ↓", "T5: Denoising err. (%) ↓", "Average Error (%) ↓", "seeds"]
    assert table7.iloc[0]["T3: Landmark err. (%) ↓"] == "7.00 ± 0.00"
    assert table7.iloc[0]["seeds"] == 1
    mtfl = pd.read_csv(tmp_path / "res" / "table7-mtfl.csv")
    assert list(mtfl["Details"]) == ["Proposed"] and "Smile acc. (%) ↑" in mtfl.columns
    costs = pd.read_csv(tmp_path / "res" / "costs.csv")
    assert "STL (for early stop)" in set(costs["Training Method"])


def test_sweep_rows_marked_table_false_are_checked_and_kept(tmp_path):
    rows = load_sweep(find_sweep("table7")).rows
    assert [r.label for r in rows if not r.table] == ["STL (for early stop)"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[row]]\nlabel = "STL"\nscheduler = "stl"\ntable = "no"\n')
    with pytest.raises(ConfigError, match="'STL'.*table must be true or false"):
        load_sweep(bad)
