"""`dst tables RUNS_DIR`: the paper's Tables 3 to 8 as CSV and Markdown, mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors


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
        from dstcli.report.tables import write_tables

        skipped: list[Path] = []
        for path in write_tables(runs_dir, out_dir, skipped):
            out.print(f"wrote {path}")
        for folder in skipped:
            out.print(f"left out {folder}: scored before its training finished "
                      "(dst eval --unfinished)")
