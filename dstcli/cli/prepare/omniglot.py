"""`dst prepare omniglot`: the official zips or folders -> shards."""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import user_errors
from dstcli.cli.prepare import SKIP_BAD_HELP, already_prepared, app, report


@app.command("omniglot")
@user_errors
def omniglot(
    raw: list[Path] = typer.Option(..., "--raw", help="An official zip (images_background*.zip, "
                                   "images_evaluation.zip) or a folder holding the layout; "
                                   "repeat for several."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the shards into."),
    preset: str = typer.Option("paper", help="Size preset whose input size the images get: "
                               "cpu-tiny, cpu or paper."),
    seed: int | None = typer.Option(None, help="Seed of the 20% test split (default: the "
                                    "protocol's, data_manifests/omniglot.toml)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing prepared folder."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
) -> None:
    """Omniglot: one classification task per alphabet, 20% of each character held out."""
    from dstcli.apps import APPS
    from dstcli.models.presets import get_preset

    get_preset(preset)
    if already_prepared("omniglot", out_dir, force, preset, seed):
        return
    manifest = APPS.get("omniglot").prepare(raw, out_dir, preset, force=force, seed=seed,
                                            skip_bad=skip_bad)
    report(manifest, out_dir)
