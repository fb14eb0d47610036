"""`dst demo`: MTL against DST on a synthetic AFLW, in a few minutes, with no data."""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import err, out, user_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @user_errors
    def demo(
        out_dir: Path = typer.Option(Path("dst-demo"), "--out",
                                     help="Folder for the demo's data, runs, table and plot; "
                                     "a previous demo there is replaced."),
        faces: int = typer.Option(1200, help="Synthetic faces to draw."),
        epochs: int = typer.Option(15, help="Training epochs of each method."),
    ) -> None:
        """Train MTL and DST on a synthetic AFLW; print Table 3, plot DST's schedule."""
        from rich.table import Table

        from dstcli.demo import TABLE3, DemoSettings, run_demo
        from dstcli.errors import DstError

        if faces < 50 or epochs < 1:
            raise DstError("--faces must be at least 50 and --epochs at least 1")
        result = run_demo(out_dir, DemoSettings(faces=faces, epochs=epochs), console=err)

        table = Table(title="Synthetic AFLW, Table 3 layout (one seed)")
        table.add_column("method")
        for _, _, header, higher in TABLE3:
            table.add_column(f"{header} {'↑' if higher else '↓'}", justify="right")
        table.add_column("average error (%) ↓", justify="right")
        for row in result["rows"]:
            table.add_row(*[row["method"]] + [f"{v:.2f}" for k, v in row.items()
                                               if k != "method"])
        out.print(table)
        out.print(f"table: {result['table']}")
        out.print("DST's loss, activation probability and gates: "
                  + ", ".join(str(p) for p in result["figures"]))
