"""Sweeps: the rows of one of the paper's tables, read from a TOML file in `experiments/`.

A sweep is a list of rows (a label, a scheduler, its options); `plan` crosses it with the
seeds into runs, each with an id derived from its resolved configuration, so that a sweep
started again skips what has finished. `execute` trains and evaluates one run; it takes and
returns plain data so that a process pool and submitit can ship it. torch-free at import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dstcli.errors import ConfigError, DstError

SWEEP_FILE = "sweep.json"  # in each run folder: which sweep row the run belongs to
ROW_KEYS = {"label", "scheduler", "options", "config", "group", "columns", "needs"}
# Run settings a row may change besides its scheduler's options (Table 7's moved head).
ROW_CONFIG_KEYS = {"branch", "encoder_norm", "init_passes"}
TOP_KEYS = {"name", "title", "app", "row"}
# Adaptive Schedule compares with single-task errors: its runs wait for the STL run.
NEEDS_STL = {"adaptive": "stl_results", "early-stop": "stl_results"}


@dataclass(frozen=True)
class SweepRow:
    label: str  # the row's name in the paper's table
    scheduler: str  # a method or a named variant, as `dst train --scheduler`
    options: dict[str, Any] = field(default_factory=dict)  # scheduler options, by field name
    config: dict[str, Any] = field(default_factory=dict)  # run settings, e.g. branch
    group: str = ""  # the table's group ("Details" column of Table 8)
    columns: dict[str, str] = field(default_factory=dict)  # cells printed as the paper does
    needs: str = ""  # a capability dst lacks: the row is reported, never trained
    index: int = 0  # position in the file: the table's row order


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    path: str
    rows: tuple[SweepRow, ...]
    app: str | None = None  # the application the table is about; --app overrides

    def with_all_schedulers(self) -> Sweep:
        """Append one row per registered method that no row uses yet, with its defaults."""
        from dstcli.schedulers import SCHEDULERS, resolve

        used = {resolve(r.scheduler)[0].name for r in self.rows}
        extra = [SweepRow(label=n, scheduler=n, index=len(self.rows) + i)
                 for i, n in enumerate(n for n in SCHEDULERS.names() if n not in used)]
        return dataclasses.replace(self, rows=self.rows + tuple(extra))


def find_sweep(name: str) -> Path:
    """A sweep file: a path, or a name in ./experiments or in the source tree's experiments/."""
    given = Path(name)
    if given.suffix == ".toml" or given.exists():
        if not given.is_file():
            raise DstError(f"sweep file {given} not found")
        return given
    places = [Path.cwd() / "experiments", Path(__file__).resolve().parents[1] / "experiments"]
    for place in places:
        if (place / f"{name}.toml").is_file():
            return place / f"{name}.toml"
    known = sorted({p.stem for place in places if place.is_dir() for p in place.glob("*.toml")})
    raise DstError(f"sweep {name!r} not found in {', '.join(map(str, places))}; "
                   f"known sweeps: {', '.join(known) or 'none'}; or pass a .toml path")


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; every problem is reported together, naming file and row."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise DstError(f"{path} is not valid TOML: {e}") from None
    problems = [f"{path}: unknown key {k!r}; use {', '.join(sorted(TOP_KEYS))}"
                for k in data if k not in TOP_KEYS]
    raw_rows = data.get("row", [])
    if not isinstance(raw_rows, list) or not raw_rows:
        problems.append(f"{path}: no [[row]] tables; a sweep needs at least one row")
        raw_rows = []
    rows, labels = [], set()
    for i, raw in enumerate(raw_rows, start=1):
        where = f"{path}, row {i}" + (f" ({raw['label']!r})" if "label" in raw else "")
        found = [f"{where}: unknown key {k!r}; use {', '.join(sorted(ROW_KEYS))}"
                 for k in raw if k not in ROW_KEYS]
        for key in ("label", "scheduler"):
            if not isinstance(raw.get(key), str) or not raw.get(key):
                found.append(f"{where}: {key} is missing or not a string")
        if raw.get("label") in labels:
            found.append(f"{where}: label repeats an earlier row's; labels name table rows")
        labels.add(raw.get("label"))
        for key in ("options", "config", "columns"):
            if not isinstance(raw.get(key, {}), dict):
                found.append(f"{where}: {key} must be a table, e.g. {key} = {{ ... }}")
        found += [f"{where}: config key {k!r} is not a run setting a row may change; use "
                  f"{', '.join(sorted(ROW_CONFIG_KEYS))}"
                  for k in (raw.get("config") or {}) if k not in ROW_CONFIG_KEYS]
        if not found:
            row = SweepRow(label=raw["label"], scheduler=raw["scheduler"],
                           options=dict(raw.get("options", {})),
                           config=dict(raw.get("config", {})), group=raw.get("group", ""),
                           columns={k: str(v) for k, v in raw.get("columns", {}).items()},
                           needs=raw.get("needs", ""), index=i - 1)
            found += [f"{where}: {p}" for p in option_problems(row)]
            rows.append(row)
        problems += found
    if problems:
        raise ConfigError(problems)
    return Sweep(name=data.get("name", Path(path).stem), title=data.get("title", ""),
                 path=str(path), rows=tuple(rows), app=data.get("app"))


