"""`dst tables`: means and sample standard deviations over seeds, in the paper's order."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from dstcli.cli.main import app

AFLW = {"gender": "accuracy", "spectacles": "accuracy", "landmarks": "nme",
        "pose": "mae_radians", "denoising": "rmse",
        "fp_segmentation": "iou", "lfp_segmentation": "iou", "matching": "eer"}
HIGHER_IS_BETTER = {"accuracy", "iou"}


def write_run(root, name, app_name, scheduler, seed, errors, options=None, sweep=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"app": app_name, "scheduler": scheduler, "seed": seed,
         "scheduler_options": options or {}}))
    tasks = {}
    for task, error in errors.items():
        metric = AFLW.get(task, "accuracy")
        tasks[task] = {"samples": 10, "error": error,
                       metric: 100 - error if metric in HIGHER_IS_BETTER else error}
    (folder / "metrics.json").write_text(json.dumps(
        {"tasks": tasks, "average_error": sum(errors.values()) / len(errors)}))
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
    for i, (scheduler, error) in enumerate([("mtl", 11.0), ("dst", 10.0)]):
        write_run(runs, f"omni-{i}", "omniglot", scheduler, 0, {"a": error, "b": error + 1})
    sweep = {"sweep": "lambdas", "seed": 0}
    write_run(runs, "l-prop", "aflw", "dst", 0, aflw(21.0, 7.0),
              {"lambdas": [0.2] * 5}, {**sweep, "label": "Proposed", "group": "Proposed",
                                      "row": 15, "columns": {"Regularization": "✓"}})
    write_run(runs, "l-mtl", "aflw", "mtl", 0, aflw(21.0, 10.0), {},
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
    assert list(mtfl.columns)[1:-1] == [
        "Gender acc. (%) ↑", "Specs acc. (%) ↑", "Smile acc. (%) ↑", "Landmark err. (%) ↓",
        "Pose acc. (5 classes, %) ↑", "Denoising err. (%) ↓"]
    assert mtfl.loc["DST (Proposed)", "Smile acc. (%) ↑"] == "88.00 ± 2.83"
    table3 = pd.read_csv(res / "table3.csv")
    assert list(table3["Training Method"]) == ["Individually Trained (STL)", "MTL",
                                               "GradNorm (α = 0.5)", "DST (Proposed)"]
    assert list(table3.columns)[2:] == [
        "T1: Gender acc. (%) ↑", "T2: Specs acc. (%) ↑", "T3: Landmark err. (%) ↓",
        "T4: Pose err. (%) ↓", "T5: Denoising err. (%) ↓", "Average Error (%) ↓"]
    mtl = table3.set_index("Training Method").loc["MTL"]
    assert mtl["T1: Gender acc. (%) ↑"] == "78.00 ± 2.00"  # 80, 78, 76: sample std 2
    assert mtl["T3: Landmark err. (%) ↓"] == "11.00 ± 1.00"
    assert table3.set_index("Training Method").loc["DST (Proposed)",
                                                  "T3: Landmark err. (%) ↓"] == "7.00 ± 0.00"
    average = sum(aflw(20.0, 10.0).values()) / 5
    assert mtl["seeds"] == 3 and mtl["Average Error (%) ↓"].startswith(f"{average + 0.6:.2f}")

    table6 = pd.read_csv(res / "table6.csv")
    assert list(table6.columns)[1:] == ["MTL", "DST (Proposed)"]
    assert table6.iloc[0]["DST (Proposed)"] == "10.50 ± 0.00"

    table8 = pd.read_csv(res / "table8.csv", keep_default_na=False)
    assert list(table8["Details"]) == ["Traditional MTL", "Proposed"]
    assert list(table8.iloc[1][["λ_d", "λ_b"]]) == ["0.20", "0.20"]
    assert table8.iloc[1]["Regularization"] == "✓"
    assert "| Training Method |" in (res / "table3.md").read_text()
    assert not (res / "table4.csv").exists()  # no fingerprint run

    long = pd.read_csv(res / "runs-long.csv")
    gender = long[(long.task == "gender") & (long.metric == "accuracy") & (long.seed == 1)
                  & (long.app == "aflw")]
    assert list(gender["value"]) == [78.0]
    assert long[long.task == "average"]["value"].count() == 12  # one line per run


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


def test_segnet_and_unet_fill_table_5_and_stay_out_of_table_4(tmp_path):
    runs = tmp_path / "runs"
    five = {"fp_orientation": 10.0, "lfp_orientation": 20.0, "fp_segmentation": 10.0,
            "lfp_segmentation": 30.0, "matching": 15.0}
    write_run(runs, "stl", "fingerprint", "stl", 0, five)
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
    assert list(table4.index) == ["Individually Trained (STL)"]
    assert table4.loc["Individually Trained (STL)", "seeds"] == 1
    table5 = pd.read_csv(tmp_path / "res" / "table5.csv").set_index("Task")
    assert list(table5.columns) == ["SegNet IoU (x100) ↑", "UNet IoU (x100) ↑",
                                    "Individually Trained (STL) IoU (x100) ↑"]
    # IoU = 100 - error: the segmentation columns read the iou key.
    assert table5.loc["Fingerprint", "SegNet IoU (x100) ↑"] == "70.00 ± 0.00"
