"""AFLW in its published layout, and the face machinery MTFL shares with it.

Reads `<root>/data/aflw.sqlite` and the images under `<root>/data/flickr/` (FaceImages.filepath
is relative to that folder, e.g. `3/image04573.jpg`), one sample per face:

    gender       FaceMetaData.sex 'm' -> 0, 'f' -> 1, anything else unlabelled
    spectacles   FaceMetaData.glasses 0 -> 0, 1 -> 1
    landmarks    FeatureCoords feature_id 1..21; a missing row is a landmark not seen
    pose         FacePose roll, pitch, yaw in radians; -2*pi (undefined) leaves it unlabelled
    denoising    the clean crop; the network's input is its speckled copy

The face is cropped as a square around FaceRect, with a margin, and resized to the preset's
input; its landmarks move with it. The protocol (data_manifests/aflw.toml) splits the faces,
keeps a seeded share of each task's training labels, and adds the noise. Everything after the
database is shared with MTFL (`FaceRecord`, `split_faces`, `keep_labels`, `write_faces`);
docs/data/faces.md describes it all.
"""

from __future__ import annotations

import math
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dstcli.data.bad_items import BadItems
from dstcli.errors import DataError

SQLITE = Path("data") / "aflw.sqlite"
IMAGES = Path("data") / "flickr"
POINTS = 21
UNDEFINED_ANGLE = -2 * math.pi
BLOCK = 256  # faces decoded and appended at a time: bounded memory for any number of faces

# What the reader needs from each table; the other tables and columns may be there or not.
REQUIRED = {
    "Faces": ("face_id", "file_id"),
    "FaceImages": ("file_id", "filepath"),
    "FaceRect": ("face_id", "x", "y", "w", "h"),
    "FaceMetaData": ("face_id", "sex", "glasses"),
    "FacePose": ("face_id", "roll", "pitch", "yaw"),
    "FeatureCoords": ("face_id", "feature_id", "x", "y"),
}

# The seeded streams of one protocol seed, so that changing how one is used moves no other.
SPLIT_STREAM, LABEL_STREAM, NOISE_STREAM = 1, 2, 3


# ---------------------------------------------------------------------------------------------
# Shared by the face apps


@dataclass
class FaceRecord:
    """One face before decoding: where it is and what is known about it."""

    sample_id: str
    path: Path
    box: tuple[float, float, float, float] | None  # crop in image pixels; None = whole image
    labels: dict[str, Any] = field(default_factory=dict)  # class index or pose, by task
    points: np.ndarray | None = None  # (L, 2) landmarks in image pixels, NaN where not seen
    has: set[str] = field(default_factory=set)  # tasks this face has a label for
    where: str = ""  # how error messages name the face ("face 39341", "testing.txt:12")
    near_duplicate: bool = False  # AFLW's NearDuplicates table lists the face

    def give(self, task: str, value: Any) -> None:
        self.labels[task] = value
        self.has.add(task)


@dataclass(frozen=True)
class Noise:
    """Speckle on a share of the pixel positions: v -> v * (1 + n), n ~ N(0, variance)."""

    pixel_fraction: float
    variance: float

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A noisy copy of a (C, H, W) uint8 image; the same positions in every channel."""
        c, h, w = clean.shape
        flat = clean.reshape(c, h * w)
        where = rng.choice(h * w, size=round(self.pixel_fraction * h * w), replace=False)
        picked = flat[:, where].astype(np.float32)  # (C, k)
        picked *= 1.0 + rng.normal(0.0, math.sqrt(self.variance), picked.shape)
        noisy = flat.copy()
        noisy[:, where] = np.clip(np.rint(picked), 0, 255).astype(np.uint8)
        return noisy.reshape(c, h, w)


def stream(seed: int, kind: int, key: str) -> np.random.Generator:
    """A generator for one use of the seed, keyed by a name (a task, a sample id)."""
    return np.random.default_rng([seed, kind, zlib.crc32(key.encode())])


def split_faces(n: int, n_train: int, seed: int,
                train_only: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool, True for the seeded n_train faces of the training split.

    `train_only` (n,) bool marks faces that must not be tested on (AFLW's near-duplicates:
    a copy in each split would test on a training image); they fill training places first.
    """
    order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(n)
    if train_only is not None:
        order = np.concatenate([order[train_only[order]], order[~train_only[order]]])
        n_train = max(n_train, int(np.count_nonzero(train_only)))
    is_train = np.zeros(n, dtype=bool)
    is_train[order[:n_train]] = True
    return is_train


