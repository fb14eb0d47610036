"""The paper's Tables 3 to 8 from a folder of finished runs (config.json + metrics.json).

Each cell is "mean ± std" over the seeds of a row (sample standard deviation; 0 with one
seed). A run made by `dst ablate` names its row in sweep.json; a run made by `dst train`
alone is placed by its scheduler and options (`method_label`). Nothing is written for a table
that no run fills.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dstcli.errors import DstError

UP, DOWN = "↑", "↓"
AVERAGE = f"Average Error (%) {DOWN}"
# Table 3's order; Tables 4 and 6 use the same methods.
METHOD_ORDER = ("Individually Trained (STL)", "MTL", "GradNorm (α = 0.5)", "GradNorm (α = 1.0)",
                "GradNorm (α = 1.5)", "LBTW (α = 0.5)", "LBTW (α = 1.0)", "DTP",
                "Adaptive Schedule", "Gradient Drop", "Random (P = 0.50)", "Random (P = 0.75)",
                "DST (Proposed)")
METHOD_SWEEPS = (None, "methods")  # runs that belong in Tables 3 to 6


@dataclass(frozen=True)
class Column:
    task: str
    metric: str  # key in metrics.json's tasks[task]
    header: str


TABLE3 = (Column("gender", "accuracy", f"T1: Gender acc. (%) {UP}"),
          Column("spectacles", "accuracy", f"T2: Specs acc. (%) {UP}"),
          Column("landmarks", "error", f"T3: Landmark err. (%) {DOWN}"),
          Column("pose", "error", f"T4: Pose err. (%) {DOWN}"),
          Column("denoising", "error", f"T5: Denoising err. (%) {DOWN}"))
# MTFL (not in the paper): Table 3's layout over MTFL's own tasks, for `dst prepare mtfl` runs.
TABLE3_MTFL = (Column("gender", "accuracy", f"Gender acc. (%) {UP}"),
               Column("spectacles", "accuracy", f"Specs acc. (%) {UP}"),
               Column("smile", "accuracy", f"Smile acc. (%) {UP}"),
               Column("landmarks", "error", f"Landmark err. (%) {DOWN}"),
               Column("pose", "accuracy", f"Pose acc. (5 classes, %) {UP}"),
               Column("denoising", "error", f"Denoising err. (%) {DOWN}"))
TABLE4 = (Column("fp_orientation", "accuracy", f"T1: Orientation Fingerprint acc. (%) {UP}"),
          Column("lfp_orientation", "accuracy", f"T3: Orientation Latent acc. (%) {UP}"),
          Column("fp_segmentation", "iou", f"T2: Fingerprint Segmentation IoU (x100) {UP}"),
          Column("lfp_segmentation", "iou", f"T4: Latent Segmentation IoU (x100) {UP}"),
          Column("matching", "eer", f"T5: Siamese Verification EER (%) {DOWN}"))
TABLE5_ROWS = (("fp_segmentation", "Fingerprint"), ("lfp_segmentation", "Latent"))
TABLE5_METHODS = ("SegNet", "UNet", "Individually Trained (STL)", "MTL", "DST (Proposed)")
SEGMENTATION_MODELS = {"segnet": "SegNet", "unet": "UNet"}  # --model -> Table 5's column
LAMBDA_HEADERS = ("λ_d", "λ_c", "λ_u", "λ_r", "λ_b")


@dataclass(frozen=True)
class RunResult:
    path: str
    app: str
    scheduler: str
    options: dict[str, Any]
    seed: int
    sweep: str | None
    label: str
    group: str
    columns: dict[str, str]
    row: int
    metrics: dict[str, Any]

    def value(self, task: str, metric: str) -> float:
        if task == "average":
            return float(self.metrics.get("average_error", math.nan))
        return float(self.metrics["tasks"].get(task, {}).get(metric, math.nan))


def method_label(scheduler: str, options: dict[str, Any], model: str | None = None) -> str:
    """The Table 3 row of a run made without a sweep: its method and the option it varies; a
    single-task SegNet or U-Net run (Table 5) is named by its model."""
    from dstcli.schedulers import resolve

    if model in SEGMENTATION_MODELS:
        return SEGMENTATION_MODELS[model]
    try:
        method = resolve(scheduler)[0].name
    except Exception:  # noqa: BLE001 - an unregistered name labels itself
        return scheduler
    if method in ("gradnorm", "lbtw"):
        name = {"gradnorm": "GradNorm", "lbtw": "LBTW"}[method]
        return f"{name} (α = {float(options.get('alpha', 0)):.1f})"
    if method == "random":
        return f"Random (P = {float(options.get('p', 0)):.2f})"
    return {"stl": "Individually Trained (STL)", "mtl": "MTL", "dtp": "DTP",
            "adaptive": "Adaptive Schedule", "graddrop": "Gradient Drop",
            "dst": "DST (Proposed)"}.get(method, method)


def read_runs(runs_dir: Path, skipped: list[Path] | None = None) -> list[RunResult]:
    """Every finished, evaluated run below `runs_dir`; runs scored before their training
    finished (`dst eval --unfinished`) are left out and, if `skipped` is given, listed there."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DstError(f"{runs_dir} is not a folder of runs")
    found = []
    for metrics_path in sorted(runs_dir.rglob("metrics.json")):
        folder = metrics_path.parent
        if not (folder / "config.json").is_file():
            continue
        try:
            config = json.loads((folder / "config.json").read_text())
            metrics = json.loads(metrics_path.read_text())
            sweep = (json.loads((folder / "sweep.json").read_text())
                     if (folder / "sweep.json").is_file() else {})
        except json.JSONDecodeError as e:
            raise DstError(f"{folder}: unreadable JSON ({e}); remove the run or run it again") \
                from None
        if metrics.get("finished") is False:
            if skipped is not None:
                skipped.append(folder)
            continue
        options = config.get("scheduler_options") or {}
        found.append(RunResult(
            path=str(folder), app=config["app"], scheduler=config["scheduler"],
            options=options, seed=int(config.get("seed", 0)), sweep=sweep.get("sweep"),
            label=sweep.get("label") or method_label(config["scheduler"], options,
                                                     config.get("model")),
            group=sweep.get("group", ""), columns=sweep.get("columns", {}),
            row=int(sweep.get("row", 0)), metrics=metrics))
    return found


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return "" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def _group(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    rows: dict[str, list[RunResult]] = {}
    for run in runs:
        rows.setdefault(run.label, []).append(run)
    return rows


def _ordered(labels, order) -> list[str]:
    known = [label for label in order if label in labels]
    return known + sorted(label for label in labels if label not in order)


def method_table(runs: list[RunResult], app: str, columns: tuple[Column, ...]):
    """Tables 3 and 4: one row per method, a column per task, the average error."""
    # SegNet and U-Net train the segmentation tasks alone: Table 5's, not a method row here.
    rows = _group([r for r in runs if r.app == app and r.sweep in METHOD_SWEEPS
                   and r.label not in SEGMENTATION_MODELS.values()])
    table = []
    for label in _ordered(rows, METHOD_ORDER):
        line = {"Training Method": label, "seeds": len(rows[label])}
        for c in columns:
            line[c.header] = cell([r.value(c.task, c.metric) for r in rows[label]])
        line[AVERAGE] = cell([r.value("average", "error") for r in rows[label]])
        table.append(line)
    return table


def table5(runs: list[RunResult]):
    rows = _group([r for r in runs if r.app == "fingerprint" and r.sweep in METHOD_SWEEPS])
    methods = [m for m in TABLE5_METHODS if m in rows]
    if not any(m in rows for m in TABLE5_METHODS[2:]):
        return []
    return [{"Task": name, **{f"{m} IoU (x100) {UP}": cell(
        [r.value(task, "iou") for r in rows[m]]) for m in methods}}
        for task, name in TABLE5_ROWS]


def table6(runs: list[RunResult]):
    rows = _group([r for r in runs if r.app == "omniglot" and r.sweep in METHOD_SWEEPS])
    if not rows:
        return []
    line = {"": f"Average error (%) {DOWN}"}
    for label in _ordered(rows, METHOD_ORDER):
        line[label] = cell([r.value("average", "error") for r in rows[label]])
    return [line]


def ablation_table(runs: list[RunResult], sweep: str, lambdas: bool):
    """Tables 7 and 8: the sweep's rows in its file's order, on AFLW's five tasks."""
    rows = _group([r for r in runs if r.sweep == sweep])
    table = []
    for label in sorted(rows, key=lambda k: rows[k][0].row):
        first = rows[label][0]
        line: dict[str, Any] = {"Details": first.group or label} if lambdas else {
            "Details": label}
        if lambdas:
            line["Row"] = label
            line["Regularization"] = first.columns.get("Regularization", "")
            weights = first.options.get("lambdas") if first.scheduler != "mtl" else None
            for i, name in enumerate(LAMBDA_HEADERS):
                line[name] = f"{weights[i]:.2f}" if weights else ""
        line["seeds"] = len(rows[label])
        for c in TABLE3:
            line[c.header] = cell([r.value(c.task, c.metric) for r in rows[label]])
        line[AVERAGE] = cell([r.value("average", "error") for r in rows[label]])
        table.append(line)
    return table


def run_cost(folder: Path) -> tuple[float, float]:
    """A run's median seconds per training epoch and the percentage of its task-epochs that
    were gated off (from epochs.csv; NaN where the log is missing)."""
    path = Path(folder) / "epochs.csv"
    if not path.is_file():
        return math.nan, math.nan
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = {int(r["epoch"]): float(r["seconds"]) for r in rows if r["phase"] == "train"}
    if not seconds:
        return math.nan, math.nan
    # The gate logged at the end of epoch k is the one epoch k + 1 trains with.
    gates = [int(r["G"]) for r in rows
             if r.get("G") not in (None, "") and int(r["epoch"]) < max(seconds)]
    dropped = 100.0 * (1 - statistics.fmean(gates)) if gates else 0.0
    return statistics.median(seconds.values()), dropped


def cost_table(runs: list[RunResult]) -> list[dict[str, Any]]:
    """What each method costs where it ran, beside what it reached: the average error, the
    median training epoch over its runs (each run's median epoch), relative to MTL's on the
    same app, and the share of task-epochs it dropped. Runs that shared the machine make
    these times comparable only with each other."""
    table = []
    for app in sorted({r.app for r in runs}):
        rows = _group([r for r in runs if r.app == app])
        costs = {label: [run_cost(Path(r.path)) for r in rows[label]] for label in rows}
        epoch = {label: _median([c[0] for c in values]) for label, values in costs.items()}
        mtl = epoch.get("MTL", math.nan)
        for label in _ordered(rows, METHOD_ORDER):
            dropped = _median([c[1] for c in costs[label]])
            table.append({"App": app, "Training Method": label, "seeds": len(rows[label]),
                          AVERAGE: cell([r.value("average", "error") for r in rows[label]]),
                          "seconds per epoch": _fixed(epoch[label], 1),
                          "relative to MTL": _fixed(epoch[label] / mtl, 2),
                          "dropped task-epochs (%)": _fixed(dropped, 0)})
    return table


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _fixed(value: float, digits: int) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def long_rows(runs: list[RunResult]) -> list[dict[str, Any]]:
    """One line per run, task and metric: for pandas, spreadsheets and plots of your own."""
    out = []
    for run in runs:
        base = {"run": run.path, "sweep": run.sweep or "", "label": run.label,
                "group": run.group, "app": run.app, "scheduler": run.scheduler,
                "seed": run.seed}
        for task, values in run.metrics.get("tasks", {}).items():
            for metric, value in values.items():
                if isinstance(value, int | float) and metric != "samples":
                    out.append({**base, "task": task, "metric": metric, "value": value})
        out.append({**base, "task": "average", "metric": "error",
                    "value": run.metrics.get("average_error", math.nan)})
    return out


def build_tables(runs: list[RunResult]) -> dict[str, list[dict[str, Any]]]:
    tables = {"table3": method_table(runs, "aflw", TABLE3),
              "table3-mtfl": method_table(runs, "mtfl", TABLE3_MTFL),
              "table4": method_table(runs, "fingerprint", TABLE4),
              "table5": table5(runs), "table6": table6(runs),
              "table7": ablation_table(runs, "table7", lambdas=False),
              "table8": ablation_table(runs, "lambdas", lambdas=True),
              "costs": cost_table(runs)}
    return {name: rows for name, rows in tables.items() if rows}


def markdown(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_tables(runs_dir: Path, out: Path, skipped: list[Path] | None = None) -> list[Path]:
    """Write tableN.csv and tableN.md for each table the runs fill, costs.csv/.md (epoch
    time and dropped task-epochs per method), and runs-long.csv. Unfinished runs are left
    out (and listed in `skipped`)."""
    import pandas as pd

    runs = read_runs(runs_dir, skipped)
    if not runs:
        raise DstError(f"no finished run below {runs_dir}: a run folder holds config.json and "
                       "metrics.json (dst train, then dst eval; or dst ablate)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in build_tables(runs).items():
        written.append(_atomic(out / f"{name}.csv",
                               lambda p, rows=rows: pd.DataFrame(rows).to_csv(p, index=False)))
        written.append(_atomic(out / f"{name}.md",
                               lambda p, rows=rows: p.write_text(markdown(rows))))
    written.append(_atomic(out / "runs-long.csv",
                           lambda p: pd.DataFrame(long_rows(runs)).to_csv(p, index=False)))
    return written


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
