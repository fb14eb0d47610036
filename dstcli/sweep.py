"""Sweeps: the rows of one of the paper's tables, read from a TOML file in `experiments/`.

A sweep is a list of rows (a label, a scheduler, its options); `plan` crosses it with the
seeds into runs, each with an id derived from its resolved configuration, so that a sweep
started again skips what has finished, and a run identical to a finished one under another
label (same seed and hash) copies its records instead of training. `execute` trains and
evaluates one run; it takes and returns plain data so that a process pool and submitit can
ship it. torch-free at import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dstcli.errors import ConfigError, DstError, Interrupted
from dstcli.records import METRICS_FILE, RUN_RECORD, write_json

SWEEP_FILE = "sweep.json"  # in each run folder: which sweep row the run belongs to
CHECKPOINTS = "checkpoint*.pt"  # the current checkpoint and the previous one
ROW_KEYS = {"label", "scheduler", "options", "config", "group", "columns", "needs", "table"}
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
    table: bool = True  # false: a run others need (an STL run), trained but not a table row
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
        if not isinstance(raw.get("table", True), bool):
            found.append(f"{where}: table must be true or false (false: the row trains, for the "
                         "rows that need it, but is no row of the printed table)")
        if not found:
            row = SweepRow(label=raw["label"], scheduler=raw["scheduler"],
                           options=dict(raw.get("options", {})),
                           config=dict(raw.get("config", {})), group=raw.get("group", ""),
                           columns={k: str(v) for k, v in raw.get("columns", {}).items()},
                           needs=raw.get("needs", ""), table=raw.get("table", True),
                           index=i - 1)
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
        return run_finished(self.run_dir)


def run_finished(run_dir: Path) -> bool:
    """Whether a run folder holds a finished run: its training ended (the trainer's run record)
    and metrics.json scores that end on the test split. A metrics.json of `dst eval --unfinished`
    or of another split (older dst wrote every split there) does not count."""
    metrics_path, record_path = run_dir / METRICS_FILE, run_dir / RUN_RECORD
    if not (metrics_path.is_file() and record_path.is_file()):
        return False

    try:
        metrics = json.loads(metrics_path.read_text())
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # a damaged record: evaluating again rewrites metrics.json

    if metrics.get("split", "test") != "test":
        return False
    if "finished" in metrics:
        return metrics["finished"] is True
    # Written before metrics.json said so (committed runs hold such files): the scores are of
    # the end of training when they are of its last epoch.
    return metrics.get("epoch") == record.get("finished_epoch")


def twin_key(rid: str) -> str:
    """`-s<seed>-<hash>`: what two run ids share when only their rows' labels differ."""
    return "-" + "-".join(rid.rsplit("-", 2)[1:])


def finished_twin(run: PlannedRun) -> Path | None:
    """A finished run beside `run`'s folder with the same seed and hash under another label."""
    key = twin_key(run.run_id)
    found = [other for other in sorted(run.run_dir.parent.glob(f"*{key}"))
             if other.name != run.run_id and other.is_dir() and run_finished(other)]

    # The run that trained rather than a copy of it, so that reused_from names that run.
    return min(found, key=lambda other: reused_from(other) is not None, default=None)


def reused_from(run_dir: Path) -> str | None:
    """The run whose records a run folder holds, if it was made by `reuse`."""
    try:
        return json.loads((run_dir / SWEEP_FILE).read_text()).get("reused_from")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def can_reuse(run: PlannedRun) -> bool:
    """A run that has begun training (a checkpoint) continues its own; copying a twin's records
    over it would leave a checkpoint that does not match them."""
    return not any(run.run_dir.glob(CHECKPOINTS))


def twins(runs: list[PlannedRun]) -> dict[str, str]:
    """Runs that will not train because an identical one (same seed and hash, another label)
    has finished or trains first in this sweep: run id -> the id whose records it gets."""
    pending = [r for r in runs if not (r.row.needs or r.finished)]

    # Runs with a checkpoint train anyway (can_reuse); their twins wait for them.
    first: dict[str, str] = {}
    for run in pending:
        if not can_reuse(run):
            first.setdefault(twin_key(run.run_id), run.run_id)

    found = {}
    for run in pending:
        if not can_reuse(run):
            continue
        key = twin_key(run.run_id)
        source = finished_twin(run)
        if source is not None:
            found[run.run_id] = source.name
        elif key in first:
            found[run.run_id] = first[key]
        else:
            first[key] = run.run_id
    return found


def reuse(run: PlannedRun, sweep: Sweep, source_id: str) -> dict[str, Any]:
    """Make `run`'s folder from the finished run `source_id` (the same configuration under
    another label): its records but its checkpoints, and a sweep.json of `run`'s own row."""
    source = run.run_dir.parent / source_id
    source_id = reused_from(source) or source_id  # a copy's records are its original's
    try:
        shutil.copytree(source, run.run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            CHECKPOINTS, "*.tmp", SWEEP_FILE, METRICS_FILE))

        # config.json names its own folder; the rest of it is what the two runs share.
        config = json.loads((source / "config.json").read_text())
        write_json(run.run_dir / "config.json", {**config, "out": str(run.run_dir)})
        write_json(run.run_dir / SWEEP_FILE, {**task_of(run, sweep)["sweep"],
                                              "reused_from": source_id})

        # metrics.json last: until it lands, the folder does not count as finished.
        metrics = json.loads((source / METRICS_FILE).read_text())
        write_json(run.run_dir / METRICS_FILE, metrics)
    except (OSError, json.JSONDecodeError) as e:
        return {"run_id": run.run_id, "ok": False, "status": "failed", "seconds": 0.0,
                "error": f"copying the records of the identical run {source} failed: {e}"}
    return {"run_id": run.run_id, "ok": True, "status": "reused", "error": "",
            "reused_from": source_id, "average_error": metrics["average_error"],
            "seconds": 0.0}


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