def row_options(row: SweepRow):
    """The row's scheduler options: the method's defaults, the variant's, then the row's."""
    from dstcli.schedulers import resolve

    entry, variant = resolve(row.scheduler)
    return entry.options.from_json({**entry.options().to_json(), **variant, **row.options})


def row_config(row: SweepRow) -> dict[str, Any]:
    """The row's run settings as TrainConfig fields (lists become tuples, as config.json's)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in row.config.items()}


def option_problems(row: SweepRow) -> list[str]:
    from dstcli.schedulers import all_names, resolve

    if row.scheduler not in all_names():
        return [f"scheduler {row.scheduler!r} is unknown; choose one of: "
                f"{', '.join(all_names())}"]
    entry, _ = resolve(row.scheduler)
    fields = {f.name for f in entry.options.option_fields()}
    unknown = [k for k in row.options if k not in fields]
    if unknown:
        return [f"option {k!r} is not an option of {entry.name}; its options: "
                f"{', '.join(sorted(fields)) or 'none'}" for k in unknown]
    try:
        options = row_options(row)
    except (TypeError, ValueError) as e:
        return [f"options {row.options}: {e}"]
    # The STL results are filled in by the sweep itself (see NEEDS_STL).
    return [p for p in options.problems() if "--stl-results" not in p]


@dataclass(frozen=True)
class PlannedRun:
    row: SweepRow
    seed: int
    run_id: str
    config: Any  # TrainConfig, resolved
    after: str | None = None  # run id this run needs finished first

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


def slug(text: str) -> str:
    text = text.replace("α", "a").replace("λ", "l")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def data_identity(data: str) -> Any:
    """What identifies a prepared folder in a run id: its manifest's content (app, image size,
    tasks, splits, protocol, the sources' checksums), not its path, so that run folders copied
    to another machine, or data prepared again elsewhere, keep their ids. A folder without a
    manifest (a dry run before prepare) is named by its path."""
    from dstcli.data.shards import MANIFEST

    manifest_path = Path(data) / MANIFEST if data else None
    if manifest_path is None or not manifest_path.is_file():
        return data
    manifest = json.loads(manifest_path.read_text())
    splits = {name: split.get("samples") for name, split in manifest.get("splits", {}).items()}
    sources = sorted(s.get("sha256") or s.get("path", "") for s in manifest.get("sources", []))
    return {k: manifest.get(k) for k in ("schema_version", "app", "image", "tasks", "protocol")
            } | {"splits": splits, "sources": sources}


def run_id(label: str, config_json: dict[str, Any]) -> str:
    """A readable prefix (the row's label) and a hash of everything that decides the run."""
    decided = {k: v for k, v in config_json.items() if k != "out"}
    decided["data"] = data_identity(decided.get("data") or "")
    options = dict(decided.get("scheduler_options") or {})
    for name in NEEDS_STL.values():
        options.pop(name, None)  # the path of a run; that run's own id is hashed already
    decided["scheduler_options"] = options
    digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:8]
    return f"{slug(label)}-s{config_json['seed']}-{digest}"


