"""The pair manifest: one CSV that every fingerprint source becomes.

Each row is a pair of the bilateral application (section 2.3 of the paper): a fingerprint, a
latent, what is known of each, and whether they come from the same finger. docs/data/
fingerprint.md documents the columns with an example; in short:

    fingerprint, latent            image paths (relative to the CSV's folder, or absolute)
    fingerprint_orientation,       one of the six pattern classes of the paper's Figure 10
    latent_orientation             (arch, tented_arch, left_loop, right_loop, whorl, double_loop)
    fingerprint_mask, latent_mask  mask image paths, the size of their image, non-zero = inside
    match                          1 genuine pair, 0 impostor pair
    subject, finger                whose finger the latent is
    fingerprint_subject,           whose finger the fingerprint is; empty = the latent's
    fingerprint_finger
    source                         sd27, molf, must, fvc, synthetic, ... (data_manifests/
                                   fingerprint.toml says which tasks and split each gets)
    split                          train or test where the source fixes its split (MUST)

An empty cell means "not labelled" (Z = 0 for that task). `read_pair_manifest` checks every
row and reports every problem with the CSV's path and the row's number; `write_pair_manifest`
writes the same format, so the adapters (sd27, fvc, the synthetic set) and a researcher writing
the CSV by hand for MOLF or MUST end in one reader.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dstcli.data.bad_items import SKIP_HINT, BadItems
from dstcli.errors import DataError

COLUMNS = (
    "fingerprint",
    "latent",
    "fingerprint_orientation",
    "latent_orientation",
    "fingerprint_mask",
    "latent_mask",
    "match",
    "subject",
    "finger",
    "fingerprint_subject",
    "fingerprint_finger",
    "source",
    "split",
)
REQUIRED = ("fingerprint", "latent", "match", "subject", "source")
EXTRA_PREFIX = "x_"  # columns of the researcher's own (notes, original ids) are kept out
SPLIT_VALUES = ("train", "test")
MAX_REPORTED = 30  # problems listed in one error; the rest are counted


@dataclass(frozen=True)
class PairRow:
    """One checked row: paths resolved, classes as indices, None where a cell is empty."""

    csv: Path
    row: int  # 1 = the first row under the header
    line: int  # the line of the file it ends on, for an editor
    fingerprint: Path
    latent: Path
    fingerprint_orientation: int | None
    latent_orientation: int | None
    fingerprint_mask: Path | None
    latent_mask: Path | None
    match: int | None
    subject: str
    finger: str
    fingerprint_subject: str  # the latent's subject where the cell is empty
    fingerprint_finger: str
    source: str  # lower case
    split: str | None

    @property
    def where(self) -> str:
        return f"{self.csv} row {self.row} (line {self.line})"


def normalise_class(text: str) -> str:
    """`Tented Arch`, `tented-arch` and `tented_arch` are one class name."""
    return "_".join(text.strip().lower().replace("-", " ").split())


def default_classes() -> tuple[str, ...]:
    from dstcli.data.protocols import load_protocol

    return tuple(load_protocol("fingerprint")["classes"])


# ---------------------------------------------------------------------------------------------
# Images: PIL formats and the ANSI/NIST EFT files of NIST SD27's legacy layout


def _is_eft(path: Path) -> bool:
    return path.suffix.lower() == ".eft"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image, UnidentifiedImageError

    if _is_eft(path):
        from dstcli.data.sd27 import eft_image_size

        return eft_image_size(path)
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from e


def load_grey(path: Path) -> np.ndarray:
    """An image as (H, W) uint8 grey levels."""
    from PIL import Image, UnidentifiedImageError

    if _is_eft(path):
        from dstcli.data.sd27 import read_eft_image

        return read_eft_image(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit scans: scale to 8 bits rather than let PIL clip at 255.
                wide = np.asarray(img, dtype=np.float64)
                top = wide.max() if wide.max() > 0 else 1.0
                return np.rint(wide * (255.0 / top)).astype(np.uint8)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e}); replace or remove the file") from e


def load_mask(path: Path) -> np.ndarray:
    """A mask image as (H, W) bool: any non-zero pixel is foreground."""
    return load_grey(path) > 0


# ---------------------------------------------------------------------------------------------
# Reading


class _Problems:
    def __init__(self, csv_path: Path):
        self.csv = csv_path
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:MAX_REPORTED]
        more = len(self.lines) - len(shown)
        text = "\n".join(f"  - {line}" for line in shown)
        if more:
            text += f"\n  - ... and {more} more"
        raise DataError(
            f"{self.csv}: {len(self.lines)} problem(s) in the pair manifest (columns and values "
            f"are described in docs/data/fingerprint.md):\n{text}\n({SKIP_HINT})"
        )


def _resolve(cell: str, base: Path) -> Path:
    path = Path(os.path.expanduser(cell))
    return path if path.is_absolute() else base / path


def read_pair_manifest(
    path: Path, classes: tuple[str, ...] | None = None, check_files: bool = True,
    bad: BadItems | None = None,
) -> list[PairRow]:
    """Read and check a pair manifest; raises one DataError listing every problem found.

    With check_files, every image and mask must exist and every mask must have its image's
    size (read from the file headers, not decoded). When `bad` skips (--skip-bad), a row with
    problems is left out and handed to it instead; the header's problems still fail.
    """
    bad = bad if bad is not None else BadItems()
    path = Path(path)
    classes = tuple(normalise_class(c) for c in (classes or default_classes()))
    class_index = {c: i for i, c in enumerate(classes)}
    if not path.is_file():
        raise DataError(f"{path}: no such pair manifest (--manifest); write one as "
                        "docs/data/fingerprint.md shows, or with `dst prepare "
                        "fingerprint-manifest`")
    problems = _Problems(path)
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty; a pair manifest starts with a "
                                f"header line naming its columns ({', '.join(REQUIRED)}, ...)")
            header = [h.strip() for h in header]
            _check_header(path, header)
            rows = []
            seen: dict[tuple[Path, Path], int] = {}
            for number, cells in enumerate(reader, start=1):
                if not any(c.strip() for c in cells):
                    continue
                where = f"{path} row {number} (line {reader.line_num})"
                before = len(problems.lines)
                row = None
                if len(cells) != len(header):
                    problems.add(where, f"{len(cells)} cells where the header has "
                                 f"{len(header)}; a cell holding a comma must be quoted")
                else:
                    values = {h: c.strip() for h, c in zip(header, cells, strict=True)}
                    row = _check_row(values, path, number, reader.line_num, base, class_index,
                                     classes, problems, check_files)
                if bad.skip and len(problems.lines) > before:
                    # Every problem stays a list without --skip-bad; with it, the row goes.
                    found = problems.lines[before:]
                    del problems.lines[before:]
                    bad.reject(where, DataError("; ".join(found)))
                    continue
                if row is not None:
                    pair = (row.fingerprint.resolve(), row.latent.resolve())
                    if pair in seen:
                        # The same pair twice would count twice in training and testing.
                        message = (f"the pair ({row.fingerprint}, {row.latent}) repeats row "
                                   f"{seen[pair]}; remove one of them")
                        if bad.skip:
                            bad.reject(where, DataError(f"{where}: {message}"))
                        else:
                            problems.add(where, message)
                        continue
                    seen[pair] = number
                    rows.append(row)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); save the CSV as UTF-8") from e
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    problems.raise_if_any()
    if not rows:
        raise DataError(f"{path}: the pair manifest has a header but no rows")
    return rows


def _check_header(path: Path, header: list[str]) -> None:
    duplicated = sorted({h for h in header if header.count(h) > 1})
    unknown = [h for h in header if h not in COLUMNS and not h.startswith(EXTRA_PREFIX)]
    missing = [c for c in REQUIRED if c not in header]
    messages = []
    if duplicated:
        messages.append(f"column(s) {', '.join(duplicated)} appear more than once")
    if unknown:
        messages.append(f"unknown column(s) {', '.join(unknown)} (known: {', '.join(COLUMNS)}; "
                        f"a column of your own must start with {EXTRA_PREFIX!r})")
    if missing:
        messages.append(f"required column(s) {', '.join(missing)} are missing")
    if messages:
        raise DataError(f"{path}, header line: " + "; ".join(messages))


def _check_row(values: dict[str, str], csv_path: Path, number: int, line: int, base: Path,
               class_index: dict[str, int], classes: tuple[str, ...], problems: _Problems,
               check_files: bool) -> PairRow | None:
    where = f"{csv_path} row {number} (line {line})"
    before = len(problems.lines)

    def cell(name: str) -> str:
        return values.get(name, "")

    images: dict[str, Path | None] = {}
    for column in ("fingerprint", "latent"):
        text = cell(column)
        images[column] = None
        if not text:
            problems.add(where, f"{column} is empty; every pair names both images")
            continue
        images[column] = _resolve(text, base)
        if check_files and not images[column].is_file():
            problems.add(where, f"{column} file {images[column]} does not exist (paths are "
                         f"relative to {base})")
            images[column] = None

    orientation: dict[str, int | None] = {}
    for column in ("fingerprint_orientation", "latent_orientation"):
        text = cell(column)
        orientation[column] = None
        if text:
            name = normalise_class(text)
            if name not in class_index:
                problems.add(where, f"{column} {text!r} is not a pattern class; use one of "
                             f"{', '.join(classes)}, or leave the cell empty (unlabelled)")
            else:
                orientation[column] = class_index[name]

    masks: dict[str, Path | None] = {}
    for column, image_column in (("fingerprint_mask", "fingerprint"),
                                 ("latent_mask", "latent")):
        text = cell(column)
        masks[column] = None
        if not text:
            continue
        mask = _resolve(text, base)
        masks[column] = mask
        if not check_files:
            continue
        if not mask.is_file():
            problems.add(where, f"{column} file {mask} does not exist (paths are relative to "
                         f"{base})")
            continue
        image = images[image_column]
        if image is None:
            continue
        try:
            mask_size, image_size_ = image_size(mask), image_size(image)
        except DataError as e:
            problems.add(where, str(e))
            continue
        if mask_size != image_size_:
            problems.add(where, f"{column} {mask} is {mask_size[0]}x{mask_size[1]} (WxH) but "
                         f"its image {image} is {image_size_[0]}x{image_size_[1]}; a mask must "
                         "have its image's size")

    match: int | None = None
    text = cell("match")
    if text:
        if text in ("0", "1"):
            match = int(text)
        else:
            problems.add(where, f"match {text!r} must be 1 (genuine), 0 (impostor) or empty")

    subject, finger = cell("subject"), cell("finger")
    if not subject:
        problems.add(where, "subject is empty; the split keeps each subject on one side, so "
                     "every pair names whose finger the latent is")
    fp_subject = cell("fingerprint_subject") or subject
    fp_finger = cell("fingerprint_finger") or (finger if fp_subject == subject else "")
    same_finger = fp_subject == subject and fp_finger == finger
    if match == 1 and not same_finger:
        problems.add(where, f"match is 1 but the fingerprint is subject {fp_subject!r} finger "
                     f"{fp_finger!r} and the latent subject {subject!r} finger {finger!r}; a "
                     "genuine pair is one finger")
    if match == 0 and same_finger and subject:
        problems.add(where, "match is 0 but fingerprint_subject and fingerprint_finger are "
                     "empty or equal the latent's; an impostor pair must name the other "
                     "finger's subject (and finger)")

    source = cell("source").lower()
    if not source:
        problems.add(where, "source is empty; name the data set (sd27, molf, must, fvc, ...)")
    split = cell("split").lower() or None
    if split is not None and split not in SPLIT_VALUES:
        problems.add(where, f"split {cell('split')!r} must be train, test or empty")

    if len(problems.lines) > before:
        return None
    return PairRow(
        csv=csv_path, row=number, line=line,
        fingerprint=images["fingerprint"] or _resolve(cell("fingerprint"), base),
        latent=images["latent"] or _resolve(cell("latent"), base),
        fingerprint_orientation=orientation["fingerprint_orientation"],
        latent_orientation=orientation["latent_orientation"],
        fingerprint_mask=masks["fingerprint_mask"], latent_mask=masks["latent_mask"],
        match=match, subject=subject, finger=finger, fingerprint_subject=fp_subject,
        fingerprint_finger=fp_finger, source=source, split=split,
    )


# ---------------------------------------------------------------------------------------------
# Writing


def _cell(value: object, base: Path) -> str:
    if value is None:
        return ""
    if isinstance(value, Path):
        # Paths under the CSV's folder are written relative to it, so the folder can move.
        absolute = value if value.is_absolute() else Path.cwd() / value
        try:
            return absolute.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return str(absolute.resolve())
    return str(value)


def write_pair_manifest(path: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write rows ({column: value}; Paths, strings, ints, None for empty) as a pair manifest.

    The file appears whole or not at all (written beside, then renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    base = path.parent
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                unknown = set(row) - set(COLUMNS)
                if unknown:
                    raise ValueError(f"not pair-manifest columns: {sorted(unknown)}")
                writer.writerow([_cell(row.get(c), base) for c in COLUMNS])
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