def select_rows(runs: list[PlannedRun], sweep: Sweep, labels: list[str]
                ) -> list[PlannedRun]:
    """The runs of the rows named by `labels`, and the STL runs they wait for, so that a part
    of a sweep can go first (the cheap rows, say) and the rest later under the same ids."""
    known = [r.label for r in sweep.rows]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ConfigError([f"--rows {label!r}: no row of sweep {sweep.name} ({sweep.path}) "
                           "has that label" for label in unknown]
                          + [f"its rows: {', '.join(repr(k) for k in known)}"])

    chosen = {r.run_id for r in runs if r.row.label in labels}
    kept = chosen | {r.after for r in runs if r.run_id in chosen and r.after}
    return [r for r in runs if r.run_id in kept]


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
                      "run_id": run.run_id,
                      # Said only when false, so that older records read the same.
                      **({} if run.row.table else {"table": False})}}


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
        record_row(run_dir, task["sweep"])
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
    except Interrupted as e:  # Ctrl-C: the run saved its checkpoint; the sweep stops
        return {"run_id": task["run_id"], "ok": False, "interrupted": True, "error": str(e),
                "seconds": round(time.perf_counter() - began, 1)}
    except Exception as e:  # noqa: BLE001 - a failed run is reported; the sweep goes on
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return {"run_id": task["run_id"], "ok": False, "error": last,
                "seconds": round(time.perf_counter() - began, 1)}


