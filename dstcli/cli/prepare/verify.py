"""`dst prepare verify DIR`: is a prepared folder whole?

    dst prepare verify data/omniglot
    dst prepare --verify data/omniglot

Checks what every reader checks (manifest, schema version, shard sizes), then opens each shard
and compares its schema version attribute and every dataset's row count with the manifest.
Exit 0 when whole; 1 with each bad shard named. It reads no image data beyond a last row.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors
from dstcli.cli.prepare import app
from dstcli.errors import DataError


def verify_folder(root: Path) -> None:
    """Print the verdict on a prepared folder; a DataError listing every problem if bad."""
    from dstcli.data.shards import verify_prepared

    problems = verify_prepared(root)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DataError(f"{root} is not a whole prepared folder ({len(problems)} problem(s)):"
                        f"\n{lines}")
    out.print(f"{root} is whole: manifest, schema version and every shard's rows check out")


@app.command("verify")
@user_errors
def verify(
    root: Path = typer.Argument(..., metavar="DIR", help="A prepared folder (`--out` of a "
                                "prepare)."),
) -> None:
    """Check a prepared folder: manifest, schema version, each shard's size and rows."""
    verify_folder(root)
