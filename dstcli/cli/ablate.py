"""`dst ablate SWEEP`: every run of one of the paper's tables, resumable, locally or on Slurm."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from dstcli.cli.common import err, out, user_errors


def register(app: typer.Typer) -> None:
    @app.command("ablate")
    @user_errors
    def ablate(
        sweep_name: str = typer.Argument(..., metavar="SWEEP",
                                         help="A sweep in experiments/ (methods, lambdas, "
                                         "table7, init, loss-norm) or the path of a .toml."),
        app_name: str | None = typer.Option(None, "--app", help="Application; default: the "
                                            "sweep's own (aflw for the ablations)."),
        data: Path | None = typer.Option(None, help="Prepared data folder (dst prepare); "
                                         "optional with --dry-run."),
        seeds: int = typer.Option(1, help="Seeds 0 .. N-1 for every row."),
        jobs: int = typer.Option(1, help="Runs at a time (processes, or Slurm array tasks)."),
        out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder of the run folders "
                                     "(OUT/APP/RUN_ID)."),
        epochs: int | None = typer.Option(None, help="Training epochs of every run."),
        preset: str | None = typer.Option(None, help="Model preset of every run."),
        device: str | None = typer.Option(None, help="Device of every run (auto, cpu, cuda)."),
        lr: float | None = typer.Option(None, help="Learning rate of every run (default: the "
                                        "paper's 5e-5, meant for ImageNet-initialised "
                                        "encoders; from scratch, 1e-3 suits the small presets)."),
        batch_size: int | None = typer.Option(None, help="Batch size of every run."),
        channels_last: bool = typer.Option(False, "--channels-last", help="Every run in "
                                           "channels-last layout (dst train --channels-last)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List the runs; train nothing."),
        all_schedulers: bool = typer.Option(False, "--all-schedulers",
                                            help="Add a row for every other registered "
                                            "scheduler, with its defaults."),
        launcher: str = typer.Option("local", help="local (process pool), slurm (submitit), "
                                     "or submitit-local (the Slurm path on this machine)."),
        partition: str | None = typer.Option(None, help="Slurm partition (--launcher slurm)."),
        time_min: int = typer.Option(240, "--time", help="Slurm time limit per run, minutes."),
        gpus: int = typer.Option(1, help="GPUs per Slurm job."),
        rows: list[str] | None = typer.Option(None, "--rows", help="Only the rows with this "
                                              "label (repeat the flag for more), and the STL "
                                              "runs they need; the others keep for a later "
                                              "call."),
    ) -> None:
        """Train and evaluate a sweep's rows over seeds; finished runs are skipped."""
        from dstcli.errors import ConfigError, DstError
        from dstcli.sweep import (
            Launcher,
            find_sweep,
            load_sweep,
            plan,
            plan_problems,
            run_sweep,
            select_rows,
            twins,
        )

        sweep = load_sweep(find_sweep(sweep_name))
        if all_schedulers:
            sweep = sweep.with_all_schedulers()
        app_name = app_name or sweep.app
        problems = []
        if app_name is None:
            problems.append(f"--app is required: sweep {sweep.name} is not about one "
                            "application (aflw, fingerprint, omniglot, ...)")
        if data is None and not dry_run:
            problems.append("--data is required (a folder made by dst prepare), except with "
                            "--dry-run")
        if seeds < 1:
            problems.append(f"--seeds {seeds}: run at least 1 seed")
        run_on = Launcher(kind=launcher, jobs=jobs, folder=str(out_dir / "submitit"),
                          partition=partition, time_min=time_min, gpus=gpus)
        problems += run_on.problems()
        if problems:
            raise ConfigError(problems)
        values = {k: v for k, v in (("epochs", epochs), ("preset", preset), ("device", device),
                                    ("lr", lr), ("batch_size", batch_size),
                                    ("channels_last", channels_last or None)) if v is not None}
        data_path = str(data.resolve()) if data is not None else ""
        runs = plan(sweep, app_name, data_path, seeds, out_dir.resolve(), values)
        if rows:
            runs = select_rows(runs, sweep, rows)

        if dry_run:
            _list(runs, twins(runs))
            blocked = [r for r in runs if r.row.needs]
            for run in blocked:
                err.print(f"[bold red]error:[/] row {run.row.label!r} needs {run.row.needs}")
            if blocked:
                raise typer.Exit(1)
            return
        found = plan_problems(runs, sweep)
        if found:
            raise ConfigError(found)
        copies = len(twins(runs))
        todo = sum(not (r.finished or r.row.needs) for r in runs) - copies
        err.print(f"sweep {sweep.name}: {len(runs)} runs, {len(runs) - todo - copies} finished "
                  f"or blocked, {copies} to copy from identical runs, {todo} to run on "
                  f"{launcher} ({jobs} at a time)")
        began = time.perf_counter()
        labels = {r.run_id: f"{r.row.label}, seed {r.seed}" for r in runs}

        def report(result: dict) -> None:
            shown = f"{result['status']:<6} {result['run_id']}  ({labels[result['run_id']]})"
            if result["status"] == "reused":
                shown += (f"  average error {result['average_error']:.2f}, the records of "
                          f"{result['reused_from']} (the same configuration)")
            elif result["ok"]:
                shown += (f"  average error {result['average_error']:.2f}, "
                          f"{result['seconds'] / 60:.1f} min")
            else:
                shown += f"  {result['error']}"
            out.print(shown)

        results = run_sweep(runs, sweep, run_on, on_result=report)
        ran = [x for x in results if x["status"] in ("ran", "failed") and "seconds" in x]
        out.print(f"sweep {sweep.name}: {sum(x['status'] == 'ran' for x in results)} ran, "
                  f"{sum(x['status'] == 'done' for x in results)} already done, "
                  f"{sum(x['status'] == 'reused' for x in results)} reused, "
                  f"{len(results) - sum(x['ok'] for x in results)} failed or blocked; "
                  f"{(time.perf_counter() - began) / 60:.1f} min of wall time, "
                  f"{sum(x['seconds'] for x in ran) / 60:.1f} min of run time")
        failed = [(r, x) for r, x in zip(runs, results, strict=True) if not x["ok"]]
        for run, result in failed:
            err.print(f"[bold red]failed:[/] {run.row.label} seed {run.seed} ({run.run_id}): "
                      f"{result['error']}")
        if failed:
            raise DstError(f"{len(failed)} of {len(runs)} runs failed (listed above); the "
                           "others are done. Fix the cause and run the same command again.")


def _list(runs, twin_of: dict[str, str]) -> None:
    """One tab-separated line per run, so that the plan can be read and grepped; `twin_of`
    names the run whose records a run will copy (sweep.twins)."""
    # typer.echo, not rich: rich would expand the tabs.
    typer.echo("\t".join(("label", "scheduler", "options", "config", "seed", "id", "status")))
    for run in runs:
        status = "needs" if run.row.needs else "done" if run.finished else (
            f"reused {twin_of[run.run_id]}" if run.run_id in twin_of else
            f"after {run.after}" if run.after else "to run")
        # The row's own settings: two rows may differ only by them (Table 7's moved head).
        options, config = (json.dumps(values, ensure_ascii=False) if values else "{}"
                           for values in (run.row.options, run.row.config))
        typer.echo("\t".join((run.row.label, run.row.scheduler, options, config,
                              str(run.seed), run.run_id, status)))
