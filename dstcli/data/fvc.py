"""FVC-style folders (`FFF_I.tif`: finger FFF, impression I) -> a pair manifest.

The Fingerprint Verification Competition sets (FVC2000-2006) name each print `FFF_I.tif`; a
set `DBn_A` or `DBn_B` is one sensor. `--raw` names a folder of prints or a folder of such
sets (../shared/data/fvc2002 holds DB1_B and DB3_B: fingers 101..110, impressions 1..8).

Pairs: every two impressions of one finger make a genuine pair (the earlier impression is the
"fingerprint", the later one plays the latent), and each genuine pair has an impostor twin
whose latent side is an impression of another finger of the same set and split, drawn with a
seed; the two kinds are equal in number. FVC carries no pattern class and no mask, so those
cells stay empty: only the matching task is labelled.

FVC fixes no train/test protocol, so the manifest carries one: per set, a seeded share of the
fingers is held out for testing (subject-disjoint; impostors never cross the split).
"""

from __future__ import annotations

import itertools
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dstcli.errors import DataError

PRINT_FILE = re.compile(r"^(\d+)_(\d+)\.(tif|tiff|bmp|png)$", re.IGNORECASE)


def _prints_in(folder: Path) -> dict[str, dict[int, Path]]:
    fingers: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = PRINT_FILE.match(p.name)
        if m and p.is_file():
            fingers.setdefault(m.group(1), {})[int(m.group(2))] = p
    return fingers


def scan_fvc(raws: list[Path]) -> dict[str, dict[str, dict[int, Path]]]:
    """{set name: {finger: {impression: path}}} from folders of prints or of sets."""
    sets: dict[str, dict[str, dict[int, Path]]] = {}
    for raw in raws:
        raw = Path(raw)
        if not raw.is_dir():
            raise DataError(f"{raw}: no such folder (--raw)")
        found = {raw.name: _prints_in(raw)} if _prints_in(raw) else {
            sub.name: _prints_in(sub) for sub in sorted(raw.iterdir()) if sub.is_dir()
        }
        found = {name: fingers for name, fingers in found.items() if fingers}
        if not found:
            raise DataError(f"{raw}: no FVC prints (FFF_I.tif) in it or in its sub-folders")
        for name, fingers in found.items():
            if name in sets:
                raise DataError(f"{raw}: a set named {name} was already read from another "
                                "--raw; pass each set once")
            sets[name] = fingers
    return sets


def split_fingers(fingers: list[str], test_fraction: float, rng: np.random.Generator
                  ) -> set[str]:
    """The held-out fingers of one set: at least two on each side when a split is asked, so
    that every split can form impostor pairs within itself."""
    if test_fraction <= 0:
        return set()
    n = len(fingers)
    n_test = max(2, round(test_fraction * n))
    if n - n_test < 2:
        raise DataError(f"{n} fingers cannot be split with two or more on each side; pass "
                        "--test-fraction 0 to keep every finger in training")
    return set(np.asarray(sorted(fingers))[rng.permutation(n)[:n_test]].tolist())


def fvc_rows(sets: dict[str, dict[str, dict[int, Path]]], test_fraction: float, seed: int
             ) -> list[dict[str, Any]]:
    rows = []
    used: set[tuple[Path, Path]] = set()
    for name in sorted(sets):
        fingers = sets[name]
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        held_out = split_fingers(list(fingers), test_fraction, rng)
        for finger in sorted(fingers):
            split = "test" if finger in held_out else "train"
            others = [f for f in sorted(fingers)
                      if f != finger and (f in held_out) == (finger in held_out)]
            if not others:
                raise DataError(f"set {name}: finger {finger} is alone in the {split} split; "
                                "impostor pairs need another finger")
            impressions = fingers[finger]
            subject = f"{name}_{finger}"
            for first, second in itertools.combinations(sorted(impressions), 2):
                common = {"fingerprint": impressions[first], "source": "fvc", "split": split,
                          "fingerprint_subject": subject, "fingerprint_finger": finger}
                rows.append({**common, "latent": impressions[second], "match": 1,
                             "subject": subject, "finger": finger})
                # A fresh impostor for this print: the same pair twice would count twice.
                candidates = [(o, p) for o in others for p in sorted(fingers[o])
                              if (impressions[first], fingers[o][p]) not in used]
                if not candidates:
                    continue
                other, pick = candidates[rng.integers(len(candidates))]
                used.add((impressions[first], fingers[other][pick]))
                rows.append({**common, "latent": fingers[other][pick], "match": 0,
                             "subject": f"{name}_{other}", "finger": other})
    return rows


def write_fvc_manifest(raws: list[Path], out: Path, test_fraction: float = 0.2, seed: int = 0
                       ) -> tuple[int, int]:
    """Scan FVC folders and write their pair manifest: (prints found, rows written)."""
    from dstcli.data.pair_manifest import write_pair_manifest

    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction {test_fraction} must lie in [0, 1)")
    sets = scan_fvc(raws)
    rows = fvc_rows(sets, test_fraction, seed)
    if not rows:
        raise DataError("no finger has two impressions: no pair can be formed")
    write_pair_manifest(out, rows)
    return sum(len(i) for f in sets.values() for i in f.values()), len(rows)
