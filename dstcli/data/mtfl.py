"""MTFL, the Multi-Task Facial Landmark set, in its published layout.

`<root>/training.txt` and/or `<root>/testing.txt`, one face a line:

    path x1 .. x5 y1 .. y5 gender smile glasses pose

the five landmarks (left eye, right eye, nose, left and right mouth corner) in pixels of the
image; gender 1 male, 2 female; smile and glasses 1 yes, 2 no; pose 1 (left profile) .. 5 (right
profile). The files met in the wild end lines in CRLF, start most lines with a space, and write
paths with `/` or `\\`; all three are accepted.

Labels in the shards: gender male 0, female 1; spectacles and smile no 0, yes 1; pose the bin
minus one (0..4); landmarks (5, 3) x, y in [0, 1] of the image and visibility; denoising the
clean image. The whole image is the face crop, resized to the preset's input. The noise and
the label shares are AFLW's machinery (dstcli.data.aflw); docs/data/faces.md has the details.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dstcli.data.aflw import FaceRecord
from dstcli.data.bad_items import BadItems
from dstcli.errors import DataError

ANNOTATIONS = ("training.txt", "testing.txt")
POINTS = 5
FIELDS = 1 + 2 * POINTS + 4

# column -> (task, {file value: class index})
CODES = {
    11: ("gender", {1: 0, 2: 1}),
    12: ("smile", {1: 1, 2: 0}),
    13: ("spectacles", {1: 1, 2: 0}),
    14: ("pose", {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}),
}
COLUMN_NAMES = {11: "gender", 12: "smile", 13: "glasses", 14: "head pose"}

# The landmark error's normaliser (TaskSpec.scale): the image width, 1 in input-width units.
# MTFL images are face crops of one size already, so their width is a stable face-box size;
# the span of the five landmarks would shrink with the yaw and inflate the error of profiles.
LANDMARK_SCALE = 1.0


def read_annotations(path: Path, root: Path, bad: BadItems | None = None) -> list[FaceRecord]:
    """Every line of one annotation file as a FaceRecord; a bad line is named (or, with
    --skip-bad, left to `bad`)."""
    bad = bad if bad is not None else BadItems()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e})") from e
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            records.append(_record(fields, where, path, number, root))
        except DataError as e:
            bad.reject(where, e)
    if not records:
        raise DataError(f"{path}: no usable annotation lines")
    return records


def _record(fields: list[str], where: str, path: Path, number: int, root: Path) -> FaceRecord:
    """One annotation line's fields as a FaceRecord; a DataError names what is wrong."""
    if len(fields) != FIELDS:
        raise DataError(f"{where}: {len(fields)} fields, expected {FIELDS} (path, x1..x5, "
                        "y1..y5, gender, smile, glasses, pose)")
    rel = fields[0].replace("\\", "/").lstrip("/")
    try:
        coords = np.array([float(v) for v in fields[1:1 + 2 * POINTS]])
    except ValueError as e:
        raise DataError(f"{where}: a landmark coordinate is not a number ({e})") from e
    if not np.isfinite(coords).all():
        raise DataError(f"{where}: a landmark coordinate is not finite")
    record = FaceRecord(sample_id=f"{path.name}:{number}:{rel}", path=root / rel, box=None,
                        points=np.stack([coords[:POINTS], coords[POINTS:]], axis=1),
                        has={"landmarks", "denoising"}, where=where)
    for column, (task, codes) in CODES.items():
        raw = fields[column]
        value = int(raw) if raw.lstrip("-").isdigit() else None
        if value not in codes:
            raise DataError(f"{where}: {COLUMN_NAMES[column]} is {raw!r}, expected one of "
                            f"{', '.join(map(str, codes))}")
        record.give(task, codes[value])
    return record


def scan(root: Path, bad: BadItems | None = None
         ) -> tuple[dict[str, list[FaceRecord]], list[str]]:
    """The annotation files found under root, by name, with every image checked present.

    A bad line or a missing image fails the scan, or with --skip-bad goes to `bad`.
    """
    bad = bad if bad is not None else BadItems()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (--raw must be the MTFL root, holding "
                        "training.txt and/or testing.txt and the image folders they name)")
    found = {name: read_annotations(root / name, root, bad) for name in ANNOTATIONS
             if (root / name).is_file()}
    if not found:
        raise DataError(f"{root}: neither training.txt nor testing.txt is there; --raw must be "
                        "the MTFL root")
    seen: dict[Path, str] = {}
    for name, records in found.items():
        present = []
        for record in records:
            image = record.path.resolve()
            if image in seen:
                # One face twice would count twice, or sit in both splits.
                bad.reject(record.where, DataError(
                    f"{record.where}: image {record.path} is already listed at "
                    f"{seen[image]}; remove the repeated line"))
                continue
            seen[image] = record.where
            if not record.path.is_file():
                bad.reject(record.where, DataError(
                    f"{record.where}: image {record.path} is missing; restore it from the MTFL "
                    "distribution"))
                continue
            present.append(record)
        if not present:
            raise DataError(f"{root / name}: none of its images is there")
        found[name] = present
    warnings = []
    if len(found) == 1:
        (name,) = found
        warnings.append(f"only {name} is present: its faces are split into train and test by "
                        "the protocol's seeded test_fraction")
    return found, warnings


def split(found: dict[str, list[FaceRecord]], test_fraction: float,
          seed: int) -> tuple[list[FaceRecord], np.ndarray]:
    """All records and (n,) bool is_train: the files' own split, or a seeded one of one file."""
    from dstcli.data.aflw import split_faces

    if len(found) == 2:
        train, test = found["training.txt"], found["testing.txt"]
        is_train = np.concatenate([np.ones(len(train), bool), np.zeros(len(test), bool)])
        return train + test, is_train
    (records,) = found.values()
    n_train = len(records) - round(test_fraction * len(records))
    return records, split_faces(len(records), n_train, seed)