def keep_labels(
    has: dict[str, np.ndarray], is_train: np.ndarray, fractions: dict[str, float], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Which labels the shards keep: per task, (n,) bool, and the available counts.

    In training, a task keeps round(fraction * A) labels, A being the training faces that have
    one (Table 1 counts its shares that way: 8,434 genders are 50% of 16,868); the faces are a
    seeded choice per task. The test split keeps every label there is.
    """
    kept, available = {}, {}
    for task, present in has.items():
        candidates = np.flatnonzero(present & is_train)
        take = round(fractions[task] * len(candidates))
        chosen = stream(seed, LABEL_STREAM, task).choice(candidates, size=take, replace=False)
        keep = present & ~is_train
        keep[chosen] = True
        kept[task] = keep
        available[task] = {"train": len(candidates),
                           "test": int(np.count_nonzero(present & ~is_train))}
    return kept, available


def label_layout(tasks: list, image_shape: tuple[int, int, int]) -> dict[str, tuple]:
    """`labels/<task>` shape and dtype per task kind (see dstcli.apps.base.TASK_KINDS)."""
    layout = {}
    for t in tasks:
        if t.kind == "classification":
            layout[t.name] = ((), "int64")
        elif t.kind == "landmarks":
            layout[t.name] = ((t.output_shape[0], 3), "float32")
        elif t.kind == "pose":
            layout[t.name] = ((3,), "float32")
        elif t.kind == "denoise":
            layout[t.name] = (tuple(image_shape), "uint8")
        else:
            raise ValueError(f"task {t.name}: no face label layout for kind {t.kind!r}")
    return layout


def decode(path: Path, where: str):
    """The image as RGB; a file that does not decode is named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{where}: image {path} is missing") from e
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: image {path} does not decode ({e}); the file is damaged, "
                        "replace it from the original distribution") from e


