"""What the benchmark scripts share: where they work, and the synthetic AFLW they time on."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"  # git ignores it


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
