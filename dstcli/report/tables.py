"""The paper's Tables 3 to 8 from a folder of finished runs (config.json + metrics.json).

Each cell is "mean ± std" over the seeds of a row (sample standard deviation; 0 with one
seed). A run made by `dst ablate` names its row in sweep.json; a run made by `dst train`
alone is placed by its scheduler and options (`method_label`). A row averages one experiment:
its runs must share their configuration (`experiment`), and each seed counts once. Nothing is
written for a table that no run fills.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dstcli.errors import DstError
from dstcli.records import machine_key

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
# Table 8 names the same task T3 "Coordinates"; Tables 3 and 7 say "Landmark".
TABLE8 = (*TABLE3[:2], Column("landmarks", "error", f"T3: Coordinates err. (%) {DOWN}"),
          *TABLE3[3:])
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
# Ablation sweeps run on another app (`dst ablate lambdas --app mtfl`): that app's tasks.
APP_COLUMNS = {"aflw": TABLE3, "mtfl": TABLE3_MTFL, "fingerprint": TABLE4}
TABLE5_ROWS = (("fp_segmentation", "Fingerprint"), ("lfp_segmentation", "Latent"))
TABLE5_CORNER = f"Segmentation IoU (x100) {UP}"  # the paper prints IoU as a fraction
# Table 5's columns: row label -> the paper's header, in its order; then the STL runs it omits.
TABLE5_COLUMNS = {"SegNet": "SegNet", "UNet": "UNet", "MTL": "MTL", "DST (Proposed)": "DST",
                  "Individually Trained (STL)": "Individually Trained (STL)"}
SEGMENTATION_MODELS = {"segnet": "SegNet", "unet": "UNet"}  # --model -> Table 5's column
# Table 6's columns: row label -> the paper's header, in its order; our other rows follow.
# The paper does not give its GradNorm and LBTW alpha there; 0.5 is the value its section 4
# finds best for both (Tables 3 and 4), and the header says so.
TABLE6_COLUMNS = {"MTL": "MTL", "GradNorm (α = 0.5)": "Grad Norm (α = 0.5)",
                  "LBTW (α = 0.5)": "LBTW (α = 0.5)", "DTP": "DTP",
                  "Adaptive Schedule": "Adap Schedule", "Gradient Drop": "Grad Drop",
                  "DST (Proposed)": "DST"}
LAMBDA_HEADERS = ("λ_d", "λ_c", "λ_u", "λ_r", "λ_b")
# config.json fields that say how or where a run ran, not what ran: the runs of one row may
# differ in them (the seed is what a row averages over).
RUN_ONLY_FIELDS = ("out", "seed", "device", "workers", "checkpoint_every", "channels_last",
                   "compile", "version")


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
    setup: dict[str, Any] = field(default_factory=dict)  # `experiment` of its config.json
    data: str = ""  # the prepared folder it trained on, as config.json names it
    table: bool = True  # false: a sweep row marked `table = false`, left out of its table

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


def read_runs(runs_dir: Path, skipped: list[tuple[Path, str]] | None = None
              ) -> list[RunResult]:
    """Every finished run below `runs_dir` scored on the test split. Runs scored before their
    training finished (`dst eval --unfinished`), or on another split, are left out and, if
    `skipped` is given, listed there with the reason."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DstError(f"{runs_dir} is not a folder of runs")
    found = []
    identities: dict[str, Any] = {}  # data path -> data_identity: one manifest read per folder
    off_table: dict[str, set[str]] = {}  # sweep -> its labels marked `table = false`
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
        why = _left_out(metrics)
        if why:
            if skipped is not None:
                skipped.append((folder, why))
            continue

        options = config.get("scheduler_options") or {}
        data = config.get("data") or ""
        if data not in identities:
            identities[data] = _data_identity(data)
        # A run serves one sweep row, or several when sweeps share it (sweep.json's `also`).
        for row in [sweep, *sweep.get("also", [])]:
            name = row.get("sweep")
            if name and "table" not in row and name not in off_table:
                off_table[name] = _off_table(name)  # sweep.json from before it said so
            label = row.get("label") or method_label(config["scheduler"], options,
                                                     config.get("model"))
            found.append(RunResult(
                path=str(folder), app=config["app"], scheduler=config["scheduler"],
                options=options, seed=int(config.get("seed", 0)), sweep=name, label=label,
                group=row.get("group", ""), columns=row.get("columns", {}),
                row=int(row.get("row", 0)), metrics=metrics,
                setup=experiment(config, identities[data]), data=data,
                table=bool(row.get("table", label not in off_table.get(name, set())))))
    return found


