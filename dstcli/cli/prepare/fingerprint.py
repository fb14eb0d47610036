"""`dst prepare fingerprint` and `dst prepare fingerprint-manifest`: pairs -> shards.

    dst prepare fingerprint --manifest sd27.csv --manifest must.csv --out data/fp --preset cpu
    dst prepare fingerprint --synthetic 2000 --out data/fp-synth --preset cpu
    dst prepare fingerprint-manifest sd27 --raw /data/NISTSD27 --out sd27.csv
    dst prepare fingerprint-manifest fvc --raw ../shared/data/fvc2002 --out fvc.csv
    dst prepare fingerprint-manifest synthetic --pairs 500 --out synth/

The first reads pair manifests (CSV; docs/data/fingerprint.md) and writes pair shards by the
protocol of data_manifests/fingerprint.toml. The `fingerprint-manifest` commands write such a
CSV from a layout that is known (NIST SD27, FVC folders) or draw the synthetic set; MOLF and
MUST have no public layout, so their CSV is written by whoever holds the data.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors
from dstcli.cli.prepare import SKIP_BAD_HELP, already_prepared, app, report
from dstcli.errors import DataError

manifest_app = typer.Typer(
    help="Write a fingerprint pair manifest (CSV) from a known layout, for `dst prepare "
    "fingerprint --manifest`.",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="fingerprint-manifest")


@app.command("fingerprint")
@user_errors
def fingerprint(
    manifest: list[Path] = typer.Option(None, "--manifest", help="A pair manifest (CSV; "
                                        "docs/data/fingerprint.md); repeat to join sources."),
    synthetic: int | None = typer.Option(None, "--synthetic", min=2, help="Draw this many "
                                         "synthetic pairs into <out>.raw/ and prepare them "
                                         "instead of reading manifests."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the shards into."),
    preset: str = typer.Option("paper", help="Size preset whose input size the images get: "
                               "cpu-tiny, cpu or paper."),
    seed: int | None = typer.Option(None, help="Seed of the subject split (and of the "
                                    "synthetic drawing); default: the protocol's, "
                                    "data_manifests/fingerprint.toml."),
    force: bool = typer.Option(False, "--force", help="Replace an existing prepared folder "
                               "(and, with --synthetic, its raw set)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
) -> None:
    """Fingerprint-latent pairs: two pattern classes, two masks and matching (Table 2)."""
    from dstcli.apps import APPS
    from dstcli.models.presets import get_preset

    if bool(manifest) == (synthetic is not None):
        raise typer.BadParameter("pass --manifest (one or more) or --synthetic N, not both",
                                 param_hint="--manifest / --synthetic")
    get_preset(preset)
    fingerprint_app = APPS.get("fingerprint")
    if synthetic is not None:
        # A synthetic set is redrawn in seconds; its own checks refuse an existing --out.
        manifest_out = fingerprint_app.prepare_synthetic(synthetic, out_dir, preset,
                                                         force=force, seed=seed,
                                                         skip_bad=skip_bad)
    elif already_prepared("fingerprint", out_dir, force, preset, seed):
        return
    else:
        manifest_out = fingerprint_app.prepare(manifest, out_dir, preset, force=force,
                                               seed=seed, skip_bad=skip_bad)
    report(manifest_out, out_dir)


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise DataError(f"{path} already exists; pass --force to replace it")


def _print_warnings(warnings: list[str]) -> None:
    from dstcli.cli.common import err

    for w in warnings:
        err.print(f"[yellow]warning:[/] {w}")


@manifest_app.command("sd27")
@user_errors
def sd27(
    raw: Path = typer.Option(..., "--raw", help="The SD27 folder: the CD (holding DATA/), the "
                             "converted layout (holding image/), or the flat samples."),
    out_csv: Path = typer.Option(..., "--out", help="The pair manifest to write (CSV)."),
    mates: Path | None = typer.Option(None, "--mates", help="Converted layout only: folder "
                                      "whose file numbered NNN is the mate of image/NNN.bmp."),
    seed: int = typer.Option(0, help="Seed of the impostor pairing."),
    force: bool = typer.Option(False, "--force", help="Replace an existing CSV."),
) -> None:
    """NIST SD27: each latent with its mate, and as many impostor pairs."""
    from dstcli.data.sd27 import write_sd27_manifest

    _refuse_existing(out_csv, force)
    layout, rows, warnings = write_sd27_manifest(raw, out_csv, seed=seed, mates=mates)
    out.print(f"wrote {out_csv}: {rows} pairs from the {layout} layout of {raw}")
    _print_warnings(warnings)


@manifest_app.command("fvc")
@user_errors
def fvc(
    raw: list[Path] = typer.Option(..., "--raw", help="A folder of FFF_I.tif prints, or of "
                                   "such sets (DB1_B, DB3_B, ...); repeat for several."),
    out_csv: Path = typer.Option(..., "--out", help="The pair manifest to write (CSV)."),
    test_fraction: float = typer.Option(0.2, help="Share of each set's fingers held out for "
                                        "testing (0 keeps all in training)."),
    seed: int = typer.Option(0, help="Seed of the split and of the impostor pairing."),
    force: bool = typer.Option(False, "--force", help="Replace an existing CSV."),
) -> None:
    """FVC folders: genuine pairs between impressions, impostors across fingers."""
    from dstcli.data.fvc import write_fvc_manifest

    _refuse_existing(out_csv, force)
    prints, rows = write_fvc_manifest(raw, out_csv, test_fraction=test_fraction, seed=seed)
    out.print(f"wrote {out_csv}: {rows} pairs from {prints} prints")


@manifest_app.command("synthetic")
@user_errors
def synthetic_set(
    pairs: int = typer.Option(..., "--pairs", min=2, help="Number of pairs to draw."),
    out_root: Path = typer.Option(..., "--out", help="Folder to draw into (must not exist); "
                                  "its pairs.csv is the manifest."),
    seed: int = typer.Option(0, help="Seed of the drawing."),
) -> None:
    """The synthetic latent-fingerprint set, as images, masks and pairs.csv."""
    from dstcli.data.protocols import load_protocol
    from dstcli.data.synthetic_fingerprint import write_synthetic_fingerprints

    spec = load_protocol("fingerprint")
    synthetic = spec.get("synthetic", {})
    csv_path = write_synthetic_fingerprints(
        out_root, pairs, seed=seed, test_fraction=float(synthetic.get("test_fraction", 0.2)),
        label_fractions=synthetic.get("label_fractions"), classes=tuple(spec["classes"]),
    )
    out.print(f"wrote {csv_path}: {pairs} pairs")
