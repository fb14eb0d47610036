"""`dst tables RUNS_DIR`: the paper's Tables 3 to 8 as CSV and Markdown, mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import err, out, user_errors


def register(app: typer.Typer) -> None:
    @app.command("tables")
    @user_errors
    def tables(
        runs_dir: Path = typer.Argument(..., help="Folder holding run folders at any depth "
                                        "(dst ablate --out, or your own dst train runs)."),
        out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for tableN.csv, "
                                     "tableN.md and runs-long.csv."),
    ) -> None:
        """Write table3.csv .. table8.csv (as far as the runs allow) and a long CSV."""
        from rich.markup import escape

        from dstcli.report.tables import write_tables

        skipped: list[tuple[Path, str]] = []
        notes: list[str] = []
        for path in write_tables(runs_dir, out_dir, skipped, notes):
            out.print(f"wrote {path}")
        for folder, why in skipped:
            out.print(escape(f"left out {folder}: {why}"))
        for note in notes:
            err.print(f"[yellow]warning:[/] {escape(note)}")
