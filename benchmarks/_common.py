"""What the benchmark scripts share: where they work, and the data they time on."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"  # git ignores it
SHARED_DATA = HERE.parents[1] / "shared" / "data"  # the small real sets beside the checkout


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
        zips = sorted((SHARED_DATA / "omniglot").glob("images_background_small*.zip"))
        APPS.get("omniglot").prepare(zips, out, preset, force=True)
    return out


class FixedSubset:
    """n samples of a split drawn once with a fixed seed: the same batches for every method,
    from every alphabet (the shards are ordered by alphabet)."""

    def __init__(self, dataset, n: int):
        import numpy as np

        self.dataset = dataset
        self.data = dataset.data
        self.indices = np.random.default_rng(0).permutation(len(dataset))[:n]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, indices):
        return self.dataset.__getitems__(self.indices[indices].tolist())


def prepared_mtfl(work: Path = WORK) -> Path:
    """../shared/data/mtfl prepared at the cpu preset once."""
    from dstcli.apps import APPS

    out = work / "mtfl-cpu"
    if not (out / "manifest.json").exists():
        APPS.get("mtfl").prepare(SHARED_DATA / "mtfl", out, "cpu", force=True)
    return out


def prepared_pairs(pairs: int, work: Path = WORK) -> Path:
    """A synthetic fingerprint set of `pairs` pairs at the cpu preset, prepared once."""
    from dstcli.apps import APPS

    out = work / f"fingerprint-cpu-{pairs}"
    if not (out / "manifest.json").exists():
        APPS.get("fingerprint").prepare_synthetic(pairs, out, "cpu", force=True, seed=0)
    return out
