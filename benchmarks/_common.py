"""What the benchmark scripts share: where they work, and the data they time on."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"  # git ignores it
SHARED_DATA = HERE.parents[1] / "shared" / "data"  # the small real sets beside the checkout


def _prepared_once(out: Path, app: str, prepare: str, *args, **kwargs) -> Path:
    """`out`, prepared by the app's `prepare` (or `prepare_synthetic`) the first time only."""
    from dstcli.apps import APPS
    from dstcli.data.shards import MANIFEST

    if not (out / MANIFEST).exists():
        getattr(APPS.get(app), prepare)(*args, out, **kwargs, force=True)
    return out


def prepared_faces(faces: int, data: Path | None) -> Path:
    """`data` if given, else a synthetic AFLW of `faces` faces at the cpu preset, prepared once
    into benchmarks/work and reused."""
    if data is not None:
        return data
    return _prepared_once(WORK / f"aflw-cpu-{faces}", "aflw", "prepare_synthetic", faces,
                          preset="cpu", seed=0)


def omniglot_parser(doc: str, **counts: int):
    """The arguments of the benchmarks that time methods on Omniglot: `counts` (e.g.
    steps=20) as integer flags, then the batch size, the preset and the working folder."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in counts.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--work", type=Path, default=WORK)
    return parser


def prepared_omniglot(preset: str, work: Path = WORK) -> Path:
    """The two small official zips (8 distinct alphabets) prepared at `preset` once, as
    `dst prepare omniglot --raw ... --out benchmarks/work/omniglot-<preset>` does."""
    zips = sorted((SHARED_DATA / "omniglot").glob("images_background_small*.zip"))
    return _prepared_once(work / f"omniglot-{preset}", "omniglot", "prepare", zips,
                          preset=preset)


def prepared_mtfl(work: Path = WORK) -> Path:
    """../shared/data/mtfl prepared at the cpu preset once."""
    return _prepared_once(work / "mtfl-cpu", "mtfl", "prepare", SHARED_DATA / "mtfl",
                          preset="cpu")


def prepared_pairs(pairs: int, work: Path = WORK) -> Path:
    """A synthetic fingerprint set of `pairs` pairs at the cpu preset, prepared once."""
    return _prepared_once(work / f"fingerprint-cpu-{pairs}", "fingerprint", "prepare_synthetic",
                          pairs, preset="cpu", seed=0)


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
