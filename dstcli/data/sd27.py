"""NIST SD27 (latents with their rolled mates) in the layouts known publicly -> a pair manifest.

NIST withdrew SD27 in 2017; ../shared/docs/data-formats.md collects what public code shows of
its layouts, and this module reads those:

- **legacy**: the CD's `<root>/DATA/{GOOD,BAD,UGLY}/**/<Q><NNN>L<F>U.EFT` latents, each with
  the tenprint `<Q><NNN>T<F>U.EFT` of the same case (Q in G, B, U; NNN the case; F the finger).
  The EFT files are ANSI/NIST-ITL transactions; the image is a Type-13 (latent) or Type-14
  (tenprint) record with its width in field 6, its height in field 7 and its raw 8-bit pixels
  in field 999. Only uncompressed records are read (field 11 = 0 or NONE); a WSQ or JPEG one
  is refused with a message. The reader is tested on files the tests write, not on the CD.
- **converted** (MSU/Kai Cao's): `<root>/image/NNN.bmp` latents with their masks
  `maskNIST27/roiNNN.bmp` (or `NNN.bmp`; also looked for in `mask/`, `masks/` and beside
  root). The rolled mates are not part of that layout: `--mates DIR` names a folder whose file
  with number NNN is the mate of latent NNN (`rolled/`, `mates/` or `tenprint/` beside
  `image/` are found without it).
- **samples**: the flat `<quality>_latent.bmp` + `<quality>_rolled.bmp` of ../shared/data/
  sd27_samples.

Each latent gives a genuine pair with its mate and an impostor pair with the mate of another
case, chosen by a seeded derangement, so the two are equal in number (the paper's 258 + 258).
No layout carries the pattern class of the paper's orientation tasks, so those cells stay empty;
the converted layout's masks fill `latent_mask`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dstcli.errors import DataError

# ANSI/NIST-ITL separators: end of record, of field, of subfield, of item.
FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
TAG = re.compile(rb"(\d+)\.(\d+):")
IMAGE_RECORDS = (13, 14)

LATENT_EFT = re.compile(r"^([GBU])(\d{3})L(\d)U\.EFT$", re.IGNORECASE)
TENPRINT_EFT = re.compile(r"^([GBU])(\d{3})T(\d)U\.EFT$", re.IGNORECASE)
QUALITIES = ("GOOD", "BAD", "UGLY")
SAMPLE_LATENT = re.compile(r"^(.+)_latent\.(bmp|png|tif|tiff)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".bmp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_FOLDERS = ("maskNIST27", "mask", "masks")
MATE_FOLDERS = ("rolled", "mates", "tenprint")


# ---------------------------------------------------------------------------------------------
# ANSI/NIST-ITL (EFT) files


def read_eft_records(path: Path) -> list[tuple[int, dict[int, bytes]]]:
    """The tagged records of an EFT file: [(record type, {field number: raw bytes})].

    A tagged record starts `T.001:<length>`, its fields are `T.NNN:value` separated by GS, it
    ends with FS, and field 999 (image data) runs to the end of the record. Binary records
    (Types 3 to 8) have no tags; a file holding one is refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    records = []
    pos = 0
    while pos < len(data):
        head = TAG.match(data, pos)
        length_end = data.find(GS, pos, pos + 64)
        if head is None or int(head.group(2)) != 1 or length_end == -1:
            raise DataError(f"{path}: byte {pos} does not start a tagged ANSI/NIST record "
                            "('T.001:<length>'); binary records (Types 3-8) are not read. "
                            "Convert the file to BMP or PNG and use the converted layout")
        record_type = int(head.group(1))
        try:
            length = int(data[head.end():length_end])
        except ValueError as e:
            raise DataError(f"{path}: record at byte {pos} has a bad length field") from e
        if length <= 0 or pos + length > len(data):
            raise DataError(f"{path}: record {record_type} at byte {pos} says {length} bytes "
                            f"but {len(data) - pos} remain; the file is truncated")
        records.append((record_type, _fields(data[pos:pos + length], path, pos)))
        pos += length
    if not records:
        raise DataError(f"{path}: empty file")
    return records


def _fields(record: bytes, path: Path, offset: int) -> dict[int, bytes]:
    if not record.endswith(FS):
        raise DataError(f"{path}: record at byte {offset} does not end with the record "
                        "separator (0x1C); the file is damaged")
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(record):
        tag = TAG.match(record, pos)
        if tag is None:
            raise DataError(f"{path}: byte {offset + pos}: expected a field tag 'T.NNN:'")
        number = int(tag.group(2))
        if number == 999:
            fields[number] = record[tag.end():-1]  # binary: up to the closing FS
            break
        ends = [i for i in (record.find(GS, tag.end()), record.find(FS, tag.end())) if i != -1]
        end = min(ends)
        fields[number] = record[tag.end():end]
        pos = end + 1
    return fields


