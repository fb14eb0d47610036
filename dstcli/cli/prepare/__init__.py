"""`dst prepare APP`: raw data in its published layout -> shards + manifest.json.

One module per app in this package, each adding its subcommand to `app`; every module here is
imported, so an app's command is added by adding its file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

from dstcli.cli.common import err, out

app = typer.Typer(help="Turn raw data in its published layout into HDF5 shards.",
                  no_args_is_help=True)


def report(manifest: dict, out_dir: Path) -> None:
    """What a prepare wrote, and what it noticed on the way."""
    splits = manifest["splits"]
    out.print(f"wrote {out_dir}: {len(manifest['tasks'])} tasks, "
              f"{splits['train']['samples']} train and {splits['test']['samples']} test samples, "
              f"{manifest['image']['height']}x{manifest['image']['width']} "
              f"(preset {manifest['image']['preset']})")
    for w in manifest["warnings"]:
        err.print(f"[yellow]warning:[/] {w}")


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
