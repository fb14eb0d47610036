"""`dst replay RUN_DIR`: recompute a DST run's activation probabilities from its logged losses.

    dst replay runs/dst-s0

Reads the run's config.json (lambdas, beta, count_metric), tasks.json (depth and labelled count
of each task) and epochs.csv (V and the logged P per epoch and task), runs the same rule the
scheduler ran (`dst_components`, after the same carry-forward of missing losses) and compares.
Exit status 0 when every P matches within 1e-9, 1 otherwise. It needs no prepared data, no
checkpoint and no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors

TOLERANCE = 1e-9


def register(app: typer.Typer) -> None:
    @app.command("replay")
    @user_errors
    def replay(
        run_dir: Path = typer.Argument(..., help="A run folder made by dst train --scheduler "
                                                 "dst."),
        table: bool = typer.Option(True, "--table/--no-table",
                                   help="Print the per-epoch, per-task comparison."),
    ) -> None:
        """Check a DST run's logged activation probabilities against the rule, from its V."""
        from dstcli.errors import DstError

        logged, replayed, V, epochs, tasks = replay_run(run_dir)
        worst = float(abs(logged - replayed).max())

        if table:
            out.print(comparison_table(logged, replayed, V, epochs, tasks))
        out.print(f"{len(epochs)} epoch(s) x {len(tasks)} task(s); largest |P logged - P "
                  f"replayed| = {worst:.3g}")
        if not worst <= TOLERANCE:
            raise DstError(f"{run_dir}: the logged P differs from the rule by {worst:.3g} "
                           f"(more than {TOLERANCE:g}); the log does not come from this "
                           "rule and configuration, or was edited")
        out.print(f"match: the logged P is the rule's P within {TOLERANCE:g}")


def replay_run(run_dir: Path):
    """(logged P, replayed P, V, epochs, tasks): (E, K) float arrays, epoch numbers, names."""
    import numpy as np
    import pandas as pd

    from dstcli.config import TrainConfig
    from dstcli.errors import DstError
    from dstcli.schedulers import resolve
    from dstcli.schedulers.dst_rule import dst_components
    from dstcli.schedulers.specs.dst import carry_forward_missing

    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    entry, _ = resolve(config.scheduler)
    if entry.name != "dst":
        raise DstError(f"{run_dir} is a {config.scheduler!r} run (scheduler {entry.name}), not "
                       "a dst run: only DST computes its P from the loss history")
    options = config.resolve_scheduler().scheduler_options

    tasks_path, log_path = run_dir / "tasks.json", run_dir / "epochs.csv"
    for path in (tasks_path, log_path):
        if not path.is_file():
            raise DstError(f"{path} not found: replay needs the tasks.json and epochs.csv that "
                           "dst train writes into the run folder")
    try:
        task_rows = json.loads(tasks_path.read_text())
        names = [t["name"] for t in task_rows]
        depths = [t["depth"] for t in task_rows]
        counts = [t["labelled"] for t in task_rows]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DstError(f"{tasks_path} is not a task list with name, depth and labelled "
                       f"({e})") from None

    log = pd.read_csv(log_path)
    absent = [c for c in ("epoch", "task", "V", "P") if c not in log.columns]
    if absent:
        raise DstError(f"{log_path} has no column(s) {', '.join(absent)}; is it a dst run's "
                       "log?")
    log = log.assign(task=log["task"].astype(str))
    unknown = sorted(set(log["task"]) - set(names))
    if unknown:
        raise DstError(f"{log_path} names task(s) {unknown} that {tasks_path} does not list")

    try:
        V = log.pivot(index="epoch", columns="task", values="V").reindex(columns=names)
        logged = log.pivot(index="epoch", columns="task", values="P").reindex(columns=names)
    except ValueError:
        raise DstError(f"{log_path} holds more than one row for some epoch and task") from None
    epochs = [int(e) for e in V.index]
    if not epochs or epochs != list(range(1, len(epochs) + 1)):
        raise DstError(f"{log_path} should hold epochs 1, 2, ... in turn; it holds {epochs}")
    if logged.isna().any().any():
        raise DstError(f"{log_path} lacks a row (or a P) for some epoch and task")

    try:
        filled = carry_forward_missing(V.to_numpy(dtype=float).tolist(), names)
        replayed = dst_components(np.asarray(filled), depths, counts, options.lambdas,
                                  options.beta, count_metric=options.count_metric).P
    except ValueError as e:
        raise DstError(f"cannot replay {run_dir}: {e}") from None
    return logged.to_numpy(dtype=float), replayed, V.to_numpy(dtype=float), epochs, names


def comparison_table(logged, replayed, V, epochs: list[int], tasks: list[str]):
    from rich.table import Table

    table = Table("epoch", "task", "V", "P logged", "P replayed", "|difference|",
                  title="P of epoch k (it gates epoch k + 1)")
    for i, epoch in enumerate(epochs):
        for j, task in enumerate(tasks):
            diff = abs(logged[i, j] - replayed[i, j])
            mark = "" if diff <= TOLERANCE else "[bold red]"
            table.add_row(str(epoch), task, f"{V[i, j]:.6g}", f"{logged[i, j]:.12f}",
                          f"{replayed[i, j]:.12f}", f"{mark}{diff:.3g}")
    return table