def _left_out(metrics: dict[str, Any]) -> str:
    """Why a metrics.json is no test result of a finished run; "" when it is one."""
    if metrics.get("finished") is False:
        return "scored before its training finished (dst eval --unfinished)"
    # Written by dst eval --split SPLIT before such scores went to metrics-SPLIT.json.
    split = metrics.get("split", "test")
    if split != "test":
        return (f"its metrics.json scores the {split!r} split, not the test split; run "
                "dst eval on it to score the test split")
    return ""


def experiment(config: dict[str, Any], data_identity: Any = None) -> dict[str, Any]:
    """What a run's config.json says about the experiment, one entry per field (scheduler
    options as `scheduler_options.NAME`): the runs of one table row must agree on all of it.
    Left out: RUN_ONLY_FIELDS, and paths that differ between copies of one experiment."""
    from dstcli.sweep import NEEDS_STL

    setup = {k: v for k, v in config.items()
             if k not in RUN_ONLY_FIELDS and k != "scheduler_options"}
    # The prepared data by its manifest's content: two copies of it are one data set.
    if "data" in setup:
        setup["data"] = data_identity if data_identity is not None else setup["data"]
    # torchvision names its weight files by their hash: the name identifies them.
    if setup.get("encoder_weights"):
        setup["encoder_weights"] = Path(setup["encoder_weights"]).name
    # A named variant (gradnorm-1.5) is its method with the options config.json lists.
    setup["scheduler"] = _method(config.get("scheduler", ""))

    for name, value in (config.get("scheduler_options") or {}).items():
        # The STL run of the same seed: another folder for every seed of one experiment.
        if name not in NEEDS_STL.values():
            setup[f"scheduler_options.{name}"] = value
    return setup


def _method(scheduler: str) -> str:
    from dstcli.schedulers import resolve

    try:
        return resolve(scheduler)[0].name
    except Exception:  # noqa: BLE001 - an unregistered name stands for itself
        return scheduler


def _data_identity(data: str) -> Any:
    from dstcli.sweep import data_identity

    try:
        return data_identity(data)
    except (OSError, json.JSONDecodeError):
        return data  # an unreadable manifest: the path is all we know


def _off_table(sweep: str) -> set[str]:
    """The labels of `sweep`'s rows marked `table = false` (Table 7's STL run for early stop):
    trained for other rows, but no row of the paper's table, for a sweep.json written before it
    recorded `table`: the sweep file says so, found by name as `dst ablate` finds it."""
    from dstcli.sweep import find_sweep, load_sweep

    try:
        path = find_sweep(sweep)
    except DstError:
        return set()  # a sweep file kept elsewhere: every row is printed
    return {row.label for row in load_sweep(path).rows if not row.table}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return "" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def _group(runs: list[RunResult], table: str, notes: list[str] | None = None
           ) -> dict[str, list[RunResult]]:
    """The runs of each row (label) of `table`, one per seed. A row averages one experiment:
    runs under one label with different configurations stop the tables (DstError), and a
    seed run twice is counted once, from the first folder (said in `notes`)."""
    rows: dict[str, list[RunResult]] = {}
    for run in runs:
        rows.setdefault(run.label, []).append(run)

    for label, members in rows.items():
        _check_one_experiment(label, table, members)

        by_seed: dict[int, list[RunResult]] = {}
        for run in members:
            by_seed.setdefault(run.seed, []).append(run)
        for seed, repeats in by_seed.items():
            if len(repeats) > 1 and notes is not None:
                notes.append(f"seed {seed} of {label!r} ({repeats[0].app}) was run "
                             f"{len(repeats)} times with one configuration: "
                             f"{', '.join(r.path for r in repeats)}; counted once, from "
                             f"{repeats[0].path}")
        rows[label] = [repeats[0] for repeats in by_seed.values()]
    return rows


def _check_one_experiment(label: str, table: str, runs: list[RunResult]) -> None:
    firsts: dict[str, RunResult] = {}  # one run of each configuration
    for run in runs:
        firsts.setdefault(json.dumps(run.setup, sort_keys=True, default=str), run)
    if len(firsts) < 2:
        return

    examples = list(firsts.values())
    keys = sorted({k for run in examples for k in run.setup})
    differ = [k for k in keys if len({json.dumps(r.setup.get(k), sort_keys=True, default=str)
                                      for r in examples}) > 1]
    lines = [", ".join(f"{k}={_shown(run, k)}" for k in differ) + f": {run.path}"
             for run in examples]
    raise DstError(
        f"{table}: row {label!r} ({examples[0].app}) holds runs of {len(examples)} "
        f"configurations, which differ in {', '.join(differ)}:\n"
        + "\n".join(f"  {line}" for line in lines)
        + "\na row averages the seeds of one experiment: put each configuration's runs in "
        "separate folders and run dst tables on each")