def plan(sweep: Sweep, app: str, data: str, seeds: int, out: Path,
         train_values: dict[str, Any]) -> list[PlannedRun]:
    """Every run of the sweep, those that others need first. `train_values` are TrainConfig
    fields given on the command line (epochs, preset, ...)."""
    from dstcli.config import TrainConfig
    from dstcli.schedulers import resolve

    runs: list[PlannedRun] = []
    stl = next((r for r in sweep.rows if resolve(r.scheduler)[0].name == "stl"), None)
    for seed in range(seeds):
        first: dict[str, PlannedRun] = {}
        later = []
        for row in sweep.rows:
            needs_stl = resolve(row.scheduler)[0].name in NEEDS_STL
            config = TrainConfig(app=app, data=data, out="", scheduler=row.scheduler,
                                 scheduler_options=row_options(row), seed=seed,
                                 **train_values, **row_config(row)).resolved()
            if not needs_stl:
                rid = run_id(row.label, config.to_json())
                run = PlannedRun(row, seed, rid, dataclasses.replace(
                    config, out=str(out / app / rid)))
                first[row.label] = run
            else:
                later.append((row, config))
        for row, config in later:
            stl_run = first.get(stl.label) if stl else None
            options = config.scheduler_options
            if stl_run is not None:
                options = dataclasses.replace(options, **{
                    NEEDS_STL[resolve(row.scheduler)[0].name]: str(stl_run.run_dir)})
            config = dataclasses.replace(config, scheduler_options=options)
            rid = run_id(row.label, config.to_json())
            runs_after = stl_run.run_id if stl_run else None
            first[row.label] = PlannedRun(row, seed, rid, dataclasses.replace(
                config, out=str(out / app / rid)), after=runs_after)
        runs += sorted(first.values(), key=lambda r: (r.after is not None, r.row.index))
    return sorted(runs, key=lambda r: (r.after is not None, r.seed, r.row.index))


def plan_problems(runs: list[PlannedRun], sweep: Sweep) -> list[str]:
    """What stops the runs that can start now; each names the sweep file and row."""
    found = []
    for run in runs:
        if run.row.needs or run.finished:
            continue
        for p in run.config.problems():
            if run.after and "--stl-results" in p:
                continue  # made by the STL run, which goes first
            found.append(f"{sweep.path}, row {run.row.index + 1} ({run.row.label!r}), "
                         f"seed {run.seed}: {p}")
    from dstcli.schedulers import resolve

    for run in runs:
        method = resolve(run.config.scheduler)[0].name
        if run.after is None and method in NEEDS_STL and not run.row.needs:
            found.append(f"{sweep.path}, row {run.row.index + 1} ({run.row.label!r}): "
                         f"{run.config.scheduler} needs the single-task results of an stl row "
                         "in the same sweep; add one")
    return list(dict.fromkeys(found))


def task_of(run: PlannedRun, sweep: Sweep) -> dict[str, Any]:
    """What a worker needs to train and evaluate one run, as plain data."""
    return {"run_id": run.run_id, "config": run.config.to_json(),
            "sweep": {"sweep": sweep.name, "label": run.row.label, "group": run.row.group,
                      "columns": run.row.columns, "row": run.row.index, "seed": run.seed,
                      "run_id": run.run_id}}