def crop_resize(img, box: tuple[float, float, float, float] | None,
                size: tuple[int, int]) -> np.ndarray:
    """The box of the image (pixels, fractional allowed) at (H, W): (3, H, W) uint8.

    Parts of the box outside the image are black. Pixel i spans [i, i + 1), so a point at
    pixel centre x lands at (x + 0.5 - x0) / (x1 - x0) of the output width.
    """
    from PIL import Image

    h, w = size
    if box is None:
        out = img if img.size == (w, h) else img.resize((w, h), Image.Resampling.BILINEAR)
    else:
        x0, y0, x1, y1 = box
        # Crop whole pixels first (PIL pads what lies outside), then resample the exact box.
        outer = (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
        region = img.crop(outer)
        inner = (x0 - outer[0], y0 - outer[1], x1 - outer[0], y1 - outer[1])
        out = region.resize((w, h), Image.Resampling.BILINEAR, box=inner)
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def normalised_points(points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(L, 2) image pixels (NaN = not seen) -> (L, 3) x, y in [0, 1] of the crop, visibility.

    A point outside the crop is not seen by the network, so it counts as not visible.
    """
    x0, y0, x1, y1 = box
    xy = (points + 0.5 - np.array([x0, y0])) / np.array([x1 - x0, y1 - y0])
    seen = np.isfinite(xy).all(axis=1) & (xy >= 0).all(axis=1) & (xy <= 1).all(axis=1)
    out = np.zeros((len(points), 3), dtype=np.float32)
    out[seen, :2] = xy[seen]
    out[seen, 2] = 1.0
    return out


def write_faces(
    records: list[FaceRecord],
    is_train: np.ndarray,
    kept: dict[str, np.ndarray],
    writer: Any,
    tasks: list,
    size: tuple[int, int],
    noise: Noise,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    bad: BadItems | None = None,
) -> None:
    """Decode, crop, corrupt and append every face, a block at a time, train then test.

    A face whose image does not decode goes to `bad`, and its block is written without it.
    """
    bad = bad if bad is not None else BadItems()
    h, w = size
    layout = label_layout(tasks, (3, h, w))
    total = len(records)
    done = 0
    last: tuple[Path | None, Any] = (None, None)  # faces of one image are usually neighbours
    for split, rows in (("train", np.flatnonzero(is_train)), ("test", np.flatnonzero(~is_train))):
        for start in range(0, len(rows), BLOCK):
            block = rows[start:start + BLOCK]
            n = len(block)
            images = np.empty((n, 3, h, w), dtype=np.uint8)
            labels = {}
            for t in tasks:
                shape, dtype = layout[t.name]
                fill = -1 if t.kind == "classification" else 0
                labels[t.name] = np.full((n, *shape), fill, dtype=dtype)
            masks = {t.name: kept[t.name][block].astype(np.uint8) for t in tasks}
            ids, good = [], []
            for i, r in enumerate(block):
                record = records[r]
                if last[0] != record.path:
                    where = record.where or record.sample_id
                    try:
                        last = (record.path, decode(record.path, where))
                    except DataError as e:
                        bad.reject(where, e)
                        continue
                img = last[1]
                good.append(i)
                clean = crop_resize(img, record.box, size)
                images[i] = noise.apply(clean, stream(seed, NOISE_STREAM, record.sample_id))
                box = record.box or (0.0, 0.0, float(img.size[0]), float(img.size[1]))
                for t in tasks:
                    if not masks[t.name][i]:
                        continue
                    if t.kind == "denoise":
                        labels[t.name][i] = clean
                    elif t.kind == "landmarks":
                        labels[t.name][i] = normalised_points(record.points, box)
                    else:
                        labels[t.name][i] = record.labels[t.name]
                ids.append(record.sample_id)
            if len(good) < n:
                images = images[good]
                labels = {t: a[good] for t, a in labels.items()}
                masks = {t: a[good] for t, a in masks.items()}
            if good:
                writer.split(split).append(images, labels, masks, ids)
            done += n
            if progress is not None:
                progress(done, total)


# ---------------------------------------------------------------------------------------------
# The AFLW database


def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{path}: not a readable SQLite database ({e}); AFLW ships it as "
                        "data/aflw.sqlite") from e
    return con


def check_schema(con: sqlite3.Connection, path: Path) -> None:
    """Every table and column the reader uses is there, or the first missing one is named."""
    tables = {name.lower(): name for (name,) in
              con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    for table, columns in REQUIRED.items():
        if table.lower() not in tables:
            raise DataError(f"{path}: table {table} is missing; this is not the AFLW database "
                            "(data/aflw.sqlite of the official distribution), or it is damaged")
        info = con.execute(f'PRAGMA table_info("{tables[table.lower()]}")')
        have = {row[1].lower() for row in info}
        for column in columns:
            if column.lower() not in have:
                raise DataError(f"{path}: column {table}.{column} is missing; this is not the "
                                "AFLW database's layout, or the table was changed")


def _first_rows(con: sqlite3.Connection, sql: str) -> dict[int, tuple]:
    """face_id -> the first row (by rowid) of a table that may hold several per face."""
    rows: dict[int, tuple] = {}
    for face_id, *rest in con.execute(sql):
        rows.setdefault(face_id, tuple(rest))
    return rows


def crop_box(x: float, y: float, w: float, h: float,
             margin: float) -> tuple[float, float, float, float]:
    """The square crop around FaceRect: its centre, side (1 + 2 * margin) * max(w, h)."""
    side = (1 + 2 * margin) * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _gender(sex: Any) -> int | None:
    value = sex.strip().lower() if isinstance(sex, str) else ""
    return {"m": 0, "f": 1}.get(value)


def _pose(row: tuple | None) -> np.ndarray | None:
    if row is None or any(v is None for v in row):
        return None
    angles = np.array(row, dtype=np.float64)
    if not np.isfinite(angles).all() or np.isclose(angles, UNDEFINED_ANGLE, atol=1e-4).any():
        return None
    return angles.astype(np.float32)


def scan(root: Path, margin: float,
         bad: BadItems | None = None) -> tuple[list[FaceRecord], list[str]]:
    """Every usable face of an AFLW tree, by face_id, and what was noticed on the way.

    A face naming no image row, a face_id met twice, or a missing image goes to `bad`.
    """
    bad = bad if bad is not None else BadItems()
    root = Path(root)
    path = root / SQLITE
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (--raw must be the AFLW root, holding "
                        f"{SQLITE} and {IMAGES}/)")
    if not path.is_file():
        raise DataError(f"{path}: no such file; --raw must be the AFLW root, holding {SQLITE} "
                        f"and {IMAGES}/")
    con = _connect(path)
    try:
        check_schema(con, path)
        try:
            faces = con.execute("SELECT face_id, file_id FROM Faces ORDER BY face_id").fetchall()
            images = {}
            for file_id, filepath in con.execute(
                    "SELECT file_id, filepath FROM FaceImages ORDER BY rowid"):
                images.setdefault(file_id, filepath)
            rects = _first_rows(con, "SELECT face_id, x, y, w, h FROM FaceRect ORDER BY rowid")
            meta = _first_rows(con, "SELECT face_id, sex, glasses FROM FaceMetaData "
                               "ORDER BY rowid")
            poses = _first_rows(con, "SELECT face_id, roll, pitch, yaw FROM FacePose "
                                "ORDER BY rowid")
            tables = {name.lower() for (name,) in
                      con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            near = ({f for (f,) in con.execute("SELECT face_id FROM NearDuplicates")}
                    if "nearduplicates" in tables else set())
            points: dict[int, np.ndarray] = {}
            stray = 0
            for face_id, feature, x, y in con.execute(
                    "SELECT face_id, feature_id, x, y FROM FeatureCoords ORDER BY rowid"):
                if not isinstance(feature, int | float) or feature not in range(1, POINTS + 1):
                    stray += 1
                    continue
                feature = int(feature)
                p = points.setdefault(face_id, np.full((POINTS, 2), np.nan))
                # The importer stores only coordinates > 0; the first row of a point wins.
                if np.isnan(p[feature - 1, 0]) and x is not None and y is not None \
                        and x > 0 and y > 0:
                    p[feature - 1] = (x, y)
        except sqlite3.DatabaseError as e:
            raise DataError(f"{path}: cannot read the database ({e}); it is damaged") from e
    finally:
        con.close()

    records: list[FaceRecord] = []
    no_rect, outside = [], 0
    seen: set[Any] = set()
    faces_on_image = Counter(dict(faces).values())  # faces per image, each face once
    for face_id, file_id in faces:
        if face_id in seen:
            bad.reject(f"face {face_id}", DataError(
                f"{path}: face_id {face_id} has more than one row in table Faces; a face is "
                "one sample, remove the duplicate row"))
            continue
        seen.add(face_id)
        if file_id not in images:
            bad.reject(f"face {face_id}", DataError(
                f"{path}: face {face_id} names file_id {file_id!r}, which has no row in table "
                "FaceImages; the database is incomplete"))
            continue
        filepath = str(images[file_id]).replace("\\", "/")
        rect = rects.get(face_id)
        if rect is None or any(v is None for v in rect) or rect[2] <= 0 or rect[3] <= 0:
            no_rect.append(face_id)
            continue
        box = crop_box(*map(float, rect), margin)
        record = FaceRecord(sample_id=f"{face_id}:{filepath}", path=root / IMAGES / filepath,
                            box=box, has={"denoising"}, where=f"face {face_id}",
                            near_duplicate=face_id in near)
        sex, glasses = meta.get(face_id, (None, None))
        if isinstance(glasses, str) and glasses.strip() in ("0", "1"):
            glasses = int(glasses)  # a flag stored as text still counts
        if (gender := _gender(sex)) is not None:
            record.give("gender", gender)
        # On an image of several faces the AFLW importer wrote sex '' and 0 for the flags:
        # that 0 is a default, not "no spectacles" (docs/data/faces.md).
        unchecked = sex in ("", None) and faces_on_image[file_id] > 1
        if glasses in (0, 1) and not unchecked:
            record.give("spectacles", int(glasses))
        if (angles := _pose(poses.get(face_id))) is not None:
            record.give("pose", angles)
        if face_id in points:
            record.points = points[face_id]
            visible = normalised_points(record.points, box)[:, 2]
            outside += int(np.isfinite(record.points[:, 0]).sum() - visible.sum())
            if visible.any():
                record.has.add("landmarks")
        records.append(record)

    warnings = []
    if no_rect:
        warnings.append(f"{len(no_rect)} face(s) without a usable FaceRect row were left out "
                        f"(face_id {', '.join(map(str, no_rect[:5]))}"
                        f"{', ...' if len(no_rect) > 5 else ''})")
    if outside:
        warnings.append(f"{outside} landmark(s) lay outside their face's crop and count as not "
                        "visible")
    if stray:
        warnings.append(f"{stray} FeatureCoords row(s) with a feature_id outside 1..{POINTS} "
                        "were ignored")
    present = []
    for record in records:
        if not record.path.is_file():
            bad.reject(record.where, DataError(
                f"{record.where}: image {record.path} is missing (FaceImages.filepath is "
                f"relative to {root / IMAGES}); restore the file from the AFLW distribution"))
            continue
        present.append(record)
    if not present:
        raise DataError(f"{path}: no usable faces (table Faces is empty, no face has a "
                        "FaceRect, or every image was left out)")
    return present, warnings