def _shown(run: RunResult, key: str) -> str:
    if key == "data":
        return run.data or "-"  # its path: the manifest's content would fill the screen
    value = run.setup.get(key)
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _ordered(labels, order) -> list[str]:
    known = [label for label in order if label in labels]
    return known + sorted(label for label in labels if label not in order)


def method_table(runs: list[RunResult], app: str, columns: tuple[Column, ...],
                 name: str = "table3", notes: list[str] | None = None):
    """Tables 3 and 4: one row per method, a column per task, the average error, then how
    many seeds (not in the paper)."""
    # SegNet and U-Net train the segmentation tasks alone: Table 5's, not a method row here.
    rows = _group([r for r in runs if r.app == app and r.sweep in METHOD_SWEEPS and r.table
                   and r.label not in SEGMENTATION_MODELS.values()], name, notes)
    table = []
    for label in _ordered(rows, METHOD_ORDER):
        line: dict[str, Any] = {"Training Method": label}
        for c in columns:
            line[c.header] = cell([r.value(c.task, c.metric) for r in rows[label]])
        line[AVERAGE] = cell([r.value("average", "error") for r in rows[label]])
        line["seeds"] = len(rows[label])
        table.append(line)
    return table


def table5(runs: list[RunResult], notes: list[str] | None = None):
    """Segmentation IoU (x100) of the paper's columns, in its order, then of STL."""
    rows = _group([r for r in runs if r.app == "fingerprint" and r.sweep in METHOD_SWEEPS
                   and r.table], "table5", notes)
    if not any(label in rows for label in list(TABLE5_COLUMNS)[2:]):
        return []  # SegNet and UNet alone: nothing to compare them with
    shown = [label for label in TABLE5_COLUMNS if label in rows]
    return [{TABLE5_CORNER: name, **{TABLE5_COLUMNS[label]: cell(
        [r.value(task, "iou") for r in rows[label]]) for label in shown}}
        for task, name in TABLE5_ROWS]


def table6(runs: list[RunResult], notes: list[str] | None = None):
    """Omniglot's average error: the paper's columns in its order, then our other rows."""
    rows = _group([r for r in runs if r.app == "omniglot" and r.sweep in METHOD_SWEEPS
                   and r.table], "table6", notes)
    if not rows:
        return []
    paper = [label for label in TABLE6_COLUMNS if label in rows]
    ours = [label for label in _ordered(rows, METHOD_ORDER) if label not in TABLE6_COLUMNS]
    line = {"": f"Average error (%) {DOWN}"}
    for label in paper + ours:
        line[TABLE6_COLUMNS.get(label, label)] = cell(
            [r.value("average", "error") for r in rows[label]])
    return [line]


def ablation_table(runs: list[RunResult], sweep: str, lambdas: bool, app: str = "aflw",
                   name: str = "table7", notes: list[str] | None = None):
    """Tables 7 and 8: the sweep's runs on `app` (the paper's: AFLW), its rows in its file's
    order, the paper's columns first; Table 8's row label and the seeds last."""
    rows = _group([r for r in runs if r.sweep == sweep and r.app == app and r.table],
                  name, notes)
    if app == "aflw":
        columns = TABLE8 if lambdas else TABLE3
    else:
        columns = APP_COLUMNS.get(app, ())  # an app the paper never ablated: its own tasks
    table = []
    for label in sorted(rows, key=lambda k: rows[k][0].row):
        first = rows[label][0]
        line: dict[str, Any] = {"Details": first.group or label} if lambdas else {
            "Details": label}
        if lambdas:
            line["Regularization"] = first.columns.get("Regularization", "")
            weights = first.options.get("lambdas") if first.scheduler != "mtl" else None
            for i, header in enumerate(LAMBDA_HEADERS):
                line[header] = f"{weights[i]:.2f}" if weights else ""
        for c in columns:
            line[c.header] = cell([r.value(c.task, c.metric) for r in rows[label]])
        line[AVERAGE] = cell([r.value("average", "error") for r in rows[label]])
        if lambdas:
            line["Row"] = label  # Details names the group, as the paper's does
        line["seeds"] = len(rows[label])
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


