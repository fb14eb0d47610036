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


def already_prepared(app_name: str, out_dir: Path, force: bool, preset: str,
                     seed: int | None) -> bool:
    """True (and say so) when out_dir holds a finished prepare of this app, at this preset and
    seed, and not --force; an error when it holds one made with another preset or seed.

    Every prepare command asks this before reading raw data: a finished prepare of a real set
    takes hours, so running the command again is a no-op unless --force.
    """
    from dstcli.data.shards import finished_prepare
    from dstcli.errors import DataError

    if force:
        return False
    data = finished_prepare(out_dir, app_name)
    if data is None:
        return False
    had_preset = data.manifest["image"]["preset"]
    had_seed = data.manifest.get("protocol", {}).get("seed")
    if had_preset != preset or (seed is not None and seed != had_seed):
        asked = f"preset {preset}" + (f", seed {seed}" if seed is not None else "")
        raise DataError(f"{out_dir} already holds {app_name} prepared at preset {had_preset} "
                        f"with seed {had_seed}, not {asked}: pass --force to replace it, or "
                        "choose another --out")
    sources = ", ".join(s["path"] for s in data.manifest.get("sources", [])) or "unknown"
    out.print(f"{out_dir} is already prepared ({app_name}, preset {had_preset}, seed "
              f"{had_seed}, from {sources}); nothing to do. Pass --force to prepare it again.")
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