def execute(task: dict[str, Any]) -> dict[str, Any]:
    """Train (or continue) and evaluate one run; never raises, so that the sweep goes on."""
    began = time.perf_counter()
    try:
        from rich.console import Console

        from dstcli.config import TrainConfig
        from dstcli.train import CHECKPOINT, RUN_RECORD, train

        config = TrainConfig.from_json(task["config"]).validate()
        run_dir = Path(config.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / SWEEP_FILE, task["sweep"])
        with open(run_dir / "sweep.log", "a") as log:
            console = Console(file=log, highlight=False, soft_wrap=True)
            if not (run_dir / RUN_RECORD).is_file():
                train(config, resume=(run_dir / CHECKPOINT).is_file(), console=console,
                      progress=False)
        from dstcli.evaluate import evaluate

        result = evaluate(run_dir)
        return {"run_id": task["run_id"], "ok": True, "error": "",
                "average_error": result["average_error"],
                "seconds": round(time.perf_counter() - began, 1)}
    except Exception as e:  # noqa: BLE001 - a failed run is reported; the sweep goes on
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return {"run_id": task["run_id"], "ok": False, "error": last,
                "seconds": round(time.perf_counter() - began, 1)}


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Launcher:
    """Where runs execute: `local` (a process pool of `jobs`), `slurm` (submitit), or
    `submitit-local` (submitit's local executor: the Slurm code path on this machine)."""

    kind: str = "local"
    jobs: int = 1
    folder: str = "."  # submitit's logs
    partition: str | None = None
    time_min: int = 240
    gpus: int = 1

    def problems(self) -> list[str]:
        found = []
        if self.kind not in ("local", "slurm", "submitit-local"):
            found.append(f"--launcher {self.kind!r}: use local, slurm or submitit-local")
        if self.jobs < 1:
            found.append(f"--jobs {self.jobs}: run at least 1 job at a time")
        if self.kind == "slurm" and not self.partition:
            found.append("--launcher slurm needs --partition (the Slurm partition to use)")
        if self.time_min < 1:
            found.append(f"--time {self.time_min}: give the job's time limit in minutes")
        if self.gpus < 0:
            found.append(f"--gpus {self.gpus}: use 0 or more")
        if self.kind != "local":
            try:
                import submitit  # noqa: F401
            except ImportError:
                found.append(f"--launcher {self.kind} needs submitit: pip install "
                             "'dstcli[slurm]'")
        return found

    def run_all(self, tasks: list[dict[str, Any]],
                on_result: Callable[[dict[str, Any]], None] = lambda result: None
                ) -> list[dict[str, Any]]:
        """Every task's result, in the tasks' order; `on_result` hears of each as it ends."""
        if not tasks:
            return []
        if self.kind == "local":
            if self.jobs == 1:
                return [_told(execute(t), on_result) for t in tasks]
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: a forked child would inherit torch's threads and locks half-held.
            with ProcessPoolExecutor(max_workers=self.jobs,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(execute, t): i for i, t in enumerate(tasks)}
                results: list[dict[str, Any]] = [{}] * len(tasks)
                for future in as_completed(futures):
                    results[futures[future]] = _told(future.result(), on_result)
                return results
        import submitit

        cluster = "local" if self.kind == "submitit-local" else "slurm"
        executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        executor.update_parameters(timeout_min=self.time_min, gpus_per_node=self.gpus,
                                   slurm_array_parallelism=self.jobs,
                                   **({"slurm_partition": self.partition}
                                      if cluster == "slurm" else {}))
        jobs = executor.map_array(execute, tasks)
        results = []
        for job, task in zip(jobs, tasks, strict=True):
            try:
                result = job.result()
            except Exception as e:  # noqa: BLE001 - a lost job is one failed run
                result = {"run_id": task["run_id"], "ok": False,
                          "error": f"{type(e).__name__}: {e}".splitlines()[0], "seconds": 0.0}
            results.append(_told(result, on_result))
        return results


def _told(result: dict[str, Any], on_result: Callable[[dict[str, Any]], None]
          ) -> dict[str, Any]:
    result["status"] = "ran" if result["ok"] else "failed"
    on_result(result)
    return result


def run_sweep(runs: list[PlannedRun], sweep: Sweep, launcher: Launcher,
              on_result: Callable[[dict[str, Any]], None] = lambda result: None
              ) -> list[dict[str, Any]]:
    """Run what has not finished, the runs others need first; returns one result per run
    (status done, ran, failed or needs). `on_result` hears of each run as it ends."""
    results: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.row.needs:
            results[run.run_id] = {"run_id": run.run_id, "ok": False, "status": "needs",
                                   "error": f"needs {run.row.needs}"}
        elif run.finished:
            results[run.run_id] = {"run_id": run.run_id, "ok": True, "status": "done"}
    for wave in (False, True):  # first the runs nobody waits on... then those that wait
        todo = []
        for run in runs:
            if run.run_id in results or (run.after is not None) != wave:
                continue
            need = results.get(run.after) if run.after else None
            if run.after and not (need and need["ok"]):
                results[run.run_id] = {"run_id": run.run_id, "ok": False, "status": "failed",
                                       "error": f"its STL run {run.after} did not finish"}
                continue
            todo.append(task_of(run, sweep))
        for result in launcher.run_all(todo, on_result):
            results[result["run_id"]] = result
    return [results[r.run_id] for r in runs]