def _image_record(path: Path) -> dict[int, bytes]:
    for record_type, fields in read_eft_records(path):
        if record_type in IMAGE_RECORDS:
            return fields
    raise DataError(f"{path}: no Type-13 or Type-14 image record in the file")


def _header(path: Path, fields: dict[int, bytes]) -> tuple[int, int]:
    try:
        width, height = int(fields[6]), int(fields[7])
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: the image record lacks a readable width (field 6) or height "
                        "(field 7)") from e
    compression = fields.get(11, b"0").decode("ascii", "replace").strip().upper()
    if compression not in ("0", "NONE"):
        raise DataError(f"{path}: the image is compressed (field 11 = {compression}); only "
                        "raw pixels are read. Decompress it (NBIS dwsq/djpeg) to BMP or PNG "
                        "and use the converted layout")
    bits = fields.get(12, b"8").decode("ascii", "replace").strip()
    if bits != "8":
        raise DataError(f"{path}: {bits} bits per pixel (field 12); only 8-bit grey is read")
    return width, height


def eft_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first image record of an EFT file."""
    return _header(Path(path), _image_record(Path(path)))


def read_eft_image(path: Path) -> np.ndarray:
    """The first Type-13/14 image of an EFT file as (H, W) uint8."""
    path = Path(path)
    fields = _image_record(path)
    width, height = _header(path, fields)
    pixels = fields.get(999, b"")
    if len(pixels) != width * height:
        raise DataError(f"{path}: the image record holds {len(pixels)} bytes of pixels, "
                        f"{width}x{height} needs {width * height}; the file is damaged")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width).copy()


def _tagged_record(record_type: int, fields: list[tuple[int, bytes]]) -> bytes:
    """A tagged record whose field 1 holds its own length (found by fixed point)."""
    body = b"".join(GS + f"{record_type}.{n:03d}:".encode() + v for n, v in fields)
    body = body[1:] if body else body  # no GS before the first field after the length
    length = 0
    while True:
        head = f"{record_type}.001:{length}".encode() + GS
        total = len(head) + len(body) + 1
        if total == length:
            return head + body + FS
        length = total


def write_eft_image(path: Path, image: np.ndarray, record_type: int = 13, finger: int = 0
                    ) -> Path:
    """Write an 8-bit grey image as a minimal EFT file: a Type-1 and one Type-13/14 record.

    For tests and demonstrations; real transactions carry many more fields.
    """
    if record_type not in IMAGE_RECORDS:
        raise ValueError("record_type must be 13 (latent) or 14 (tenprint)")
    image = np.asarray(image, dtype=np.uint8)
    height, width = image.shape
    content = b"1" + US + b"1" + RS + str(record_type).encode() + US + b"00"
    type1 = _tagged_record(1, [(2, b"0300"), (3, content), (4, b"LFFS")])
    image_record = _tagged_record(record_type, [
        (2, b"00"), (3, b"4" if record_type == 13 else b"1"), (6, str(width).encode()),
        (7, str(height).encode()), (8, b"1"), (9, b"500"), (10, b"500"), (11, b"0"),
        (12, b"8"), (13, str(finger).encode()), (999, image.tobytes()),
    ])
    Path(path).write_bytes(type1 + image_record)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Layouts


@dataclass(frozen=True)
class Case:
    """One latent with its mate: subject and finger name the case, quality its class."""

    subject: str
    finger: str
    latent: Path
    mate: Path
    latent_mask: Path | None = None


def _number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def _images_by_number(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            n = _number(p)
            if n is not None:
                found.setdefault(n, p)
    return found


def _child(folder: Path, name: str) -> Path | None:
    """A sub-folder by name, whatever its case (CD copies differ)."""
    if not folder.is_dir():
        return None
    for p in folder.iterdir():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def scan_legacy(root: Path) -> tuple[list[Case], list[str]]:
    data = root if root.name.upper() == "DATA" else _child(root, "DATA")
    assert data is not None
    latents: dict[str, Path] = {}
    tenprints: dict[str, Path] = {}
    for quality in QUALITIES:
        folder = _child(data, quality)
        if folder is None:
            continue
        for p in sorted(folder.rglob("*")):
            if LATENT_EFT.match(p.name):
                latents[p.name.upper()] = p
            elif TENPRINT_EFT.match(p.name):
                tenprints[p.name.upper()] = p
    cases, missing = [], []
    for name in sorted(latents):
        q, number, finger = LATENT_EFT.match(name).groups()
        mate = tenprints.get(f"{q}{number}T{finger}U.EFT")
        if mate is None:
            missing.append(name)
            continue
        cases.append(Case(f"{q}{number}", finger, latents[name], mate))
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} latent(s) have no tenprint <Q><NNN>T<F>U.EFT and are "
                        f"left out: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5
                                                                else ""))
    return cases, warnings


def _find_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    for base in (root, root.parent):
        for name in names:
            found = _child(base, name)
            if found is not None:
                return found
    return None


def scan_converted(root: Path, mates: Path | None) -> tuple[list[Case], list[str]]:
    images = _child(root, "image") or _child(root, "images")
    assert images is not None
    if mates is None:
        mates = _find_folder(root, MATE_FOLDERS)
    if mates is None or not mates.is_dir():
        raise DataError(
            f"{images}: the converted layout holds the latents only; pass --mates DIR, a "
            "folder whose file numbered NNN is the rolled mate of image/NNN.bmp"
            + (f" ({mates} is not a folder)" if mates is not None else "")
        )
    mask_folder = _find_folder(root, MASK_FOLDERS)
    latents = _images_by_number(images)
    mate_files = _images_by_number(mates)
    masks = _images_by_number(mask_folder) if mask_folder is not None else {}
    cases, missing = [], []
    for n in sorted(latents):
        if n not in mate_files:
            missing.append(latents[n].name)
            continue
        cases.append(Case(f"{n:03d}", "", latents[n], mate_files[n], masks.get(n)))
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} latent(s) have no mate in {mates} and are left out: "
                        f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if mask_folder is None:
        warnings.append(f"no mask folder ({', '.join(MASK_FOLDERS)}) in {root} or beside it: "
                        "latent_mask is left empty")
    return cases, warnings


def scan_samples(root: Path) -> tuple[list[Case], list[str]]:
    cases, warnings = [], []
    for p in sorted(root.iterdir()):
        m = SAMPLE_LATENT.match(p.name)
        if not m:
            continue
        quality = m.group(1)
        mates = [q for q in root.iterdir()
                 if q.stem.lower() == f"{quality.lower()}_rolled"
                 and q.suffix.lower() in IMAGE_SUFFIXES]
        if not mates:
            warnings.append(f"{p.name} has no {quality}_rolled image beside it; left out")
            continue
        cases.append(Case(quality.lower(), "", p, mates[0]))
    return cases, warnings


def detect_layout(root: Path) -> str:
    """Which known layout root holds: legacy, converted or samples."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (--raw)")
    data = root if root.name.upper() == "DATA" else _child(root, "DATA")
    if data is not None and any(_child(data, q) for q in QUALITIES):
        return "legacy"
    if _child(root, "image") or _child(root, "images"):
        return "converted"
    if any(SAMPLE_LATENT.match(p.name) for p in root.iterdir()):
        return "samples"
    raise DataError(
        f"{root}: not a NIST SD27 layout this reader knows; expected DATA/{{GOOD,BAD,UGLY}}/ "
        "with <Q><NNN>L<F>U.EFT latents (the CD), image/NNN.bmp latents (the converted "
        "layout), or <quality>_latent.bmp with <quality>_rolled.bmp (the samples)"
    )


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation with no fixed point: each case meets another case's mate."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.intp)
    out[order] = np.roll(order, -1)
    return out


