"""`dst prepare aflw` and `dst prepare mtfl`: face databases -> shards.

    dst prepare aflw --raw AFLW_ROOT --out data/aflw
    dst prepare aflw --synthetic 5000 --out data/aflw-synth --preset cpu
    dst prepare mtfl --raw ../shared/data/mtfl --out data/mtfl --preset cpu

A synthetic AFLW is written into `<out>.raw/` and then read like the real one.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import user_errors
from dstcli.cli.prepare import SKIP_BAD_HELP, already_prepared, app, report

PRESET_HELP = "Size preset whose input size the faces get: cpu-tiny, cpu or paper."
FORCE_HELP = "Replace an existing prepared folder."


@app.command("aflw")
@user_errors
def aflw(
    raw: Path | None = typer.Option(None, "--raw", help="The AFLW root, holding "
                                    "data/aflw.sqlite and data/flickr/."),
    synthetic: int | None = typer.Option(None, "--synthetic", min=1, metavar="N",
                                         help="Instead of --raw: draw N synthetic faces in the "
                                         "AFLW layout (into OUT.raw/) and prepare them."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the shards into."),
    preset: str = typer.Option("paper", help=PRESET_HELP),
    seed: int | None = typer.Option(None, help="Seed of the split, the label shares, the noise "
                                    "and the synthetic faces (default: the protocol's, "
                                    "data_manifests/aflw.toml)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
) -> None:
    """AFLW: gender, spectacles, 21 landmarks, pose and denoising, Table 1's protocol."""
    from dstcli.apps import APPS
    from dstcli.models.presets import get_preset

    if (raw is None) == (synthetic is None):
        raise typer.BadParameter("pass exactly one of --raw AFLW_ROOT or --synthetic N",
                                 param_hint="'--raw' / '--synthetic'")
    get_preset(preset)
    app_ = APPS.get("aflw")
    if synthetic is not None:
        # A synthetic set is redrawn in seconds; its own checks refuse an existing --out.
        manifest = app_.prepare_synthetic(synthetic, out_dir, preset, force=force, seed=seed,
                                          skip_bad=skip_bad)
    elif already_prepared("aflw", out_dir, force, preset, seed):
        return
    else:
        manifest = app_.prepare(raw, out_dir, preset, force=force, seed=seed,
                                skip_bad=skip_bad)
    report(manifest, out_dir)


@app.command("mtfl")
@user_errors
def mtfl(
    raw: Path = typer.Option(..., "--raw", help="The MTFL root, holding training.txt and/or "
                             "testing.txt and the image folders they name."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the shards into."),
    preset: str = typer.Option("paper", help=PRESET_HELP),
    seed: int | None = typer.Option(None, help="Seed of the split (one annotation file only), "
                                    "the label shares and the noise (default: the protocol's, "
                                    "data_manifests/mtfl.toml)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
) -> None:
    """MTFL: gender, spectacles, 5 landmarks, smile, 5 pose bins and denoising."""
    from dstcli.apps import APPS
    from dstcli.models.presets import get_preset

    get_preset(preset)
    if already_prepared("mtfl", out_dir, force, preset, seed):
        return
    manifest = APPS.get("mtfl").prepare(raw, out_dir, preset, force=force, seed=seed,
                                        skip_bad=skip_bad)
    report(manifest, out_dir)