def record_row(run_dir: Path, row: dict[str, Any]) -> None:
    """Write the sweep row a run serves into its sweep.json. One run can serve rows of several
    sweeps (Table 7's and Table 8's "Proposed" are one run when their configurations agree):
    the first row stays at the top level, the others are listed under `also`, and `dst tables`
    counts the run in each."""
    path = run_dir / SWEEP_FILE
    try:
        current = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        current = None  # a damaged record is written anew
    if not isinstance(current, dict) or not current.get("sweep"):
        write_json(path, row)
        return

    def same(other: dict[str, Any]) -> bool:
        return (other.get("sweep"), other.get("label")) == (row["sweep"], row["label"])

    also = [a for a in current.get("also", []) if not same(a)]
    if same(current):
        updated = {**row, **({"also": also} if also else {})}
    else:
        updated = {**current, "also": [*also, row]}
    if updated != current:  # a finished run's records stay untouched when nothing is new
        write_json(path, updated)


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
                results = []
                for task in tasks:
                    results.append(_told(execute(task), on_result))
                    if results[-1].get("interrupted"):
                        raise SweepInterrupted()
                return results
            return self._run_pool(tasks, on_result)
        import submitit

        cluster = "local" if self.kind == "submitit-local" else "slurm"
        executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        executor.update_parameters(timeout_min=self.time_min, gpus_per_node=self.gpus,
                                   slurm_array_parallelism=self.jobs,
                                   **({"slurm_partition": self.partition}
                                      if cluster == "slurm" else {}))
        jobs = executor.map_array(execute, tasks)
        where = {id(job): i for i, job in enumerate(jobs)}
        results: list[dict[str, Any] | None] = [None] * len(tasks)
        try:
            # Polling the local executor's processes is cheap; Slurm's queue is not.
            for job in submitit.helpers.as_completed(
                    jobs, poll_frequency=1.0 if cluster == "local" else 15.0):
                i = where[id(job)]
                try:
                    result = job.result()
                except Exception as e:  # noqa: BLE001 - a lost job is one failed run
                    result = _lost(tasks[i], f"{type(e).__name__}: {e}".splitlines()[0])
                results[i] = _told(result, on_result)
        except KeyboardInterrupt:
            if cluster == "local":
                raise SweepInterrupted() from None  # its jobs got the Ctrl-C too
            left = sorted({str(jobs[i].job_id).split("_")[0]
                           for i, r in enumerate(results) if r is None})
            raise Interrupted(
                f"stopped waiting; Slurm job(s) {', '.join(left)} still run on the cluster and "
                "write their run folders there. Run the same command again once they have "
                f"ended (squeue -j {left[0] if left else '?'}), not before (it would submit "
                "their runs a second time); cancel them with scancel.") from None
        return results  # type: ignore[return-value]

    def _run_pool(self, tasks: list[dict[str, Any]],
                  on_result: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
        """The tasks in process pools of `jobs`. A worker that dies (killed for memory, a
        segfault) breaks its pool, and the pool ends the runs of its other workers too: the
        runs that had not begun go to a fresh pool, and those that had each run once more
        alone, so that the one that dies alone is the one reported failed."""
        results: list[dict[str, Any] | None] = [None] * len(tasks)

        def finish(i: int, result: dict[str, Any]) -> None:
            results[i] = _told(result, on_result)

        queue, alone = list(range(len(tasks))), []
        while queue or alone:
            batch, width = (queue, self.jobs) if queue else ([alone.pop(0)], 1)
            ended, began, unstarted = _pool_round(tasks, batch, width, finish)
            if not ended and not began:
                # The pool broke before any run began (a worker that cannot even start):
                # another pool would too.
                for i in unstarted:
                    finish(i, _lost(tasks[i], "the process pool broke before the run began "
                                    "(a worker process could not start); try --jobs 1"))
                unstarted = []
            if width == 1 or len(began) == 1:
                for i in began:
                    finish(i, _lost(tasks[i], WORKER_DIED))
            else:
                alone += began
            if batch is queue:
                queue = unstarted
            if any(r is not None and r.get("interrupted") for r in results):
                raise SweepInterrupted()
        return [r for r in results if r is not None]


WORKER_DIED = ("its worker process died while no other run was in progress (killed, e.g. for "
               "lack of memory, or crashed); the run folder keeps the checkpoints it wrote: "
               "run the same command again to resume it")


def _pool_round(tasks: list[dict[str, Any]], batch: list[int], width: int,
                finish: Callable[[int, dict[str, Any]], None]
                ) -> tuple[list[int], list[int], list[int]]:
    """Run the tasks `batch` in one pool of `width` spawned processes, `finish`ing each as it
    ends; returns the tasks that ended, and of those lost to a broken pool (or never given to
    it), the ones that had begun and the ones that had not. A task is handed to the pool only
    when a worker is free, so that an interrupted run or a broken pool stops the rest before
    any of it begins."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ended, broken, pending = [], [], list(batch)
    with tempfile.TemporaryDirectory(prefix="dst-sweep-") as marks:
        # spawn: a forked child would inherit torch's threads and locks half-held.
        with ProcessPoolExecutor(max_workers=min(width, len(batch)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            running: dict[Any, int] = {}
            stop = False
            try:
                while True:
                    while pending and len(running) < width and not stop:
                        i = pending[0]
                        try:
                            future = pool.submit(_in_worker, execute, tasks[i],
                                                 os.path.join(marks, str(i)))
                        except BrokenProcessPool:
                            # A worker died after the last wait: the task stays pending, and
                            # the runs still in the pool end as broken below.
                            stop = True
                            break
                        running[future] = pending.pop(0)
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        i = running.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken.append(i)
                            stop = True
                            continue
                        except Exception as e:  # noqa: BLE001 - e.g. a result not unpickled
                            result = _lost(tasks[i], f"{type(e).__name__}: {e}".splitlines()[0])
                        # Ctrl-C reaches the whole process group: the runs still going stop
                        # too, and the runs not begun wait for the next command.
                        stop = stop or bool(result.get("interrupted"))
                        finish(i, result)
                        ended.append(i)
            except KeyboardInterrupt:
                # Ctrl-C reached this process between runs, or a second time: begin nothing
                # more; the workers save their checkpoints as they stop.
                raise SweepInterrupted() from None

        # A worker marks its task before running it; read once every worker has gone.
        began = [i for i in broken if os.path.exists(os.path.join(marks, str(i)))]
    # pending: never handed to the pool, stopped by a broken pool or an interrupted run.
    return ended, began, [i for i in broken if i not in began] + pending


def _in_worker(run: Callable[[dict[str, Any]], dict[str, Any]], task: dict[str, Any],
               mark: str) -> dict[str, Any]:
    Path(mark).touch()
    return run(task)


def _lost(task: dict[str, Any], error: str) -> dict[str, Any]:
    return {"run_id": task["run_id"], "ok": False, "error": error, "seconds": 0.0}


class SweepInterrupted(Interrupted):
    """Ctrl-C during a sweep: the runs in progress saved their checkpoints, the others wait."""

    def __init__(self) -> None:
        super().__init__("sweep interrupted; the runs in progress saved their checkpoints. Run "
                         "the same command again to go on: finished runs are skipped and "
                         "interrupted ones resume")


def _told(result: dict[str, Any], on_result: Callable[[dict[str, Any]], None]
          ) -> dict[str, Any]:
    result["status"] = ("interrupted" if result.get("interrupted")
                        else "ran" if result["ok"] else "failed")
    on_result(result)
    return result


def run_sweep(runs: list[PlannedRun], sweep: Sweep, launcher: Launcher,
              on_result: Callable[[dict[str, Any]], None] = lambda result: None
              ) -> list[dict[str, Any]]:
    """Run what has not finished, the runs others need first; returns one result per run
    (status done, ran, reused, failed or needs). A run identical to another (same seed and
    hash, another label) is not trained again: it gets a copy of that run's records once that
    run has finished (see `twins`). `on_result` hears of each run as it ends."""
    results: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.row.needs:
            results[run.run_id] = {"run_id": run.run_id, "ok": False, "status": "needs",
                                   "error": f"needs {run.row.needs}"}
        elif run.finished:
            record_row(run.run_dir, task_of(run, sweep)["sweep"])
            results[run.run_id] = {"run_id": run.run_id, "ok": True, "status": "done"}
    twin_of = twins(runs)

    def copy(run: PlannedRun) -> None:
        source = twin_of[run.run_id]
        if run_finished(run.run_dir.parent / source):
            result = reuse(run, sweep, source)
        else:
            result = {"run_id": run.run_id, "ok": False, "status": "failed", "seconds": 0.0,
                      "error": f"it is identical to run {source}, which did not finish"}
        results[run.run_id] = result
        on_result(result)

    for wave in (False, True):  # first the runs nobody waits on... then those that wait
        todo, copies = [], []
        for run in runs:
            if run.run_id in results or (run.after is not None) != wave:
                continue
            need = results.get(run.after) if run.after else None
            if run.after and not (need and need["ok"]):
                results[run.run_id] = {"run_id": run.run_id, "ok": False, "status": "failed",
                                       "error": f"its STL run {run.after} did not finish"}
                on_result(results[run.run_id])
                continue
            if run.run_id not in twin_of:
                todo.append(task_of(run, sweep))
            elif run_finished(run.run_dir.parent / twin_of[run.run_id]):
                copy(run)  # from a run that finished before this sweep began
            else:
                copies.append(run)  # after the run of this wave it is identical to
        for result in launcher.run_all(todo, on_result):
            results[result["run_id"]] = result
        for run in copies:
            copy(run)
    return [results[r.run_id] for r in runs]
