"""Omniglot in its published layout: `<root>/<Alphabet>/characterNN/NNNN_DD.png`.

Reads the official zips (`images_background.zip`, `images_evaluation.zip`,
`images_background_small{1,2}.zip`) or the same trees unpacked into folders, and writes the
shards of the `omniglot` app: one classification task per alphabet, a sample labelled for its
own alphabet only (Z = 0 for the others), and the paper's protocol of a seeded 20% of each
character's drawings held out for testing.

`write_synthetic_omniglot` draws a small Omniglot-layout zip of stroke glyphs; the tests and
the demo use it where the real zips are not at hand.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dstcli.data.bad_items import BadItems
from dstcli.errors import DataError

CHARACTER_DIR = re.compile(r"^character(\d+)$")
DRAWING_FILE = re.compile(r"^(\d{4})_(\d{2})\.png$", re.IGNORECASE)
IGNORED = re.compile(r"(^|/)(__MACOSX|\.[^/]*)(/|$)")  # macOS resource forks, dotfiles


@dataclass
class Drawing:
    character: str
    drawer: int
    where: str  # human-readable location, for error messages
    load: Callable[[], bytes]


@dataclass
class Alphabet:
    name: str
    source: str  # the input it was read from
    drawings: dict[str, list[Drawing]] = field(default_factory=dict)

    @property
    def characters(self) -> list[str]:
        return sorted(self.drawings, key=lambda c: int(CHARACTER_DIR.match(c).group(1)))

    def fingerprint(self) -> tuple:
        return tuple((c, len(self.drawings[c])) for c in self.characters)


def _classify(parts: list[str], where: str) -> tuple[str, str, str] | None:
    """Place one file of the tree: (alphabet, character, file) or None above the alphabets.

    Files above the alphabet level (a LICENSE beside the zips) are not Omniglot's business;
    anything else inside an alphabet must be a drawing, or the layout is not what we think.
    """
    for i in range(len(parts) - 1):
        if CHARACTER_DIR.match(parts[i]) and i >= 1:
            if i != len(parts) - 2:
                raise DataError(f"{where}: unexpected folder inside {parts[i]}; Omniglot "
                                "character folders hold only NNNN_DD.png drawings")
            if not DRAWING_FILE.match(parts[-1]):
                raise DataError(f"{where}: not an Omniglot drawing (expected NNNN_DD.png); "
                                "remove the file or pass the clean official layout")
            return parts[i - 1], parts[i], parts[-1]
    return None


def _zip_entries(path: Path) -> Iterator[tuple[list[str], str, Callable[[], bytes]]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: cannot open as a zip file ({e})") from e
    for info in archive.infolist():
        if info.is_dir() or IGNORED.search(info.filename):
            continue
        where = f"{path}:{info.filename}"

        def load(info=info, where=where) -> bytes:
            try:
                return archive.read(info)
            except (zipfile.BadZipFile, OSError, zlib.error) as e:
                raise DataError(f"{where}: cannot read from the zip ({e})") from e

        yield info.filename.split("/"), where, load


def _folder_entries(root: Path) -> Iterator[tuple[list[str], str, Callable[[], bytes]]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or IGNORED.search(rel):
            continue
        if path.suffix.lower() == ".zip":
            continue  # a separate input (see _expand)
        yield rel.split("/"), str(path), path.read_bytes


def _expand(raw: Path) -> list[Path]:
    """The inputs a --raw stands for: a zip; a folder's zips, each its own input (so that two
    zips that share alphabets, like the two small background sets, are merged per alphabet as
    two --raw zips are); and the folder itself when it also holds unpacked drawings."""
    if not raw.exists():
        raise DataError(f"{raw}: no such file or folder (--raw)")
    if not raw.is_dir():
        return [raw]
    zips = sorted(p for p in raw.rglob("*.zip")
                  if not IGNORED.search(p.relative_to(raw).as_posix()))
    unpacked = any(p.suffix.lower() == ".png" for p in raw.rglob("*"))
    return zips + [raw] if unpacked or not zips else zips


def scan(inputs: list[Path], bad: BadItems | None = None) -> tuple[list[Alphabet], list[str]]:
    """Find every alphabet in the inputs; an alphabet seen twice is taken once, with a warning.

    A stray file inside an alphabet or a drawing met twice in one input goes to `bad`.
    """
    bad = bad if bad is not None else BadItems()
    alphabets: dict[str, Alphabet] = {}
    warnings: list[str] = []
    for raw in [part for given in inputs for part in _expand(Path(given))]:
        entries = _folder_entries(raw) if raw.is_dir() else _zip_entries(raw)
        found: dict[str, Alphabet] = {}
        seen: dict[tuple[str, str, str], str] = {}
        for parts, where, load in entries:
            try:
                placed = _classify(parts, where)
            except DataError as e:
                bad.reject(where, e)
                continue
            if placed is None:
                continue
            alphabet, character, name = placed
            # A zip and its unpacked tree in one folder would give every drawing twice.
            key = (alphabet, character, name.lower())
            if key in seen:
                bad.reject(where, DataError(f"{where}: duplicate of {seen[key]} (the same "
                                            "alphabet, character and drawing); keep one copy"))
                continue
            seen[key] = where
            drawer = int(DRAWING_FILE.match(name).group(2))
            entry = found.setdefault(alphabet, Alphabet(alphabet, str(raw)))
            entry.drawings.setdefault(character, []).append(Drawing(character, drawer, where,
                                                                    load))
        if not found:
            raise DataError(
                f"{raw}: no Omniglot alphabets found; expected <Alphabet>/characterNN/"
                "NNNN_DD.png below it (the official images_background*.zip or "
                "images_evaluation.zip, or those trees unpacked)"
            )
        for name in sorted(found):
            if name in alphabets:
                first = alphabets[name]
                same = first.fingerprint() == found[name].fingerprint()
                warnings.append(
                    f"alphabet {name} appears in {first.source} and {raw}; taking it once, "
                    f"from {first.source}" + ("" if same else " (the two copies differ)")
                )
                continue
            alphabets[name] = found[name]
    for a in alphabets.values():
        for drawings in a.drawings.values():
            drawings.sort(key=lambda d: d.drawer)
    return [alphabets[n] for n in sorted(alphabets)], warnings


def decode(drawing: Drawing, size: tuple[int, int]) -> np.ndarray:
    """A drawing as (H, W) uint8 with ink bright on a dark ground, resized by area."""
    from PIL import Image, UnidentifiedImageError

    data = drawing.load()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            grey = img.convert("L")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{drawing.where}: not a readable PNG ({e}); the file is damaged, "
                        "replace it from the official zip") from e
    if grey.size != (size[1], size[0]):
        grey = grey.resize((size[1], size[0]), Image.Resampling.BOX)
    return 255 - np.asarray(grey, dtype=np.uint8)


def held_out_drawings(
    alphabet: str, character: str, n: int, fraction: float, seed: int
) -> set[int]:
    """Which of a character's n drawings are held out: a seeded share, per character.

    The stream depends only on the seed and the character's name, so an alphabet gets the same
    split whichever other alphabets are prepared with it.
    """
    rng = np.random.default_rng([seed, zlib.crc32(f"{alphabet}/{character}".encode())])
    return set(rng.choice(n, size=round(fraction * n), replace=False).tolist())


def write_shards(
    alphabets: list[Alphabet],
    writer: Any,
    size: tuple[int, int],
    test_fraction: float,
    seed: int,
    progress: Callable[[int], None] = lambda n: None,
    bad: BadItems | None = None,
) -> None:
    """Decode every drawing and append it to the train or test split, alphabet by alphabet.

    A drawing that does not decode goes to `bad`; the split of the others does not move.
    """
    bad = bad if bad is not None else BadItems()
    names = [a.name for a in alphabets]
    for alphabet in alphabets:
        blocks: dict[str, dict[str, list]] = {
            s: {"images": [], "labels": [], "ids": []} for s in ("train", "test")
        }
        for label, character in enumerate(alphabet.characters):
            drawings = alphabet.drawings[character]
            held_out = held_out_drawings(alphabet.name, character, len(drawings), test_fraction,
                                     seed)
            for i, drawing in enumerate(drawings):
                split = "test" if i in held_out else "train"
                try:
                    image = decode(drawing, size)
                except DataError as e:
                    bad.reject(drawing.where, e)
                    continue
                blocks[split]["images"].append(image)
                blocks[split]["labels"].append(label)
                blocks[split]["ids"].append(drawing.where)
            progress(len(drawings))
        for split, block in blocks.items():
            n = len(block["images"])
            if n == 0:
                continue
            labels = {t: np.full(n, -1, dtype=np.int64) for t in names}
            masks = {t: np.zeros(n, dtype=np.uint8) for t in names}
            labels[alphabet.name] = np.asarray(block["labels"], dtype=np.int64)
            masks[alphabet.name][:] = 1
            images = np.stack(block["images"])[:, None]  # (n, 1, H, W)
            writer.split(split).append(images, labels, masks, block["ids"])


def write_synthetic_omniglot(
    path: Path,
    alphabets: dict[str, int],
    drawers: int = 20,
    size: int = 105,
    seed: int = 0,
    root: str = "images_background",
) -> Path:
    """Write an Omniglot-layout zip of stroke glyphs: {alphabet: number of characters}.

    Each character is a few random strokes; each drawer redraws them with jitter, so the
    characters are learnable and the drawings of one character differ.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    path = Path(path)
    char_id = 1
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for alphabet in sorted(alphabets):
            for c in range(1, alphabets[alphabet] + 1):
                strokes = rng.uniform(0.15, 0.85, size=(rng.integers(2, 5), 2, 2)) * size
                for d in range(1, drawers + 1):
                    img = Image.new("1", (size, size), 1)
                    pen = ImageDraw.Draw(img)
                    jitter = rng.normal(0, size * 0.03, size=strokes.shape)
                    for (x0, y0), (x1, y1) in strokes + jitter:
                        pen.line([(x0, y0), (x1, y1)], fill=0, width=max(1, size // 30))
                    buf = io.BytesIO()
                    img.save(buf, format="PNG")
                    name = f"{root}/{alphabet}/character{c:02d}/{char_id:04d}_{d:02d}.png"
                    archive.writestr(name, buf.getvalue())
                char_id += 1
    return path
