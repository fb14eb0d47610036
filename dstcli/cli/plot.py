"""`dst plot RUN_DIR`: a run's schedule (the paper's Figures 6 and 11), or several runs' task
losses overlaid with `--compare`."""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors
from dstcli.report.plots import FORMATS


def register(app: typer.Typer) -> None:
    @app.command("plot")
    @user_errors
    def plot(
        runs: list[Path] = typer.Argument(..., help="A run folder; several with --compare."),
        out_path: Path | None = typer.Option(None, "--out", help="File to write, without or "
                                             "with a suffix; default: RUN_DIR/schedule."),
        formats: list[str] = typer.Option(list(FORMATS), "--format", help="png, svg or "
                                          "pdf; repeat for several (default: png and svg)."),
        compare: bool = typer.Option(False, "--compare", help="Overlay the training losses of "
                                     "several runs, one panel per task."),
    ) -> None:
        """Per-task training loss, activation probability and gates over the epochs."""
        from dstcli.errors import DstError
        from dstcli.report.plots import plot_compare, plot_schedule

        bad = [f for f in formats if f not in ("png", "svg", "pdf")]
        if bad:
            raise DstError(f"--format {', '.join(bad)}: use png, svg or pdf")
        if compare:
            if out_path is None:
                raise DstError("--compare needs --out: where to write the figure")
            written = plot_compare(runs, out_path, tuple(formats))
        else:
            if len(runs) != 1:
                raise DstError(f"{len(runs)} run folders given: plot one, or pass --compare")
            written = plot_schedule(runs[0], out_path, tuple(formats))
        for path in written:
            out.print(f"wrote {path}")
