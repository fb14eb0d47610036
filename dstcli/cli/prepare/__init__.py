"""`dst prepare APP`: raw data in its published layout -> shards + manifest.json.

One module per app in this package, each adding its subcommand to `app`; every module here is
imported, so an app's command is added by adding its file. `dst prepare verify DIR` (or
`dst prepare --verify DIR`) checks a prepared folder shard by shard (verify.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

from dstcli.cli.common import err, out, user_errors

app = typer.Typer(help="Turn raw data in its published layout into HDF5 shards.",
                  no_args_is_help=True)

SKIP_BAD_HELP = ("Leave out bad raw items (undecodable or missing images, bad rows, "
                 "duplicates) and list them in skipped.csv beside the shards, instead of "
                 "failing.")


@app.callback(invoke_without_command=True)
@user_errors
def _verify_option(
    ctx: typer.Context,
    verify: Path | None = typer.Option(None, "--verify", metavar="DIR", help="Check a "
                                       "prepared folder (manifest, schema, every shard's rows) "
                                       "and exit: 0 whole, 1 with the bad shard named."),
) -> None:
    if verify is None:
        return
    from dstcli.cli.prepare.verify import verify_folder

    verify_folder(verify)
    raise typer.Exit(0)


def already_prepared(app_name: str, out_dir: Path, force: bool) -> bool:
    """True (and say so) when out_dir holds a finished prepare of this app and not --force.

    Every prepare command asks this before reading raw data: a finished prepare of a real set
    takes hours, so running the command again is a no-op unless --force.
    """
    from dstcli.data.shards import finished_prepare

    if force:
        return False
    data = finished_prepare(out_dir, app_name)
    if data is None:
        return False
    sources = ", ".join(s["path"] for s in data.manifest.get("sources", [])) or "unknown"
    out.print(f"{out_dir} is already prepared ({app_name}, preset "
              f"{data.manifest['image']['preset']}, from {sources}); nothing to do. Pass "
              "--force to prepare it again.")
    return True


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