def cost_table(runs: list[RunResult], notes: list[str] | None = None
               ) -> list[dict[str, Any]]:
    """What each method costs where it ran, beside what it reached: the average error, the
    median training epoch over its runs (each run's median epoch), relative to MTL's on the
    same app, and the share of task-epochs it dropped. One row per app, sweep and label
    (Table 7's "Proposed" and Table 8's may differ). "relative to MTL" is the median over a
    method's runs of each run's epoch over the MTL runs' median epoch on the same machine
    (run.json; runs recorded without one count as one unknown machine), and is left blank
    where no MTL run shared the machine. Runs that shared the machine at the same time make
    these times comparable only with each other."""
    table = []
    for app in sorted({r.app for r in runs}):
        of_app = [r for r in runs if r.app == app]
        # Runs of dst train alone join the methods sweep, as in Tables 3 to 6.
        sweeps = sorted({_sweep_name(r) for r in of_app}, key=lambda s: (s != "methods", s))
        groups = {s: _group([r for r in of_app if _sweep_name(r) == s], "costs", notes)
                  for s in sweeps}
        costs = {(s, label): [run_cost(Path(r.path)) for r in rows[label]]
                 for s, rows in groups.items() for label in rows}
        machines = {(s, label): [machine_key(Path(r.path)) for r in rows[label]]
                    for s, rows in groups.items() for label in rows}
        epoch = {key: _median([c[0] for c in values]) for key, values in costs.items()}
        # MTL's median epoch on each machine: a run is compared only with MTL runs of its own
        # machine (run.json), as epoch times of two machines say nothing of the methods.
        mtl_on: dict[str, list[float]] = {}
        for (seconds, _), where in zip(costs.get(("methods", "MTL"), []),
                                       machines.get(("methods", "MTL"), []), strict=True):
            mtl_on.setdefault(where, []).append(seconds)
        mtl = {where: _median(values) for where, values in mtl_on.items()}
        for s, rows in groups.items():
            for label in _ordered(rows, METHOD_ORDER):
                dropped = _median([c[1] for c in costs[s, label]])
                relative = _median([seconds / mtl.get(where, math.nan) for (seconds, _), where
                                    in zip(costs[s, label], machines[s, label], strict=True)])
                table.append({"App": app, "Sweep": s, "Training Method": label,
                              "seeds": len(rows[label]),
                              AVERAGE: cell([r.value("average", "error") for r in rows[label]]),
                              "seconds per epoch": _fixed(epoch[s, label], 1),
                              "relative to MTL": _fixed(relative, 2),
                              "dropped task-epochs (%)": _fixed(dropped, 0)})
    return table


def _sweep_name(run: RunResult) -> str:
    return "methods" if run.sweep in METHOD_SWEEPS else str(run.sweep)


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


def build_tables(runs: list[RunResult], notes: list[str] | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
    tables = {"table3": method_table(runs, "aflw", TABLE3, "table3", notes),
              "table3-mtfl": method_table(runs, "mtfl", TABLE3_MTFL, "table3-mtfl", notes),
              "table4": method_table(runs, "fingerprint", TABLE4, "table4", notes),
              "table5": table5(runs, notes), "table6": table6(runs, notes)}
    # The paper ablates on AFLW only; the same sweep on another app gets a table of its own.
    for sweep, name, lambdas in (("table7", "table7", False), ("lambdas", "table8", True)):
        for app in sorted({r.app for r in runs if r.sweep == sweep},
                          key=lambda a: (a != "aflw", a)):
            key = name if app == "aflw" else f"{name}-{app}"
            tables[key] = ablation_table(runs, sweep, lambdas, app, key, notes)
    tables["costs"] = cost_table(runs, notes)
    if notes is not None:
        notes[:] = list(dict.fromkeys(notes))  # the tables that share runs say it once
    return {name: rows for name, rows in tables.items() if rows}


def markdown(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_tables(runs_dir: Path, out: Path, skipped: list[tuple[Path, str]] | None = None,
                 notes: list[str] | None = None) -> list[Path]:
    """Write tableN.csv and tableN.md for each table the runs fill, costs.csv/.md (epoch
    time and dropped task-epochs per method), and runs-long.csv. Runs that are no finished
    test result are left out (listed in `skipped` with the reason); seeds counted once
    though run more often are listed in `notes`."""
    import pandas as pd

    runs = read_runs(runs_dir, skipped)
    if not runs:
        raise DstError(f"no finished run below {runs_dir}: a run folder holds config.json and "
                       "metrics.json (dst train, then dst eval; or dst ablate)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in build_tables(runs, notes).items():
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
