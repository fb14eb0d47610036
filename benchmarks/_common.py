"""What the benchmark scripts share: where they work, and the data they time on."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"  # git ignores it
OMNIGLOT_ZIPS = HERE.parents[1] / "shared" / "data" / "omniglot"


def prepared_faces(faces: int, data: Path | None) -> Path:
    """`data` if given, else a synthetic AFLW of `faces` faces at the cpu preset, prepared once
    into benchmarks/work and reused."""
    from dstcli.apps import APPS

    if data is not None:
        return data
    out = WORK / f"aflw-cpu-{faces}"
    if not (out / "manifest.json").exists():
        APPS.get("aflw").prepare_synthetic(faces, out, "cpu", force=True, seed=0)
    return out


def prepared_omniglot(preset: str, work: Path = WORK) -> Path:
    """The two small official zips (8 distinct alphabets) prepared at `preset` once, as
    `dst prepare omniglot --raw ... --out benchmarks/work/omniglot-<preset>` does."""
    from dstcli.apps import APPS

    out = work / f"omniglot-{preset}"
    if not (out / "manifest.json").exists():
        zips = sorted(OMNIGLOT_ZIPS.glob("images_background_small*.zip"))
        APPS.get("omniglot").prepare(zips, out, preset, force=True)
    return out