def pair_rows(cases: list[Case], seed: int, source: str = "sd27") -> list[dict[str, Any]]:
    """Manifest rows: each case's genuine pair, then an impostor pair with another's mate."""
    other = derangement(len(cases), np.random.default_rng(seed)) if len(cases) > 1 else None
    rows = []
    for i, case in enumerate(cases):
        common = {"latent": case.latent, "latent_mask": case.latent_mask,
                  "subject": case.subject, "finger": case.finger, "source": source}
        rows.append({**common, "fingerprint": case.mate, "match": 1})
        if other is not None:
            mate = cases[other[i]]
            rows.append({**common, "fingerprint": mate.mate, "match": 0,
                         "fingerprint_subject": mate.subject, "fingerprint_finger": mate.finger})
    return rows


def write_sd27_manifest(raw: Path, out: Path, seed: int = 0, mates: Path | None = None
                        ) -> tuple[str, int, list[str]]:
    """Read an SD27 layout and write its pair manifest: (layout, rows written, warnings)."""
    from dstcli.data.pair_manifest import write_pair_manifest

    raw = Path(raw)
    layout = detect_layout(raw)
    if layout == "legacy":
        cases, warnings = scan_legacy(raw)
    elif layout == "converted":
        cases, warnings = scan_converted(raw, Path(mates) if mates else None)
    else:
        cases, warnings = scan_samples(raw)
    if not cases:
        raise DataError(f"{raw}: found the {layout} layout but no latent with its mate")
    if len(cases) == 1:
        warnings.append("one case only: no impostor pair can be formed")
    rows = pair_rows(cases, seed)
    write_pair_manifest(out, rows)
    return layout, len(rows), warnings
